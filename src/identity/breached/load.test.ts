import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BreachedFilterError } from './errors.ts';
import { HEADER_BYTES } from './format.ts';
import { importBreached } from './import.ts';
import { breachedFilterFromBuffer, loadBreachedFilter } from './load.ts';

const work = mkdtempSync(join(tmpdir(), 'rampart-breached-load-'));
const good = join(work, 'good.bin');
let bytes: Buffer;

beforeAll(async () => {
  const lines = [createHash('sha1').update('letmein!').digest('hex').toUpperCase()];
  for (let i = 0; i < 3000; i++) lines.push(randomBytes(20).toString('hex').toUpperCase());
  writeFileSync(join(work, 'all.txt'), lines.map((h) => `${h}:7`).join('\r\n'));
  await importBreached([join(work, 'all.txt')], good, { minCount: 3 });
  bytes = readFileSync(good);
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** Re-seal the header checksum, so a test reaches the check behind it. */
const resealHeader = (b: Buffer) => {
  b.writeUInt32LE(crc32(b.subarray(0, 60)), 60);
  return b;
};

const rejects = (b: Buffer, code: string, message: RegExp) => {
  let error: unknown;
  try {
    breachedFilterFromBuffer(b, 'filter.bin');
  } catch (e) {
    error = e;
  }
  expect(error).toBeInstanceOf(BreachedFilterError);
  expect((error as BreachedFilterError).code).toBe(code);
  expect((error as Error).message).toMatch(message);
};

describe('loadBreachedFilter', () => {
  it('loads a filter and reports its figures', () => {
    const filter = loadBreachedFilter(good);
    expect(filter).toMatchObject({ entries: 3001, minCount: 3, shardCount: 1, bytes: bytes.length });
    expect(filter.bitsPerEntry).toBeCloseTo((bytes.length * 8) / 3001);
    expect(filter.has('letmein!')).toBe(true);
    expect(() => filter.hasSha1('not-a-hash')).toThrow(TypeError);
  });

  it('names a missing file', () => {
    expect(() => loadBreachedFilter(join(work, 'missing.bin'))).toThrow(
      /missing\.bin: cannot read filter file \(ENOENT\)/,
    );
  });

  it('refuses a file that is not a filter', () => {
    rejects(
      Buffer.from('hello world, this is not a filter at all, not even close. '.repeat(3)),
      'bad_magic',
      /bad magic/,
    );
  });

  it('refuses a file shorter than the header', () => {
    rejects(bytes.subarray(0, 20), 'truncated', /shorter than the header/);
  });

  it('refuses a truncated body', () => {
    rejects(bytes.subarray(0, bytes.length - 5), 'truncated', /header promises/);
  });

  it('refuses trailing bytes', () => {
    rejects(Buffer.concat([bytes, Buffer.alloc(3)]), 'corrupt', /header promises/);
  });

  it('refuses another format version', () => {
    const b = Buffer.from(bytes);
    b.writeUInt32LE(2, 8);
    rejects(resealHeader(b), 'bad_version', /format version 2, expected 1/);
  });

  it('refuses a damaged header', () => {
    const b = Buffer.from(bytes);
    b.writeUInt32LE(99, 20); // min count changed without re-sealing
    rejects(b, 'corrupt', /header checksum mismatch/);
  });

  it('refuses a flipped fingerprint byte', () => {
    const b = Buffer.from(bytes);
    b[HEADER_BYTES + 10] = (b[HEADER_BYTES + 10] as number) ^ 0x40;
    rejects(b, 'corrupt', /body checksum mismatch/);
  });

  it('refuses a header that miscounts the shards', () => {
    const b = Buffer.from(bytes);
    b.writeUInt32LE(0, 12);
    rejects(resealHeader(b), 'corrupt', /shard directory parameters/);
  });
});
