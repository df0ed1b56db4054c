import type { KeyObject } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { pruneAlerts } from './alert-prune.ts';
import { checkedEvents } from './check.ts';
import { recordAuditEvent } from './record.ts';
import { inChain, readCheckpoints } from './store.ts';
import type { AuditTables } from './tables.ts';
import {
  type ChainBreak,
  type CheckedEvent,
  genesis,
  partitionCheckpoints,
  type StoredCheckpoint,
  walkChain,
} from './walk.ts';

export interface PruneOptions {
  tenantId: string | null;
  /** Events older than this may go (the database clamps it to its own floor, migration 0034). */
  cutoff: Date;
  /** Trusted checkpoint keys: the prefix is verified before it is deleted. */
  keys: Map<string, KeyObject>;
  dryRun?: boolean;
  /** About how many events one transaction deletes (it always reaches at least the next checkpoint). */
  batchEvents?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface PruneResult {
  /** Positions after fromSeq up to throughSeq are (or, in a dry run, would be) gone. */
  fromSeq: number;
  throughSeq: number;
  events: number;
  /** The cutoff the database applied (never later than its floor). */
  cutoff: Date;
}

/** Refused: the prefix to delete does not verify, so deleting it would destroy the evidence. */
export class PruneRefusedError extends Error {
  constructor(readonly chainBreak: ChainBreak) {
    super(`refusing to prune a chain that does not verify: ${chainBreak.kind}: ${chainBreak.message}`);
    this.name = 'PruneRefusedError';
  }
}

interface Step {
  from_seq: string;
  through_seq: string;
  events: string;
  effective_cutoff: Date;
}

/**
 * One call of audit_prune_chain in the chain's scope (the function checks that scope). `trusted`: the
 * checkpoints whose signatures verified; the function prunes only up to one of their positions.
 */
async function callPrune(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  cutoff: Date,
  maxEvents: number | null,
  dryRun: boolean,
  trusted: StoredCheckpoint[],
): Promise<PruneResult> {
  const positions = `{${[...new Set(trusted.map((c) => c.seq))].join(',')}}`;
  const { rows } = await sql<Step>`SELECT from_seq::text, through_seq::text, events::text, effective_cutoff
    FROM audit_prune_chain(${tenantId}::uuid, ${cutoff}::timestamptz, ${maxEvents}::bigint, ${dryRun},
      ${positions}::bigint[])`.execute(tx);
  const row = rows[0];
  if (!row) throw new Error('audit_prune_chain returned nothing');
  return {
    fromSeq: Number(row.from_seq),
    throughSeq: Number(row.through_seq),
    events: Number(row.events),
    cutoff: new Date(row.effective_cutoff),
  };
}

async function* upTo(pages: AsyncIterable<CheckedEvent[]>, seq: number): AsyncGenerator<CheckedEvent[]> {
  for await (const page of pages) {
    const within = page.filter((event) => event.seq <= seq);
    yield within;
    if (within.length < page.length) return;
  }
}

/** Verifies the segment (from, through] against the trusted checkpoints at both ends. */
async function verifySegment(
  db: Database,
  tenantId: string | null,
  from: number,
  through: number,
  checkpoints: StoredCheckpoint[],
  keys: Map<string, KeyObject>,
): Promise<ChainBreak | null> {
  const start = checkpoints.find((c) => c.seq === from);
  const end = checkpoints.find((c) => c.seq === through);
  if ((from > 0 && !start) || !end) {
    return {
      kind: 'checkpoint',
      seq: from,
      eventId: null,
      message: 'a checkpoint the pruning needs is missing',
    };
  }
  const walked = await walkChain(upTo(checkedEvents(db, tenantId, from, through), through), {
    start: start ? { seq: start.seq, hash: start.headHash } : genesis,
    head: { seq: through, hash: end.headHash },
    checkpoints: checkpoints.filter((c) => c.seq >= from && c.seq <= through),
    keys,
  });
  return walked.broken;
}

/**
 * Prunes one chain up to the newest signed checkpoint whose events are all older than the cutoff, in
 * batches of about `batchEvents`. Each batch is verified first (a tampered prefix is never deleted), then
 * deleted in one transaction together with the audit event that says what went (`audit.trail.pruned`,
 * appended to the same chain). Undelivered SIEM copies in the outbox are kept: they are delivered still.
 */
export async function pruneChain(
  db: Database,
  clock: Clock,
  ctx: ActionContext,
  options: PruneOptions,
): Promise<PruneResult> {
  const { tenantId, cutoff, keys } = options;
  // Only checkpoints a trusted key signed anchor the pruning; forged rows are passed over (verify names them).
  const { trusted } = partitionCheckpoints(
    await inChain(db, tenantId, (tx) => readCheckpoints(tx, tenantId)),
    keys,
  );
  const plan = await inChain(db, tenantId, (tx) => callPrune(tx, tenantId, cutoff, null, true, trusted));
  if (options.dryRun || plan.events === 0) return plan;
  const batch = options.batchEvents ?? 10_000;
  let done = 0;
  options.onProgress?.(0, plan.events);
  for (;;) {
    const step = await inChain(db, tenantId, (tx) => callPrune(tx, tenantId, cutoff, batch, true, trusted));
    if (step.events === 0) break;
    const broken = await verifySegment(db, tenantId, step.fromSeq, step.throughSeq, trusted, keys);
    if (broken) throw new PruneRefusedError(broken);
    await inChain(db, tenantId, async (tx) => {
      const pruned = await callPrune(tx, tenantId, cutoff, batch, false, trusted);
      // Another node pruned meanwhile: what was verified is not what would go; roll back, look again.
      if (pruned.fromSeq !== step.fromSeq || pruned.throughSeq !== step.throughSeq) {
        throw new Error('the chain was pruned concurrently; run again');
      }
      await recordAuditEvent<AuditTables>(tx, clock, ctx, {
        tenantId,
        action: 'audit.trail.pruned',
        outcome: 'success',
        target: { type: 'audit_chain', id: tenantId ?? 'platform' },
        details: {
          fromSeq: pruned.fromSeq + 1,
          throughSeq: pruned.throughSeq,
          events: pruned.events,
          cutoff: pruned.cutoff.toISOString(),
        },
      });
    });
    done += step.events;
    options.onProgress?.(done, plan.events);
  }
  return { ...plan, throughSeq: plan.fromSeq + done, events: done };
}

export interface PruneAllDeps {
  db: Database;
  clock: Clock;
  keys: Map<string, KeyObject>;
  /** Read before each run instead of `keys`: the server's key and the older ones it endorsed (key rotation). */
  loadKeys?: () => Promise<Map<string, KeyObject>>;
  /** Days the chain keeps its events (retention.ts). */
  daysFor(tenantId: string | null): Promise<number>;
  tenantIds(): AsyncIterable<string>;
}

/**
 * The retention job: prunes the platform chain and every tenant's, each by its own retention, then the
 * chain's acknowledged alerts older than it (alert-prune.ts). A chain that cannot be pruned (it does not
 * verify) is reported and skipped, its alerts kept; the others go on.
 */
export async function pruneAllChains(
  deps: PruneAllDeps,
  ctx: ActionContext,
): Promise<{ events: number; alerts: number; failures: { chain: string; error: Error }[] }> {
  let events = 0;
  let alerts = 0;
  const failures: { chain: string; error: Error }[] = [];
  const keys = deps.loadKeys ? await deps.loadKeys() : deps.keys;
  const one = async (tenantId: string | null) => {
    try {
      const days = await deps.daysFor(tenantId);
      const cutoff = new Date(deps.clock.now().getTime() - days * 86_400_000);
      events += (await pruneChain(deps.db, deps.clock, ctx, { tenantId, cutoff, keys })).events;
      alerts += await pruneAlerts(deps.db, deps.clock, ctx, tenantId, cutoff);
    } catch (error) {
      failures.push({ chain: tenantId ?? 'platform', error: error as Error });
    }
  };
  await one(null);
  for await (const id of deps.tenantIds()) await one(id);
  return { events, alerts, failures };
}
