/**
 * Binary Fuse 8 filter (Graf & Lemire, "Binary Fuse Filters: Fast and Smaller Than Xor Filters", 2022).
 *
 * Keys are 64-bit values held as two uint32 halves (hi, lo), so neither construction nor lookup touches
 * BigInt: a lookup is a few Math.imul calls and three byte reads. Each key owns three slots, one in each
 * of three consecutive segments; the filter stores 8-bit values such that the XOR of a member's three
 * slots equals its fingerprint. A non-member matches with probability ~1/256 (~0.39%).
 */

/** Segments are capped at 2^16 slots so the two in-segment offsets fit in the low and high half of one word. */
const MAX_SEGMENT_LENGTH = 1 << 16;
/** Each failed attempt draws a new seed; the success odds per attempt are well above 1/2. */
const MAX_ATTEMPTS = 100;

export interface Fuse8Layout {
  segmentLength: number;
  /** Number of segments in which a key's first slot can fall; the array has two more. */
  segmentCount: number;
  arrayLength: number;
}

export interface Fuse8 extends Fuse8Layout {
  seedHi: number;
  seedLo: number;
  entries: number;
  fingerprints: Uint8Array;
}

/** Sizing from the paper: larger sets get longer segments and need less slack (down to 1.125 slots/key). */
export function fuse8Layout(size: number): Fuse8Layout {
  const segmentLength =
    size === 0 ? 4 : Math.min(MAX_SEGMENT_LENGTH, 2 ** Math.floor(Math.log(size) / Math.log(3.33) + 2.25));
  const sizeFactor = size <= 1 ? 0 : Math.max(1.125, 0.875 + (0.25 * Math.log(1e6)) / Math.log(size));
  const capacity = size <= 1 ? 0 : Math.round(size * sizeFactor);
  const totalSegments = Math.ceil(capacity / segmentLength);
  const segmentCount = totalSegments <= 2 ? 1 : totalSegments - 2;
  return { segmentLength, segmentCount, arrayLength: (segmentCount + 2) * segmentLength };
}

const fmix32 = (x: number): number => {
  let h = x ^ (x >>> 16);
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
};

// Scratch outputs of `mix`, kept at module level so the hot path allocates nothing.
let mixA = 0;
let mixB = 0;

/**
 * Three Feistel rounds over (hi ^ seedHi, lo ^ seedLo). A Feistel network is a bijection, so distinct
 * keys never collide into one 64-bit hash (which would make the peeling below fail for every seed).
 */
function mix(hi: number, lo: number, seedHi: number, seedLo: number): void {
  let a = hi ^ seedHi;
  let b = lo ^ seedLo;
  a ^= fmix32(b + 0x9e3779b9);
  b ^= fmix32(a + 0x7f4a7c15);
  a ^= fmix32(b + 0x6a09e667);
  mixA = a >>> 0;
  mixB = b >>> 0;
}

const fingerprintOf = (a: number, b: number): number => Math.imul(a ^ b, 0x9e3779b1) >>> 24;

/** First slot: a multiply-shift reduction of the high word into [0, segmentCount * segmentLength). */
const slot0 = (a: number, segmentCountLength: number): number =>
  Math.floor((a * segmentCountLength) / 4294967296);

/** Query one filter. The fingerprint array may be a view into a larger buffer starting at `base`. */
export function fuse8Contains(
  hi: number,
  lo: number,
  seedHi: number,
  seedLo: number,
  segmentLength: number,
  segmentCountLength: number,
  fingerprints: Uint8Array,
  base: number,
): boolean {
  mix(hi, lo, seedHi, seedLo);
  const mask = segmentLength - 1;
  const h0 = slot0(mixA, segmentCountLength);
  const h1 = (h0 + segmentLength) ^ ((mixB >>> 16) & mask);
  const h2 = (h0 + 2 * segmentLength) ^ (mixB & mask);
  const stored =
    (fingerprints[base + h0] as number) ^
    (fingerprints[base + h1] as number) ^
    (fingerprints[base + h2] as number);
  return stored === fingerprintOf(mixA, mixB);
}

/** Deterministic seed sequence (splitmix-style): the same input always yields the same file. */
function* seeds(salt: number): Generator<[number, number]> {
  let state = fmix32(salt + 0x2545f491);
  for (;;) {
    state = (state + 0x9e3779b9) | 0;
    const hi = fmix32(state);
    state = (state + 0x9e3779b9) | 0;
    yield [hi >>> 0, fmix32(state ^ 0x5bd1e995) >>> 0];
  }
}

/**
 * Build a filter over `size` distinct keys stored as (lo, hi) uint32 pairs, i.e. the little-endian view of
 * a BigUint64Array. Keys must be unique: the caller sorts and de-duplicates.
 */
export function buildFuse8(keys: Uint32Array, size: number, salt = 0): Fuse8 {
  const layout = fuse8Layout(size);
  const { segmentLength, segmentCount, arrayLength } = layout;
  const scl = segmentCount * segmentLength;
  const mask = segmentLength - 1;
  const hashA = new Uint32Array(size);
  const hashB = new Uint32Array(size);
  // Per slot: (number of keys << 2) | XOR of which-of-three positions the slot is for those keys.
  const count = new Uint8Array(arrayLength);
  // Per slot: XOR of the indexes of the keys that use it; once one key remains, this is that key.
  const xorIndex = new Uint32Array(arrayLength);
  const queue = new Uint32Array(arrayLength);
  const stackKey = new Uint32Array(size);
  const stackWhich = new Uint8Array(size);
  const pos = [0, 0, 0];
  const positions = (i: number) => {
    const a = hashA[i] as number;
    const b = hashB[i] as number;
    pos[0] = slot0(a, scl);
    pos[1] = ((pos[0] as number) + segmentLength) ^ ((b >>> 16) & mask);
    pos[2] = ((pos[0] as number) + 2 * segmentLength) ^ (b & mask);
  };
  const seedSource = seeds(salt);
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    const [seedHi, seedLo] = seedSource.next().value as [number, number];
    count.fill(0);
    xorIndex.fill(0);
    let overflow = false;
    for (let i = 0; i < size; i++) {
      mix(keys[2 * i + 1] as number, keys[2 * i] as number, seedHi, seedLo);
      hashA[i] = mixA;
      hashB[i] = mixB;
      positions(i);
      for (let j = 0; j < 3; j++) {
        const p = pos[j] as number;
        const c = (((count[p] as number) + 4) ^ j) & 0xff;
        count[p] = c;
        xorIndex[p] = (xorIndex[p] as number) ^ i;
        // A slot shared by 64 keys wraps the 6-bit counter; rare, and a new seed fixes it.
        if (c < 4) overflow = true;
      }
    }
    if (overflow) continue;
    const placed = peel(count, xorIndex, queue, stackKey, stackWhich, positions, pos);
    if (placed !== size) continue;
    const fingerprints = assign(size, stackKey, stackWhich, hashA, hashB, positions, pos, arrayLength);
    return { ...layout, seedHi, seedLo, entries: size, fingerprints };
  }
  throw new Error(
    `binary fuse construction failed after ${MAX_ATTEMPTS} seeds (${size} keys): duplicate keys?`,
  );
}

/** Repeatedly remove a key that is alone in one of its slots; returns how many keys were removed. */
function peel(
  count: Uint8Array,
  xorIndex: Uint32Array,
  queue: Uint32Array,
  stackKey: Uint32Array,
  stackWhich: Uint8Array,
  positions: (i: number) => void,
  pos: number[],
): number {
  let queued = 0;
  for (let p = 0; p < count.length; p++) {
    if ((count[p] as number) >> 2 === 1) queue[queued++] = p;
  }
  let stacked = 0;
  while (queued > 0) {
    const slot = queue[--queued] as number;
    if ((count[slot] as number) >> 2 !== 1) continue;
    const key = xorIndex[slot] as number;
    const which = (count[slot] as number) & 3;
    stackKey[stacked] = key;
    stackWhich[stacked] = which;
    stacked++;
    positions(key);
    for (let j = 0; j < 3; j++) {
      const p = pos[j] as number;
      const c = ((count[p] as number) - 4) ^ j;
      count[p] = c;
      xorIndex[p] = (xorIndex[p] as number) ^ key;
      if (c >> 2 === 1) queue[queued++] = p;
    }
  }
  return stacked;
}

/** Walk the peeling order backwards, setting each key's free slot so its three slots XOR to its fingerprint. */
function assign(
  size: number,
  stackKey: Uint32Array,
  stackWhich: Uint8Array,
  hashA: Uint32Array,
  hashB: Uint32Array,
  positions: (i: number) => void,
  pos: number[],
  arrayLength: number,
): Uint8Array {
  const fingerprints = new Uint8Array(arrayLength);
  for (let s = size - 1; s >= 0; s--) {
    const key = stackKey[s] as number;
    const which = stackWhich[s] as number;
    positions(key);
    const own = pos[which] as number;
    const other1 = pos[(which + 1) % 3] as number;
    const other2 = pos[(which + 2) % 3] as number;
    fingerprints[own] =
      fingerprintOf(hashA[key] as number, hashB[key] as number) ^
      (fingerprints[other1] as number) ^
      (fingerprints[other2] as number);
  }
  return fingerprints;
}
