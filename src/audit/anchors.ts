import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sql } from 'kysely';
import type { Database } from '../platform/db/index.ts';
import { isCanonicalUuid } from './schemas.ts';
import { chainFilter, inChain, newestTrustedCheckpoint, readCheckpoints, readHead } from './store.ts';
import { partitionCheckpoints } from './walk.ts';

/**
 * Checks against what is kept outside the database (docs/audit.md, "Anchoring outside the database"):
 * points of the chain a SIEM received (`audit.checkpoint` messages, or events with their seq and hash),
 * and how long the newest events have waited for a signed checkpoint. Run after the chain verified:
 * verification proves every stored event up to the head links to it, these prove the head is not behind
 * what the world already saw.
 */

/** `<chain>:<seq>:<hash hex>`: chain is a tenant's uuid or `platform`. */
export interface ExpectedPoint {
  chain: string;
  tenantId: string | null;
  seq: number;
  hash: string;
  /** As given, to name it in the report. */
  text: string;
}

/** Parses one expected point; throws an error saying what to fix. */
export function parseExpectedPoint(raw: string): ExpectedPoint {
  const text = raw.trim();
  const [chain = '', seq = '', hash = '', ...rest] = text.toLowerCase().split(':');
  const problem =
    rest.length > 0 || hash === ''
      ? 'it is not <chain>:<seq>:<hash>'
      : chain !== 'platform' && !isCanonicalUuid(chain)
        ? 'the chain is neither "platform" nor a tenant id (uuid)'
        : !/^[1-9]\d{0,17}$/.test(seq)
          ? 'the seq is not a positive whole number'
          : !/^[0-9a-f]{64}$/.test(hash)
            ? 'the hash is not 64 hex digits (SHA-256)'
            : null;
  if (problem) throw new Error(`expected point "${text}": ${problem}`);
  return { chain, tenantId: chain === 'platform' ? null : chain, seq: Number(seq), hash, text };
}

/** One point a line from a file (blank lines and lines starting with # are skipped). */
export function readExpectFile(file: string): ExpectedPoint[] {
  return readFileSync(file, 'utf8')
    .split('\n')
    .map((line, i) => ({ line: line.trim(), n: i + 1 }))
    .filter(({ line }) => line !== '' && !line.startsWith('#'))
    .map(({ line, n }) => {
      try {
        return parseExpectedPoint(line);
      } catch (error) {
        throw new Error(`${file} line ${n}: ${(error as Error).message}`);
      }
    });
}

export interface PointCheck {
  point: ExpectedPoint;
  /**
   * `ok`: on the chain. `truncated`: beyond the head (the newest events were cut off). `rewritten`: the
   * chain has another hash there. `missing`: no event there though the chain reaches it. `pruned`: gone
   * by retention with no checkpoint there to compare: not checkable, not a failure.
   */
  status: 'ok' | 'truncated' | 'rewritten' | 'missing' | 'pruned';
  message: string;
}

const hex = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('hex') : null);

/**
 * Whether the point is on the chain: the event at its seq (or the signed checkpoint) has its hash. Only a
 * checkpoint a trusted key signed counts: a forged row there is neither evidence for nor against it.
 */
export async function checkExpectedPoint(
  db: Database,
  point: ExpectedPoint,
  keys: Map<string, KeyObject>,
): Promise<PointCheck> {
  const { tenantId, seq, hash } = point;
  const found = await inChain(db, tenantId, async (tx) => {
    const head = await readHead(tx, tenantId);
    const event = await sql<{ hash: Uint8Array | null }>`SELECT hash FROM audit_events
      WHERE ${chainFilter(tenantId)} AND chain_seq = ${seq}`.execute(tx);
    const { trusted } = partitionCheckpoints(await readCheckpoints(tx, tenantId, seq), keys);
    const other = trusted.find((c) => hex(c.headHash) !== hash) ?? trusted[0];
    return { head, event: event.rows, checkpoint: hex(other?.headHash) };
  });
  const short = `${hash.slice(0, 16)}…`;
  const result = (status: PointCheck['status'], message: string): PointCheck => ({ point, status, message });
  if (seq > found.head.seq) {
    return result(
      'truncated',
      found.head.seq === 0
        ? `the chain has no events, but seq ${seq} (${short}) was seen outside the database: it was removed`
        : `the chain ends at seq ${found.head.seq}, but seq ${seq} (${short}) was seen outside the database: ` +
            `the newest events were cut off`,
    );
  }
  const stored = found.event.map((e) => hex(e.hash));
  if (found.checkpoint !== null && found.checkpoint !== hash) {
    return result('rewritten', `the checkpoint at seq ${seq} has another head hash: the chain was rewritten`);
  }
  if (stored.length > 0) {
    if (stored.some((h) => h !== hash)) {
      return result('rewritten', `the event at seq ${seq} has another hash: the chain was rewritten`);
    }
    return result('ok', `seq ${seq} is on the chain`);
  }
  if (found.checkpoint !== null) return result('ok', `seq ${seq} is on the chain (its signed checkpoint)`);
  if (seq <= found.head.prunedThrough) {
    return result(
      'pruned',
      `seq ${seq} was pruned (retention) and has no checkpoint to compare: not checked`,
    );
  }
  return result('missing', `there is no event at seq ${seq}: it was deleted`);
}

export interface CheckpointLag {
  /** The newest signed checkpoint, if any. */
  newest: { seq: number; signedAt: Date } | null;
  headSeq: number;
  /** Events after the newest checkpoint (or after the pruning point when there is none). */
  unsigned: number;
  /** When the oldest of those was written. */
  oldestUnsignedAt: Date | null;
}

/** The newest checkpoint of the chain a trusted key signed, and what it does not cover yet. */
export async function checkpointLag(
  db: Database,
  tenantId: string | null,
  keys: Map<string, KeyObject>,
): Promise<CheckpointLag> {
  return inChain(db, tenantId, async (tx) => {
    const head = await readHead(tx, tenantId);
    const cp = await newestTrustedCheckpoint(tx, tenantId, keys);
    const newest = cp ? { seq: cp.seq, signedAt: cp.signedAt } : null;
    const from = Math.max(newest?.seq ?? 0, head.prunedThrough);
    if (head.seq <= from) return { newest, headSeq: head.seq, unsigned: 0, oldestUnsignedAt: null };
    const first = await sql<{ occurred_at: Date }>`SELECT occurred_at FROM audit_events
      WHERE ${chainFilter(tenantId)} AND chain_seq > ${from} ORDER BY chain_seq LIMIT 1`.execute(tx);
    const at = first.rows[0]?.occurred_at;
    return {
      newest,
      headSeq: head.seq,
      unsigned: head.seq - from,
      oldestUnsignedAt: at ? new Date(at) : null,
    };
  });
}

const seconds = (ms: number) => Math.max(0, Math.floor(ms / 1000));

/**
 * One line on the newest checkpoint's age, and whether it is stale: checkpoints are signed only when
 * the chain moved, so an old checkpoint of a quiet chain is fine. It is a failure only when the chain
 * has events after it, the oldest of them written more than maxAgeSeconds ago, and the checkpoint
 * itself is older than that: the signer stopped, or the head was rolled back under it.
 */
export function describeCheckpointLag(
  lag: CheckpointLag,
  now: Date,
  maxAgeSeconds: number | undefined,
): { line: string; stale: boolean } {
  const age = lag.newest ? seconds(now.getTime() - lag.newest.signedAt.getTime()) : null;
  const waiting = lag.oldestUnsignedAt ? seconds(now.getTime() - lag.oldestUnsignedAt.getTime()) : null;
  const newest = lag.newest
    ? `newest signed checkpoint at seq ${lag.newest.seq}, ${age} s old`
    : 'no signed checkpoint';
  const after =
    lag.unsigned === 0
      ? 'every event signed'
      : `${lag.unsigned} event(s) after it, the oldest written ${waiting ?? '?'} s ago`;
  const stale =
    maxAgeSeconds !== undefined &&
    lag.unsigned > 0 &&
    (waiting === null || waiting > maxAgeSeconds) &&
    (age === null || age > maxAgeSeconds);
  return { line: `${newest}; ${after}`, stale };
}

export interface AnchorOptions {
  points: ExpectedPoint[];
  maxCheckpointAgeSeconds?: number;
  now: Date;
  /** Trusted checkpoint keys: rows no trusted key signed are not checkpoints. */
  keys: Map<string, KeyObject>;
  /** Whether every chain was verified (then a point of a chain not among them is checked all the same). */
  allChains: boolean;
}

/**
 * After verification: one line per chain on its newest checkpoint, and one per expected point. Resolves
 * to the number of failures (stale checkpoints, points not on the chain).
 */
export async function reportAnchors(
  db: Database,
  chains: { id: string | null; label: string }[],
  options: AnchorOptions,
  print: (line: string) => void,
): Promise<number> {
  let failures = 0;
  for (const chain of chains) {
    const { line, stale } = describeCheckpointLag(
      await checkpointLag(db, chain.id, options.keys),
      options.now,
      options.maxCheckpointAgeSeconds,
    );
    if (stale) {
      failures += 1;
      print(
        `${chain.label}: BROKEN, stale checkpoint: ${line}, over --max-checkpoint-age ` +
          `${options.maxCheckpointAgeSeconds} s (the signer stopped, or the head was rolled back)`,
      );
    } else print(`${chain.label}: ${line}`);
  }
  const labels = new Map(chains.map((c) => [c.id ?? 'platform', c.label]));
  for (const point of options.points) {
    const label = labels.get(point.chain) ?? (point.tenantId ? `tenant ${point.tenantId}` : 'platform');
    if (!options.allChains && !labels.has(point.chain)) {
      print(`${label}: expected ${point.text} not checked (that chain was not verified in this run)`);
      continue;
    }
    const check = await checkExpectedPoint(db, point, options.keys);
    if (check.status === 'ok' || check.status === 'pruned') {
      print(`${label}: expected ${point.text}: ${check.message}`);
      continue;
    }
    failures += 1;
    print(`${label}: BROKEN, ${check.status} at seq ${point.seq}: ${check.message} (expected ${point.text})`);
  }
  return failures;
}
