/**
 * `importBreached`: Pwned Passwords dumps -> one filter file, in bounded memory.
 *
 * Pass 1 streams every input once and spills 64-bit keys into 256 files by top byte.
 * Pass 2 builds one shard at a time (load its keys, sort, de-duplicate, Binary Fuse 8) and appends its
 * fingerprints to the output. Peak memory is the largest shard (~30 bytes per key), not the input.
 */
import { closeSync, createReadStream, mkdtempSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { crc32 } from 'node:zlib';
import { BreachedImportError } from './errors.ts';
import { encodeHeader, encodeShardTable, HEADER_BYTES, type ShardEntry } from './format.ts';
import { buildFuse8 } from './fuse8.ts';
import { HashLineParser } from './line-parser.ts';
import {
  DEFAULT_MAX_KEYS,
  DEFAULT_TARGET_KEYS,
  planShards,
  type ShardRange,
  shardDirectory,
} from './plan.ts';
import { type ResolvedSource, resolveSources } from './sources.ts';
import { readBucketRange, SpillWriter } from './spill.ts';

const SMALL_FILE_BYTES = 4 << 20;

export type ImportProgress =
  | { phase: 'read'; bytesRead: number; totalBytes: number; accepted: number; skipped: number; file: string }
  | { phase: 'build'; shardsBuilt: number; shardCount: number };

export interface ImportOptions {
  /** Entries seen fewer times than this are left out (default 1: keep everything). */
  minCount?: number;
  onProgress?: (p: ImportProgress) => void;
  /** Where spill files go; default: next to the output, which is where the disk space is expected. */
  tmpDir?: string;
  targetShardKeys?: number;
  maxShardKeys?: number;
}

export interface ImportSummary {
  files: number;
  /** Distinct keys in the filter. */
  entries: number;
  /** Lines at or above the threshold whose 64-bit key was already present. */
  duplicates: number;
  skippedBelowThreshold: number;
  shardCount: number;
  bytes: number;
  bitsPerEntry: number;
  durationMs: number;
}

export async function importBreached(
  paths: string[],
  out: string,
  options: ImportOptions = {},
): Promise<ImportSummary> {
  const started = performance.now();
  const minCount = options.minCount ?? 1;
  if (!Number.isInteger(minCount) || minCount < 0 || minCount > 0xffffffff) {
    throw new BreachedImportError('bad_option', `minCount must be a whole number >= 0, got ${minCount}`);
  }
  const sources = resolveSources(paths);
  const spillDir = mkdtempSync(join(options.tmpDir ?? dirname(out), '.rampart-breached-'));
  try {
    const spill = new SpillWriter(spillDir);
    let read: { accepted: number; skipped: number };
    try {
      read = await spillAll(sources, spill, minCount, options.onProgress);
      spill.close();
    } catch (err) {
      spill.abort();
      throw err;
    }
    const plan = planShards(
      spill.counts16,
      options.targetShardKeys ?? DEFAULT_TARGET_KEYS,
      options.maxShardKeys ?? DEFAULT_MAX_KEYS,
    );
    const partial = `${out}.partial-${process.pid}`;
    let written: { entries: number; bytes: number };
    try {
      written = writeFilter(partial, spillDir, plan.shards, shardDirectory(plan), plan.dirBits, {
        minCount,
        skipped: read.skipped,
        onProgress: options.onProgress,
      });
    } catch (err) {
      rmSync(partial, { force: true });
      throw err;
    }
    renameSync(partial, out); // readers see the old file or the whole new one, never half of it
    return {
      files: sources.length,
      entries: written.entries,
      duplicates: read.accepted - written.entries,
      skippedBelowThreshold: read.skipped,
      shardCount: plan.shards.length,
      bytes: written.bytes,
      bitsPerEntry: written.entries === 0 ? 0 : (written.bytes * 8) / written.entries,
      durationMs: performance.now() - started,
    };
  } finally {
    rmSync(spillDir, { recursive: true, force: true });
  }
}

async function spillAll(
  sources: ResolvedSource[],
  spill: SpillWriter,
  minCount: number,
  onProgress: ImportOptions['onProgress'],
): Promise<{ accepted: number; skipped: number }> {
  const totalBytes = sources.reduce((n, s) => n + s.bytes, 0);
  const sink = (hi: number, lo: number) => spill.add(hi, lo);
  let bytesRead = 0;
  let accepted = 0;
  let skipped = 0;
  for (const { source, bytes } of sources) {
    const parser = new HashLineParser(source, minCount, sink);
    for await (const chunk of chunksOf(source.path, bytes)) {
      parser.push(chunk);
      bytesRead += chunk.length;
      onProgress?.({
        phase: 'read',
        bytesRead,
        totalBytes,
        accepted: accepted + parser.accepted,
        skipped: skipped + parser.skipped,
        file: source.path,
      });
    }
    parser.end();
    accepted += parser.accepted;
    skipped += parser.skipped;
  }
  return { accepted, skipped };
}

/**
 * A range file is ~40 KB and a full download has a million of them: one read each is several times faster
 * than a stream each. Only large (combined) files are streamed, in 1 MiB chunks.
 */
async function* chunksOf(path: string, bytes: number): AsyncGenerator<Buffer> {
  if (bytes <= SMALL_FILE_BYTES) {
    yield await readFile(path);
    return;
  }
  for await (const chunk of createReadStream(path, { highWaterMark: 1 << 20 })) yield chunk as Buffer;
}

interface WriteContext {
  minCount: number;
  skipped: number;
  onProgress: ImportOptions['onProgress'];
}

function writeFilter(
  path: string,
  spillDir: string,
  ranges: ShardRange[],
  directory: Uint32Array,
  dirBits: 8 | 16,
  ctx: WriteContext,
): { entries: number; bytes: number } {
  const fd = openSync(path, 'w');
  try {
    let crc = 0;
    let position = HEADER_BYTES;
    const append = (data: Uint8Array) => {
      writeSync(fd, data, 0, data.length, position);
      position += data.length;
      crc = crc32(data, crc);
    };
    const table: ShardEntry[] = [];
    let offset = 0;
    let entries = 0;
    const chunk = new Uint32Array(1 << 18); // 1 MiB read buffer shared by every bucket read
    ranges.forEach((range, index) => {
      const keys = loadShardKeys(spillDir, range, chunk);
      const filter = buildFuse8(new Uint32Array(keys.buffer), keys.length, index);
      append(filter.fingerprints);
      table.push({ ...filter, offset });
      offset += filter.arrayLength;
      entries += filter.entries;
      ctx.onProgress?.({ phase: 'build', shardsBuilt: index + 1, shardCount: ranges.length });
    });
    append(new Uint8Array(directory.buffer, directory.byteOffset, directory.byteLength));
    append(encodeShardTable(table));
    const header = encodeHeader({
      shardCount: ranges.length,
      dirBits,
      minCount: ctx.minCount,
      entries,
      fingerprintBytes: offset,
      bodyCrc: crc,
      skipped: ctx.skipped,
    });
    writeSync(fd, header, 0, header.length, 0);
    return { entries, bytes: position };
  } finally {
    closeSync(fd);
  }
}

/** Keys of one shard, sorted and de-duplicated (Binary Fuse construction needs distinct keys). */
function loadShardKeys(spillDir: string, range: ShardRange, chunk: Uint32Array): BigUint64Array {
  const all = new BigUint64Array(range.keys);
  const words = new Uint32Array(all.buffer);
  let n = 0;
  for (let b = range.from16 >> 8; b <= (range.to16 - 1) >> 8; b++) {
    n = readBucketRange(spillDir, b, range.from16, range.to16, words, n, chunk);
  }
  // The plan's counts came from the same spill files; a mismatch means they changed underneath us.
  if (n !== range.keys) throw new Error(`spill files hold ${n} keys for a shard planned with ${range.keys}`);
  all.sort();
  // Compare word pairs rather than BigInt elements: reading a BigUint64Array allocates a BigInt per read.
  let unique = 0;
  for (let i = 0; i < n; i++) {
    const lo = words[2 * i] as number;
    const hi = words[2 * i + 1] as number;
    if (unique > 0 && lo === words[2 * unique - 2] && hi === words[2 * unique - 1]) continue;
    words[2 * unique] = lo;
    words[2 * unique + 1] = hi;
    unique++;
  }
  return all.subarray(0, unique);
}
