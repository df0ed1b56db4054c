/**
 * Shard planning. A shard covers a contiguous range of the keys' top 16 bits. Shards are made big enough
 * (>= targetKeys) that Binary Fuse reaches its best space factor (~9 bits/key from ~1M keys; small sets
 * need more slack), and small enough (<= maxKeys) that building one keeps memory bounded.
 */
import { BUCKETS } from './spill.ts';

export interface ShardRange {
  from16: number;
  to16: number;
  keys: number;
}

export interface ShardPlan {
  /** Directory resolution: 8 when shards align with whole top bytes, 16 when a byte had to be split. */
  dirBits: 8 | 16;
  shards: ShardRange[];
}

export const DEFAULT_TARGET_KEYS = 1 << 20;
export const DEFAULT_MAX_KEYS = 1 << 22;

export function planShards(
  counts16: Uint32Array,
  targetKeys = DEFAULT_TARGET_KEYS,
  maxKeys = DEFAULT_MAX_KEYS,
): ShardPlan {
  const shards: ShardRange[] = [];
  let dirBits: 8 | 16 = 8;
  let open: ShardRange = { from16: 0, to16: 0, keys: 0 };
  const close = (at16: number) => {
    open.to16 = at16;
    if (open.to16 > open.from16) shards.push(open);
    open = { from16: at16, to16: at16, keys: 0 };
  };
  for (let b = 0; b < BUCKETS; b++) {
    let bucketKeys = 0;
    for (let p = b << 8; p < (b + 1) << 8; p++) bucketKeys += counts16[p] as number;
    if (bucketKeys > maxKeys) {
      // Too big for one shard: split this top byte by its second byte.
      dirBits = 16;
      if (open.keys > 0) close(b << 8);
      for (let p = b << 8; p < (b + 1) << 8; p++) {
        const c = counts16[p] as number;
        if (open.keys > 0 && open.keys + c > maxKeys) close(p);
        open.keys += c;
      }
      close((b + 1) << 8);
      continue;
    }
    if (open.keys > 0 && open.keys + bucketKeys > maxKeys) close(b << 8);
    open.keys += bucketKeys;
    if (open.keys >= targetKeys) close((b + 1) << 8);
  }
  const tail = open;
  close(65536);
  // A small last shard would cost extra bits per key: fold it into the one before when that stays in bounds.
  const last = shards.at(-1);
  const before = shards.at(-2);
  if (last === tail && before && last.keys < targetKeys && before.keys + last.keys <= maxKeys) {
    shards.pop();
    before.to16 = last.to16;
    before.keys += last.keys;
  }
  return { dirBits, shards };
}

/** Map each directory slot (top dirBits of a key) to its shard index. */
export function shardDirectory(plan: ShardPlan): Uint32Array {
  const shift = 16 - plan.dirBits;
  const dir = new Uint32Array(1 << plan.dirBits);
  plan.shards.forEach((s, i) => {
    for (let d = s.from16 >> shift; d < s.to16 >> shift; d++) dir[d] = i;
  });
  return dir;
}
