/**
 * Over-long lines in a Pwned Passwords import. Regression (security review, low): `rampart breached import`
 * runs in bounded memory, but a line without a line feed was carried and re-concatenated chunk after chunk
 * (src/identity/breached/line-parser.ts), so a file that is one long line was held whole, and copied over
 * and over, before it was refused as malformed. Now the carry never outgrows the longest valid line
 * (hash, colon, 15 count digits, CR): a longer one is refused as soon as it is seen, naming file and line.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { importBreached } from '../src/identity/breached/import.ts';
import { HashLineParser } from '../src/identity/breached/line-parser.ts';

const sha1 = (text: string) => createHash('sha1').update(text).digest('hex').toUpperCase();
const combined = { kind: 'combined', path: 'combined.txt' } as const;

describe('breached import: line length', () => {
  it('takes the longest valid line, and refuses a longer one as soon as it is seen', () => {
    const keys: number[][] = [];
    const parser = new HashLineParser(combined, 1, (hi, lo) => keys.push([hi, lo]));
    // Hash, colon, 15 count digits and CR: carried byte by byte to the end, and taken.
    for (const byte of Buffer.from(`${sha1('b')}:${'9'.repeat(15)}\r\n`)) parser.push(Buffer.from([byte]));
    expect(keys).toHaveLength(1);
    parser.push(Buffer.alloc(40, 'A')); // could still be a hash: carried
    // 80 bytes without a line feed: longer than 40 + 1 + 15 + 1, refused now rather than carried on.
    expect(() => parser.push(Buffer.alloc(40, 'A'))).toThrow(
      'combined.txt:2: expected HASH:COUNT (40 hex digits), got a line longer than 57 bytes starting "AAAA',
    );
  });

  it('refuses an over-long tail of a chunk without carrying it', () => {
    const parser = new HashLineParser({ kind: 'range', path: '21BD1.txt', prefix: 0x21bd1 }, 1, () => {});
    expect(() => parser.push(Buffer.from(`${sha1('a').slice(5)}:3\n${'B'.repeat(53)}`))).toThrow(
      /^21BD1\.txt:2: expected SUFFIX:COUNT \(35 hex digits\), got a line longer than 52 bytes/,
    );
  });

  it('names the file and the line when importing a file whose third line spans several read chunks', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rampart-breached-long-'));
    const file = join(dir, 'combined.txt');
    writeFileSync(
      file,
      Buffer.concat([Buffer.from(`${sha1('a')}:3\n${sha1('b')}:4\n`), Buffer.alloc(3 * 2 ** 20, 'A')]),
    );
    await expect(importBreached([file], join(dir, 'filter.bin'))).rejects.toThrow(
      `${file}:3: expected HASH:COUNT (40 hex digits), got a line longer than 57 bytes`,
    );
  });
});
