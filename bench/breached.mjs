// Breached-password filter: import 10M synthetic Pwned Passwords entries (1M with --quick) written as range
// files, then measure size, lookup rate (beside raw SHA-1 hashing of the same passwords, in the same run),
// false-positive rate, import time and the import's peak memory.
import { fork } from 'node:child_process';
import { hash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { importBreached, loadBreachedFilter } from '../dist/identity/breached/index.js';
import { interleave, metric } from './lib/measure.mjs';

export const name = 'breached';

export const goals = {
  'bits per entry': { below: 9.5 },
  'lookup time': { below: 2 },
  'false positives': { below: 1 },
};

const self = fileURLToPath(import.meta.url);
const FILES = 4096;

/** Range files as PwnedPasswordsDownloader writes them: `PREFIX.txt`, CRLF lines `SUFFIX:COUNT`. */
function writeRangeFiles(dir, entries) {
  const perFile = Math.ceil(entries / FILES);
  let written = 0;
  for (let f = 0; f < FILES && written < entries; f++) {
    // Spread the 4096 files over the whole prefix space so every top byte gets its share.
    const prefix = ((f << 8) | randomBytes(1)[0]).toString(16).toUpperCase().padStart(5, '0');
    const n = Math.min(perFile, entries - written);
    const hex = randomBytes(n * 18)
      .toString('hex')
      .toUpperCase();
    const lines = new Array(n);
    for (let i = 0; i < n; i++) lines[i] = `${hex.slice(i * 36, i * 36 + 35)}:${1 + (i % 50)}`;
    writeFileSync(join(dir, `${prefix}.txt`), `${lines.join('\r\n')}\r\n`);
    written += n;
  }
}

/** The import runs in a child process so its peak RSS is its own, not the harness's high-water mark. */
function importInChild(inputDir, out) {
  return new Promise((resolve, reject) => {
    const child = fork(self, ['--import-child', inputDir, out], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    child.once('message', resolve);
    child.once('error', reject);
    child.once('exit', (code) => code !== 0 && reject(new Error(`import child exited with ${code}`)));
  });
}

if (process.argv[2] === '--import-child') {
  const summary = await importBreached([process.argv[3]], process.argv[4], { minCount: 1 });
  // maxRSS is in KiB on Linux.
  process.send({ summary, peakRssMiB: process.resourceUsage().maxRSS / 1024 }, () => process.exit(0));
}

function lookupRates(filter, passwords) {
  const time = (fn) => {
    const start = performance.now();
    let hits = 0;
    for (const pw of passwords) if (fn(pw)) hits++;
    return { perSecond: passwords.length / ((performance.now() - start) / 1000), hits };
  };
  // Baseline: the fastest raw SHA-1 node:crypto offers (hex output; a Buffer per digest costs more than SHA-1).
  const sha1 = (pw) => hash('sha1', pw, 'hex').length !== 40; // never true; keeps the digest live
  let falsePositives = 0;
  return interleave(
    3,
    () => time(sha1).perSecond,
    () => {
      const r = time((pw) => filter.has(pw));
      falsePositives = r.hits;
      return r.perSecond;
    },
  ).then((rates) => ({ ...rates, falsePositives }));
}

export async function run({ quick = false, log = () => {} } = {}) {
  const entries = quick ? 1_000_000 : 10_000_000;
  const work = mkdtempSync(join(tmpdir(), 'rampart-bench-breached-'));
  try {
    const input = join(work, 'ranges');
    const out = join(work, 'breached.bin');
    mkdirSync(input);
    log(`   writing ${entries.toLocaleString('en-US')} synthetic entries in ${FILES} range files`);
    writeRangeFiles(input, entries);
    log('   importing');
    const { summary, peakRssMiB } = await importInChild(input, out);
    const filter = loadBreachedFilter(out);
    // Random 16-byte passwords: members of the filter with probability ~2^-64, so every hit is a false positive.
    const probes = Array.from({ length: quick ? 300_000 : 1_000_000 }, () =>
      randomBytes(12).toString('base64'),
    );
    const rates = await lookupRates(filter, probes);
    const fpPercent = (100 * rates.falsePositives) / probes.length;
    return [
      metric(name, 'entries', summary.entries, 'keys'),
      metric(name, 'bits per entry', filter.bitsPerEntry, 'bits'),
      metric(name, 'lookups', rates.subject, 'lookups/s', rates.baseline),
      metric(name, 'lookup time', 1e6 / rates.subject, 'µs'),
      metric(name, 'false positives', fpPercent, '%'),
      metric(name, 'import time', summary.durationMs / 1000, 's'),
      metric(name, 'import rate', summary.entries / (summary.durationMs / 1000), 'entries/s'),
      metric(name, 'import peak RSS', peakRssMiB, 'MiB'),
    ];
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
