/**
 * `loadBreachedFilter`: one read of the filter file at start, validated, then lookups against the buffer.
 * A lookup is SHA-1 (node:crypto) -> first 64 bits -> shard via the directory -> Binary Fuse 8 probe.
 */
import { hash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { BreachedFilterError } from './errors.ts';
import { decodeFilter } from './format.ts';
import { fuse8Contains } from './fuse8.ts';

export interface BreachedFilter {
  /** True if the password's SHA-1 is (probably: ~0.4% false positives) in the imported set; never a false negative. */
  has(password: string): boolean;
  /** Same, for a 40-hex-digit SHA-1 (either case). */
  hasSha1(hex: string): boolean;
  readonly entries: number;
  readonly bitsPerEntry: number;
  readonly shardCount: number;
  readonly minCount: number;
  readonly bytes: number;
}

const SHA1_HEX = /^[0-9A-Fa-f]{40}$/;

/** Eight hex digits (already validated) at `at` as an unsigned 32-bit value; no substring allocated. */
function hexWord(hex: string, at: number): number {
  let v = 0;
  for (let i = at; i < at + 8; i++) {
    const c = hex.charCodeAt(i);
    // '0'-'9' -> 0-9; 'A'-'F' and 'a'-'f' -> 10-15 (the low nibble of the letter plus 9)
    v = v * 16 + (c <= 57 ? c - 48 : (c & 15) + 9);
  }
  return v;
}

export function loadBreachedFilter(path: string): BreachedFilter {
  let file: Buffer;
  try {
    file = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new BreachedFilterError('truncated', `${path}: cannot read filter file (${code})`);
  }
  return breachedFilterFromBuffer(file, path);
}

export function breachedFilterFromBuffer(file: Buffer, path = '<buffer>'): BreachedFilter {
  const { header, directory, shards, fingerprints } = decodeFilter(file, path);
  // Struct-of-arrays: the hot path reads numbers from typed arrays, not object properties.
  const n = shards.length;
  const seedHi = new Uint32Array(n);
  const seedLo = new Uint32Array(n);
  const segLen = new Uint32Array(n);
  const scl = new Float64Array(n);
  const base = new Float64Array(n);
  const entries = new Uint32Array(n);
  shards.forEach((s, i) => {
    seedHi[i] = s.seedHi;
    seedLo[i] = s.seedLo;
    segLen[i] = s.segmentLength;
    scl[i] = s.segmentCount * s.segmentLength;
    base[i] = s.offset;
    entries[i] = s.entries;
  });
  const shift = 32 - header.dirBits;
  const hasKey = (hi: number, lo: number): boolean => {
    const s = directory[hi >>> shift] as number;
    if (entries[s] === 0) return false;
    return fuse8Contains(
      hi,
      lo,
      seedHi[s] as number,
      seedLo[s] as number,
      segLen[s] as number,
      scl[s] as number,
      fingerprints,
      base[s] as number,
    );
  };
  return {
    has(password: string): boolean {
      // Hex output, not 'buffer': allocating a Buffer per digest costs ~1 µs, more than SHA-1 itself.
      const hex = hash('sha1', password, 'hex');
      return hasKey(hexWord(hex, 0), hexWord(hex, 8));
    },
    hasSha1(hex: string): boolean {
      if (!SHA1_HEX.test(hex)) throw new TypeError('expected a SHA-1 as 40 hexadecimal digits');
      return hasKey(hexWord(hex, 0), hexWord(hex, 8));
    },
    entries: header.entries,
    bitsPerEntry: header.entries === 0 ? 0 : (file.length * 8) / header.entries,
    shardCount: n,
    minCount: header.minCount,
    bytes: file.length,
  };
}
