import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Command } from 'commander';
import { afterAll, describe, expect, it } from 'vitest';
import { registerBreachedCommands } from './cli.ts';
import { loadBreachedFilter } from './load.ts';

const work = mkdtempSync(join(tmpdir(), 'rampart-breached-cli-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

function cli() {
  const out = new PassThrough();
  const err = new PassThrough();
  let text = '';
  let errText = '';
  out.on('data', (d) => {
    text += d;
  });
  err.on('data', (d) => {
    errText += d;
  });
  const root = new Command('rampart')
    .exitOverride()
    .configureOutput({ writeOut: (s) => out.write(s), writeErr: (s) => err.write(s) });
  registerBreachedCommands(root, { out, err });
  const run = (...args: string[]) => root.parseAsync(['node', 'rampart', ...args]);
  return { run, output: () => text, errors: () => errText };
}

describe('rampart breached import', () => {
  it('imports range files and prints a summary', async () => {
    const prefix = '21BD1';
    const rows = Array.from(
      { length: 500 },
      (_, i) => `${randomBytes(18).toString('hex').toUpperCase().slice(0, 35)}:${i % 4}`,
    );
    writeFileSync(join(work, `${prefix}.txt`), rows.join('\r\n'));
    const out = join(work, 'filter.bin');
    const { run, output } = cli();
    await run('breached', 'import', join(work, `${prefix}.txt`), '--out', out, '--min-count', '2');
    const text = output();
    expect(text).toContain(`wrote ${out}`);
    expect(text).toContain('entries: 250 from 1 files');
    expect(text).toContain('skipped below threshold: 250');
    expect(text).toMatch(/bits\/entry: \d+\.\d\d/);
    expect(text).toMatch(/time: \d+\.\d s/);
    expect(loadBreachedFilter(out).entries).toBe(250);
  });

  it('refuses a non-numeric --min-count and a missing --out', async () => {
    const a = cli();
    await expect(
      a.run('breached', 'import', work, '--out', 'x.bin', '--min-count', 'many'),
    ).rejects.toThrow();
    expect(a.errors()).toMatch(/--min-count.*a whole number >= 0/);
    const b = cli();
    await expect(b.run('breached', 'import', work)).rejects.toThrow();
    expect(b.errors()).toMatch(/--out <file>/);
  });
});
