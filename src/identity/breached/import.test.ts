import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { BreachedImportError } from './errors.ts';
import { type ImportProgress, importBreached } from './import.ts';
import { loadBreachedFilter } from './load.ts';

const work = mkdtempSync(join(tmpdir(), 'rampart-breached-import-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

let seq = 0;
const fresh = (name: string) => {
  const dir = join(work, `${seq++}-${name}`);
  mkdirSync(dir);
  return dir;
};
const sha1 = (s: string) => createHash('sha1').update(s).digest('hex').toUpperCase();
const randomHashes = (n: number) =>
  Array.from({ length: n }, () => randomBytes(20).toString('hex').toUpperCase());
/** Random hashes under at most `files` distinct 5-digit prefixes, so a test writes hundreds of files, not 100,000. */
const clusteredHashes = (n: number, files = 400) => {
  const prefixes = randomHashes(files).map((h) => h.slice(0, 5));
  return randomHashes(n).map((h, i) => `${prefixes[i % files]}${h.slice(5)}`);
};

/** Write `hashes` as PwnedPasswordsDownloader range files: `PREFIX.txt`, lines `SUFFIX:COUNT`. */
function writeRanges(dir: string, entries: Array<[string, number]>, eol = '\r\n') {
  const byPrefix = new Map<string, string[]>();
  for (const [h, count] of entries) {
    const lines = byPrefix.get(h.slice(0, 5)) ?? [];
    lines.push(`${h.slice(5)}:${count}`);
    byPrefix.set(h.slice(0, 5), lines);
  }
  for (const [prefix, lines] of byPrefix) writeFileSync(join(dir, `${prefix}.txt`), lines.join(eol) + eol);
}

function randomNonMemberHits(has: (hex: string) => boolean, n: number): number {
  let hits = 0;
  for (const h of randomHashes(n)) if (has(h)) hits++;
  return hits;
}

describe('importBreached', () => {
  it('builds from range files (CRLF) with no false negatives and < 1% false positives', async () => {
    const dir = fresh('ranges');
    const passwords = ['password123', 'correct horse', 'Tr0ub4dor&3', 'hunter2'];
    const hashes = [...passwords.map(sha1), ...clusteredHashes(120_000)];
    writeRanges(
      dir,
      hashes.map((h) => [h, 5]),
    );
    const out = join(work, 'ranges.bin');
    const summary = await importBreached([dir], out);
    expect(summary.entries).toBe(hashes.length);
    expect(summary.skippedBelowThreshold).toBe(0);
    const filter = loadBreachedFilter(out);
    expect(filter.entries).toBe(hashes.length);
    for (const pw of passwords) expect(filter.has(pw)).toBe(true);
    expect(hashes.filter((h) => !filter.hasSha1(h))).toEqual([]);
    expect(hashes.every((h) => filter.hasSha1(h.toLowerCase()))).toBe(true);
    expect(randomNonMemberHits((h) => filter.hasSha1(h), 300_000) / 300_000).toBeLessThan(0.01);
    // A filter answers "maybe" for about 1 in 256 non-members, and the members above are random each
    // run, so one fixed string would be a false hit now and then (it was: a flaky CI run). Of 50
    // never-used passwords, more than 3 hits would mean the filter is broken (chance about 5e-5).
    const unused = Array.from({ length: 50 }, (_, i) => `a password nobody ever used ${i} 8f1d2c`);
    expect(unused.filter((pw) => filter.has(pw)).length).toBeLessThanOrEqual(3);
  });

  it('builds from one combined HASH:COUNT file with LF endings and no final newline', async () => {
    const hashes = randomHashes(50_000);
    const file = join(work, 'combined.txt');
    writeFileSync(file, hashes.map((h, i) => `${h}:${i + 1}`).join('\n'));
    const out = join(work, 'combined.bin');
    const summary = await importBreached([file], out);
    expect(summary.entries).toBe(50_000);
    const filter = loadBreachedFilter(out);
    expect(hashes.filter((h) => !filter.hasSha1(h))).toEqual([]);
  });

  it('skips entries below the minimum count and records the threshold', async () => {
    const dir = fresh('threshold');
    const rare = clusteredHashes(2000);
    const common = clusteredHashes(2000);
    writeRanges(dir, [
      ...rare.map((h): [string, number] => [h, 1]),
      ...common.map((h): [string, number] => [h, 10]),
    ]);
    const out = join(work, 'threshold.bin');
    const summary = await importBreached([dir], out, { minCount: 10 });
    expect(summary).toMatchObject({ entries: 2000, skippedBelowThreshold: 2000 });
    const filter = loadBreachedFilter(out);
    expect(filter.minCount).toBe(10);
    expect(common.every((h) => filter.hasSha1(h))).toBe(true);
    // Skipped hashes are absent except for the filter's ordinary ~0.4% false positives.
    expect(rare.filter((h) => filter.hasSha1(h)).length).toBeLessThan(40);
  });

  it('keeps every key when one top byte holds more than a spill buffer (8192 keys)', async () => {
    // Regression: the last key of every full spill buffer was dropped, a false negative per 8192 keys.
    const dir = fresh('one-byte');
    const hashes = clusteredHashes(30_000).map((h) => `21${h.slice(2)}`);
    writeRanges(
      dir,
      hashes.map((h) => [h, 1]),
      '\n',
    );
    const out = join(work, 'one-byte.bin');
    expect((await importBreached([dir], out)).entries).toBe(30_000);
    const filter = loadBreachedFilter(out);
    expect(hashes.filter((h) => !filter.hasSha1(h))).toEqual([]);
  });

  it('splits an oversized top byte into shards by the second byte', async () => {
    const dir = fresh('split');
    const hashes = [...clusteredHashes(20_000).map((h) => `AB${h.slice(2)}`), ...clusteredHashes(5_000)];
    writeRanges(
      dir,
      hashes.map((h) => [h, 3]),
    );
    const out = join(work, 'split.bin');
    const summary = await importBreached([dir], out, { targetShardKeys: 2000, maxShardKeys: 4000 });
    expect(summary.shardCount).toBeGreaterThan(5);
    const filter = loadBreachedFilter(out);
    expect(hashes.filter((h) => !filter.hasSha1(h))).toEqual([]);
  });

  it('merges duplicates and reports progress for both phases', async () => {
    const file = join(work, 'dups.txt');
    const h = randomHashes(10);
    writeFileSync(file, [...h, ...h].map((x) => `${x}:2`).join('\r\n'));
    const phases = new Set<ImportProgress['phase']>();
    const summary = await importBreached([file], join(work, 'dups.bin'), {
      onProgress: (p) => phases.add(p.phase),
    });
    expect(summary).toMatchObject({ entries: 10, duplicates: 10 });
    expect([...phases]).toEqual(['read', 'build']);
  });

  it('writes a valid empty filter when every entry is below the threshold', async () => {
    const file = join(work, 'low.txt');
    writeFileSync(
      file,
      randomHashes(5)
        .map((h) => `${h}:1\n`)
        .join(''),
    );
    const out = join(work, 'low.bin');
    expect((await importBreached([file], out, { minCount: 2 })).entries).toBe(0);
    expect(loadBreachedFilter(out).has('password')).toBe(false);
  });
});

describe('importBreached rejects bad input', () => {
  const expectImportError = async (paths: string[], pattern: RegExp) => {
    const out = join(work, `bad-${seq++}.bin`);
    const error = await importBreached(paths, out).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(BreachedImportError);
    expect((error as Error).message).toMatch(pattern);
    // Nothing is left behind: no output, no partial file, no spill directory.
    expect(
      readdirSync(work).filter((n) => n.startsWith(`bad-`) || n.startsWith('.rampart-breached-')),
    ).toEqual([]);
  };

  it('names the file and line of a malformed range line', async () => {
    const dir = fresh('malformed');
    const good = randomHashes(2).map((h) => `${h.slice(5)}:4`);
    writeFileSync(join(dir, '0000A.txt'), [good[0], 'NOT-A-HASH:12', good[1]].join('\r\n'));
    await expectImportError(
      [dir],
      /0000A\.txt:2: expected SUFFIX:COUNT \(35 hex digits\), got "NOT-A-HASH:12"/,
    );
  });

  it('refuses full hashes in a range file, NTLM-length lines, missing or non-numeric counts', async () => {
    const h = randomHashes(1)[0] as string;
    const cases: Array<[string, string]> = [
      ['1ABCD.txt', `${h}:3`],
      ['combined-ntlm.txt', `${h.slice(0, 32)}:3`],
      ['combined-nocount.txt', `${h}:`],
      ['combined-text.txt', `${h}:12x`],
      ['combined-sep.txt', `${h};12`],
    ];
    for (const [name, line] of cases) {
      const file = join(fresh('case'), name);
      writeFileSync(file, `${line}\n`);
      await expectImportError([file], new RegExp(`${name.replace('.', '\\.')}:1: expected`));
    }
  });

  it('refuses missing paths, empty directories and a negative threshold', async () => {
    await expectImportError([join(work, 'nope.txt')], /nope\.txt: ENOENT/);
    await expectImportError([fresh('empty')], /no \.txt files/);
    await expectImportError([], /no input files/);
    const error = await importBreached([work], join(work, 'x.bin'), { minCount: -1 }).catch(
      (e: unknown) => e,
    );
    expect((error as BreachedImportError).code).toBe('bad_option');
  });
});
