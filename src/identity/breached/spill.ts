/**
 * First pass of the import: keys are appended to 256 spill files by their top byte, so the second pass can
 * build one shard at a time. Memory here is 256 small buffers, whatever the input size.
 */
import { closeSync, openSync, readSync, writeSync } from 'node:fs';
import { endianness } from 'node:os';
import { join } from 'node:path';

export const BUCKETS = 256;
const KEYS_PER_BUFFER = 8192;

// Spill files are read back through a Uint32Array/BigUint64Array view of the raw bytes.
if (endianness() !== 'LE') throw new Error('the breached-password filter needs a little-endian host');

export const bucketPath = (dir: string, bucket: number) => join(dir, `bucket-${bucket}.bin`);

export class SpillWriter {
  /** Key counts per top 16 bits, so shards can be planned before any bucket is read back. */
  readonly counts16 = new Uint32Array(65536);
  private readonly fds: number[] = [];
  private readonly buffers: Uint32Array[] = [];
  private readonly fill = new Uint32Array(BUCKETS);

  constructor(dir: string) {
    for (let b = 0; b < BUCKETS; b++) {
      this.fds.push(openSync(bucketPath(dir, b), 'w'));
      this.buffers.push(new Uint32Array(KEYS_PER_BUFFER * 2));
    }
  }

  /** Stored as (lo, hi) little-endian words: read back as a BigUint64Array, they sort by (hi, lo). */
  add(hi: number, lo: number): void {
    const bucket = hi >>> 24;
    const buf = this.buffers[bucket] as Uint32Array;
    const n = this.fill[bucket] as number;
    buf[2 * n] = lo;
    buf[2 * n + 1] = hi;
    this.counts16[hi >>> 16] = (this.counts16[hi >>> 16] as number) + 1;
    this.fill[bucket] = n + 1;
    if (n + 1 === KEYS_PER_BUFFER) this.flush(bucket);
  }

  // Synchronous writes: the import is an offline batch job, and this keeps the hot loop free of awaits.
  private flush(bucket: number): void {
    const n = this.fill[bucket] as number;
    const buf = this.buffers[bucket] as Uint32Array;
    if (n > 0) writeSync(this.fds[bucket] as number, buf, 0, n * 8);
    this.fill[bucket] = 0;
  }

  close(): void {
    for (let b = 0; b < BUCKETS; b++) this.flush(b);
    for (const fd of this.fds.splice(0)) closeSync(fd);
  }

  /** Release descriptors after a failure without flushing. */
  abort(): void {
    for (const fd of this.fds.splice(0)) closeSync(fd);
  }
}

/**
 * Read the keys whose top 16 bits fall in [from16, to16) into `into` starting at `offset`, through `chunk` (reused
 * across calls) so a large bucket never sits in memory twice. Returns the new offset.
 */
export function readBucketRange(
  dir: string,
  bucket: number,
  from16: number,
  to16: number,
  into: Uint32Array,
  offset: number,
  chunk: Uint32Array = new Uint32Array(1 << 18),
): number {
  const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
  const fd = openSync(bucketPath(dir, bucket), 'r');
  let at = offset;
  try {
    for (;;) {
      const got = readSync(fd, bytes, 0, bytes.length, null);
      if (got === 0) break;
      for (let i = 0; i < got / 4; i += 2) {
        const hi = chunk[i + 1] as number;
        const p = hi >>> 16;
        if (p < from16 || p >= to16) continue;
        into[2 * at] = chunk[i] as number;
        into[2 * at + 1] = hi;
        at++;
      }
    }
  } finally {
    closeSync(fd);
  }
  return at;
}
