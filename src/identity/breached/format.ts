/**
 * On-disk layout of a breached-password filter (all integers little-endian):
 *
 *   header (64 bytes)
 *     0  magic "RMPBFUS8"          8  version u32 (1)        12 shard count u32
 *     16 directory bits u32 (8|16) 20 min count u32          24 entries f64
 *     32 fingerprint bytes f64     40 body CRC-32 u32        44 reserved u32
 *     48 skipped below threshold f64                         56 reserved u32
 *     60 header CRC-32 u32 (of bytes 0..60)
 *   fingerprints of every shard, back to back
 *   directory: u32 shard index per value of the key's top `directory bits`
 *   shard table, 32 bytes per shard:
 *     seedHi u32, seedLo u32, entries u32, segmentLength u32, segmentCount u32, arrayLength u32,
 *     fingerprint offset f64 (from the start of the fingerprints)
 *
 * The body (everything after the header) is written front to back, so its CRC is computed while writing;
 * the header goes in last, at offset 0.
 */
import { crc32 } from 'node:zlib';
import { BreachedFilterError } from './errors.ts';

export const MAGIC = Buffer.from('RMPBFUS8', 'latin1');
export const FORMAT_VERSION = 1;
export const HEADER_BYTES = 64;
export const SHARD_ENTRY_BYTES = 32;

export interface FilterHeader {
  shardCount: number;
  dirBits: number;
  minCount: number;
  entries: number;
  fingerprintBytes: number;
  bodyCrc: number;
  skipped: number;
}

export interface ShardEntry {
  seedHi: number;
  seedLo: number;
  entries: number;
  segmentLength: number;
  segmentCount: number;
  arrayLength: number;
  offset: number;
}

export function encodeHeader(h: FilterHeader): Buffer {
  const b = Buffer.alloc(HEADER_BYTES);
  MAGIC.copy(b, 0);
  b.writeUInt32LE(FORMAT_VERSION, 8);
  b.writeUInt32LE(h.shardCount, 12);
  b.writeUInt32LE(h.dirBits, 16);
  b.writeUInt32LE(h.minCount, 20);
  b.writeDoubleLE(h.entries, 24);
  b.writeDoubleLE(h.fingerprintBytes, 32);
  b.writeUInt32LE(h.bodyCrc, 40);
  b.writeDoubleLE(h.skipped, 48);
  b.writeUInt32LE(crc32(b.subarray(0, 60)), 60);
  return b;
}

export function encodeShardTable(shards: ShardEntry[]): Buffer {
  const b = Buffer.alloc(shards.length * SHARD_ENTRY_BYTES);
  shards.forEach((s, i) => {
    const o = i * SHARD_ENTRY_BYTES;
    b.writeUInt32LE(s.seedHi, o);
    b.writeUInt32LE(s.seedLo, o + 4);
    b.writeUInt32LE(s.entries, o + 8);
    b.writeUInt32LE(s.segmentLength, o + 12);
    b.writeUInt32LE(s.segmentCount, o + 16);
    b.writeUInt32LE(s.arrayLength, o + 20);
    b.writeDoubleLE(s.offset, o + 24);
  });
  return b;
}

export interface DecodedFilter {
  header: FilterHeader;
  directory: Uint32Array;
  shards: ShardEntry[];
  fingerprints: Uint8Array;
}

/** Validate everything a lookup relies on, so a damaged file fails at start and never answers wrongly. */
export function decodeFilter(file: Buffer, path: string): DecodedFilter {
  const fail = (code: 'bad_magic' | 'bad_version' | 'truncated' | 'corrupt', why: string): never => {
    throw new BreachedFilterError(code, `${path}: ${why}`);
  };
  if (file.length < HEADER_BYTES) fail('truncated', `file is ${file.length} bytes, shorter than the header`);
  if (!file.subarray(0, 8).equals(MAGIC))
    fail('bad_magic', 'not a Rampart breached-password filter (bad magic)');
  const version = file.readUInt32LE(8);
  if (version !== FORMAT_VERSION)
    fail('bad_version', `format version ${version}, expected ${FORMAT_VERSION}`);
  if (crc32(file.subarray(0, 60)) !== file.readUInt32LE(60)) fail('corrupt', 'header checksum mismatch');
  const header: FilterHeader = {
    shardCount: file.readUInt32LE(12),
    dirBits: file.readUInt32LE(16),
    minCount: file.readUInt32LE(20),
    entries: file.readDoubleLE(24),
    fingerprintBytes: file.readDoubleLE(32),
    bodyCrc: file.readUInt32LE(40),
    skipped: file.readDoubleLE(48),
  };
  const { shardCount, dirBits, fingerprintBytes } = header;
  if ((dirBits !== 8 && dirBits !== 16) || shardCount < 1) fail('corrupt', 'bad shard directory parameters');
  const dirBytes = 4 << dirBits;
  const expected = HEADER_BYTES + fingerprintBytes + dirBytes + shardCount * SHARD_ENTRY_BYTES;
  if (file.length < expected) fail('truncated', `file is ${file.length} bytes, header promises ${expected}`);
  if (file.length > expected) fail('corrupt', `file is ${file.length} bytes, header promises ${expected}`);
  if (crc32(file.subarray(HEADER_BYTES)) !== header.bodyCrc) fail('corrupt', 'body checksum mismatch');
  const dirAt = HEADER_BYTES + fingerprintBytes;
  // Copy into aligned typed arrays: the file buffer's offsets need not be 4-byte aligned.
  const directory = new Uint32Array(1 << dirBits);
  for (let i = 0; i < directory.length; i++) {
    const s = file.readUInt32LE(dirAt + 4 * i);
    if (s >= shardCount) fail('corrupt', `directory entry ${i} points at shard ${s} of ${shardCount}`);
    directory[i] = s;
  }
  const shards = readShardTable(file, dirAt + dirBytes, shardCount, fingerprintBytes, fail);
  const total = shards.reduce((n, s) => n + s.entries, 0);
  if (total !== header.entries)
    fail('corrupt', `shards hold ${total} entries, header says ${header.entries}`);
  const fingerprints = file.subarray(HEADER_BYTES, HEADER_BYTES + fingerprintBytes);
  return { header, directory, shards, fingerprints };
}

function readShardTable(
  file: Buffer,
  at: number,
  count: number,
  fingerprintBytes: number,
  fail: (code: 'corrupt', why: string) => never,
): ShardEntry[] {
  const shards: ShardEntry[] = [];
  for (let i = 0; i < count; i++) {
    const o = at + i * SHARD_ENTRY_BYTES;
    const s: ShardEntry = {
      seedHi: file.readUInt32LE(o),
      seedLo: file.readUInt32LE(o + 4),
      entries: file.readUInt32LE(o + 8),
      segmentLength: file.readUInt32LE(o + 12),
      segmentCount: file.readUInt32LE(o + 16),
      arrayLength: file.readUInt32LE(o + 20),
      offset: file.readDoubleLE(o + 24),
    };
    const powerOfTwo = s.segmentLength > 0 && (s.segmentLength & (s.segmentLength - 1)) === 0;
    if (!powerOfTwo || s.segmentLength > 65536 || s.arrayLength !== (s.segmentCount + 2) * s.segmentLength) {
      fail('corrupt', `shard ${i} has an inconsistent layout`);
    }
    if (!Number.isInteger(s.offset) || s.offset < 0 || s.offset + s.arrayLength > fingerprintBytes) {
      fail('corrupt', `shard ${i} lies outside the fingerprint area`);
    }
    shards.push(s);
  }
  return shards;
}
