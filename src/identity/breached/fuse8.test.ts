import { randomFillSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { buildFuse8, type Fuse8, fuse8Contains, fuse8Layout } from './fuse8.ts';

/** Distinct random 64-bit keys as the (lo, hi) word pairs the builder takes. */
function randomKeys(n: number): Uint32Array {
  const big = new BigUint64Array(n);
  randomFillSync(big);
  big.sort();
  let unique = 0;
  for (let i = 0; i < n; i++) if (i === 0 || big[i] !== big[unique - 1]) big[unique++] = big[i] as bigint;
  return new Uint32Array(big.buffer, 0, unique * 2);
}

const contains = (f: Fuse8, hi: number, lo: number) =>
  fuse8Contains(
    hi,
    lo,
    f.seedHi,
    f.seedLo,
    f.segmentLength,
    f.segmentCount * f.segmentLength,
    f.fingerprints,
    0,
  );

function missing(f: Fuse8, keys: Uint32Array): number {
  let misses = 0;
  for (let i = 0; i < keys.length / 2; i++)
    if (!contains(f, keys[2 * i + 1] as number, keys[2 * i] as number)) misses++;
  return misses;
}

describe('Binary Fuse 8', () => {
  it('finds every key it was built from, for any set of distinct keys', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }), { maxLength: 3000 }),
        (list) => {
          const keys = new Uint32Array(BigUint64Array.from(list).buffer);
          const f = buildFuse8(keys, list.length);
          expect(missing(f, keys)).toBe(0);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('handles keys that differ only in their low bits (one shard shares its top byte)', () => {
    const list = Array.from({ length: 5000 }, (_, i) => 0x21bd1000_00000000n + BigInt(i));
    const keys = new Uint32Array(BigUint64Array.from(list).buffer);
    expect(missing(buildFuse8(keys, list.length), keys)).toBe(0);
  });

  it('keeps the false-positive rate near 1/256 on 300,000 random non-members', () => {
    const keys = randomKeys(200_000);
    const f = buildFuse8(keys, keys.length / 2);
    expect(missing(f, keys)).toBe(0);
    const probes = new Uint32Array(600_000);
    randomFillSync(probes);
    let hits = 0;
    for (let i = 0; i < 300_000; i++)
      if (contains(f, probes[2 * i + 1] as number, probes[2 * i] as number)) hits++;
    const rate = hits / 300_000;
    expect(rate).toBeLessThan(0.01);
    expect(rate).toBeGreaterThan(0.001); // an always-false filter would pass the bound above
  });

  it('sizes large sets at ~9 bits per key and small sets with more slack', () => {
    const big = fuse8Layout(1_000_000);
    expect((big.arrayLength * 8) / 1_000_000).toBeLessThan(9.2);
    expect(big.arrayLength).toBe((big.segmentCount + 2) * big.segmentLength);
    expect(fuse8Layout(0).arrayLength).toBeGreaterThan(0);
    expect(fuse8Layout(1).segmentCount).toBe(1);
    expect(fuse8Layout(100_000_000).segmentLength).toBe(65536);
  });

  it('is deterministic: the same keys and salt give the same filter', () => {
    const keys = randomKeys(10_000);
    const a = buildFuse8(keys, keys.length / 2, 7);
    const b = buildFuse8(keys, keys.length / 2, 7);
    expect([a.seedHi, a.seedLo]).toEqual([b.seedHi, b.seedLo]);
    expect(Buffer.from(a.fingerprints).equals(Buffer.from(b.fingerprints))).toBe(true);
  });

  it('refuses duplicate keys instead of looping forever', () => {
    const keys = new Uint32Array([1, 2, 1, 2, 3, 4]);
    expect(() => buildFuse8(keys, 3)).toThrow(/duplicate keys/);
  });
});
