// npm run bench [-- [names...] [--json] [--quick]]
// Runs every scenario module in bench/ (each measures its own baseline in the same run) and prints a
// table, or with --json one JSON object per metric per line and nothing else on stdout.
import { readdirSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';

const { values: flags, positionals: only } = parseArgs({
  options: { json: { type: 'boolean' }, quick: { type: 'boolean' }, help: { type: 'boolean' } },
  allowPositionals: true,
});
if (flags.help) {
  process.stdout.write('usage: npm run bench -- [scenario...] [--json] [--quick]\n');
  process.exit(0);
}

// Progress and skips go to stderr so that --json output stays machine-readable.
const log = (line) => process.stderr.write(`${line}\n`);
const skipped = [];
const pgUrl = process.env.BENCH_DATABASE_URL || process.env.DATABASE_URL || undefined;

const files = readdirSync(new URL('.', import.meta.url)).filter((f) => f.endsWith('.mjs') && f !== 'run.mjs');
const scenarios = [];
let failed = false;
for (const file of files.sort()) {
  const fallback = basename(file, '.mjs');
  try {
    const mod = await import(new URL(file, import.meta.url).href);
    const name = mod.name ?? fallback;
    if (only.length === 0 || only.includes(name)) scenarios.push({ name, mod });
  } catch (error) {
    // One scenario that does not load (say, its capability is not built yet) must not stop the others.
    if (only.length > 0 && !only.includes(fallback)) continue;
    failed = true;
    log(`bench/${file} did not load: ${error?.message ?? error}`);
  }
}
const unknown = only.filter((n) => !scenarios.some((s) => s.name === n));
if (unknown.length > 0 && !failed) {
  log(`unknown scenario(s): ${unknown.join(', ')}`);
  process.exit(2);
}
// Other work on the machine skews absolute figures (ratios less so): say so next to the results.
const busy = loadavg()[0];
if (busy > availableParallelism() / 2) log(`warning: load average ${busy.toFixed(1)}: figures will be noisy`);
if (!pgUrl) log('BENCH_DATABASE_URL is not set: PostgreSQL measurements are skipped');

const rows = [];
for (const { name, mod } of scenarios) {
  log(`== ${name}`);
  const started = performance.now();
  try {
    const results = await mod.run({
      quick: Boolean(flags.quick),
      pgUrl,
      log,
      skip: (what) => skipped.push(`${name}: ${what}`),
    });
    for (const result of results) {
      if (flags.json) process.stdout.write(`${JSON.stringify(result)}\n`);
      rows.push({ ...result, goal: mod.goals?.[result.metric] });
    }
  } catch (error) {
    failed = true;
    log(`${name} failed: ${error?.stack ?? error}`);
  }
  log(`   ${name} took ${((performance.now() - started) / 1000).toFixed(1)} s`);
}
if (flags.json) for (const line of skipped) log(`skipped ${line}`);
else {
  printTable(rows);
  for (const line of skipped) process.stdout.write(`skipped ${line}\n`);
}
process.exitCode = failed ? 1 : 0;

function num(value) {
  if (value === null || value === undefined) return '';
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 2;
  return value.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

/** A goal is on the value (`below`, `atLeast`) or on the ratio to the baseline (`ratioAtLeast`). */
function goalText(row) {
  const { goal } = row;
  if (!goal) return '';
  if (goal.below !== undefined) {
    return `< ${goal.below} ${row.unit} ${row.value < goal.below ? 'met' : 'MISSED'}`;
  }
  if (goal.atLeast !== undefined) {
    return `>= ${num(goal.atLeast)} ${row.unit} ${row.value >= goal.atLeast ? 'met' : 'MISSED'}`;
  }
  return `>= ${goal.ratioAtLeast.toFixed(2)}x ${row.ratio >= goal.ratioAtLeast ? 'met' : 'MISSED'}`;
}

function printTable(rows) {
  const header = ['scenario', 'metric', 'value', 'unit', 'baseline', 'ratio', 'goal'];
  const cells = rows.map((r) => [
    r.scenario,
    r.metric,
    num(r.value),
    r.unit,
    num(r.baseline),
    r.ratio === null ? '' : r.ratio.toFixed(2),
    goalText(r),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)));
  const numeric = new Set([2, 4, 5]);
  const line = (c) =>
    c
      .map((cell, i) => (numeric.has(i) ? cell.padStart(widths[i]) : cell.padEnd(widths[i])))
      .join('  ')
      .trimEnd();
  process.stdout.write(
    `${[line(header), line(widths.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n')}\n`,
  );
}
