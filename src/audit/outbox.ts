import { sql } from 'kysely';
import type { Clock } from '../platform/context.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { settleSink } from './sink-health.ts';
import type { SinkKind } from './sink-input.ts';
import type { AuditTables } from './tables.ts';

/**
 * The durable outbox (`audit_outbox`, filled in each event's own transaction): leasing due sinks,
 * claiming their rows oldest first, acknowledging what was delivered. Each step commits on its own, so
 * no transaction is open during a network call.
 */

type Tx = SystemTx<AuditTables>;

/** A sink due for delivery, leased to this pass. */
export interface DueSink {
  id: string;
  kind: SinkKind;
  url: string;
  secret_sealed: string | null;
  tls_ca: string | null;
  failures: number;
  overflowed_at: Date | null;
  overflow_dropped: string;
}

export interface Claimed {
  sink_id: string;
  event_id: string;
  payload: string;
  attempts: number;
  kind: SinkKind;
  url: string;
  secret_sealed: string | null;
  tls_ca: string | null;
  enqueued_at: Date;
  /** What the row carries: an event, or a signed checkpoint (checkpoint-messages.ts). */
  message: 'audit.event' | 'audit.checkpoint';
}

/** A claimed row and how its delivery went: null when acknowledged, else the (bounded) error text. */
export interface Outcome {
  row: Claimed;
  error: string | null;
}

/** Leases the sinks that are due and have due rows (one node at a time per sink). */
export function claimSinks(db: Database, now: Date, leaseMs: number): Promise<DueSink[]> {
  return db.withSystem(async (tx: Tx) => {
    const { rows } = await sql<DueSink>`
      WITH due AS MATERIALIZED (
        SELECT d.id FROM audit_sinks d
        WHERE d.stopped_at IS NULL AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ${now})
          AND EXISTS (SELECT 1 FROM audit_outbox o WHERE o.sink_id = d.id AND o.next_attempt_at <= ${now})
        FOR NO KEY UPDATE SKIP LOCKED)
      UPDATE audit_sinks s SET next_attempt_at = ${new Date(now.getTime() + leaseMs)}
      FROM due WHERE s.id = due.id
      RETURNING s.id, s.kind, s.url, s.secret_sealed, s.tls_ca, s.failures, s.overflowed_at,
        s.overflow_dropped::text AS overflow_dropped`.execute(tx);
    return rows;
  });
}

const oldestFirst = (a: Claimed, b: Claimed) =>
  a.enqueued_at.getTime() - b.enqueued_at.getTime() || (a.event_id < b.event_id ? -1 : 1);

/** Claims up to `limit` of a sink's due rows, oldest first. */
export async function claimRows(
  db: Database,
  sink: DueSink,
  limit: number,
  now: Date,
  leaseMs: number,
): Promise<Claimed[]> {
  const rows = await db.withSystem(async (tx: Tx) => {
    const { rows } = await sql<
      Pick<Claimed, 'event_id' | 'payload' | 'attempts' | 'enqueued_at' | 'message'>
    >`
      WITH due AS MATERIALIZED (
        SELECT event_id FROM audit_outbox WHERE sink_id = ${sink.id} AND next_attempt_at <= ${now}
        ORDER BY enqueued_at, event_id LIMIT ${limit} FOR UPDATE SKIP LOCKED)
      UPDATE audit_outbox o SET next_attempt_at = ${new Date(now.getTime() + leaseMs)}, attempts = o.attempts + 1
      FROM due WHERE o.sink_id = ${sink.id} AND o.event_id = due.event_id
      RETURNING o.event_id, o.payload::text AS payload, o.attempts, o.enqueued_at, o.message`.execute(tx);
    return rows;
  });
  return rows
    .map((row) => ({
      ...row,
      sink_id: sink.id,
      kind: sink.kind,
      url: sink.url,
      secret_sealed: sink.secret_sealed,
      tls_ca: sink.tls_ca,
    }))
    .sort(oldestFirst);
}

/**
 * Records a sink's outcome: acknowledged rows deleted; on any failure the sink backs off as a whole
 * (its failed rows due again as soon as the sink is) and keeps the class of the error. Returns how many
 * failed.
 */
export async function acknowledge(
  deps: { db: Database; clock: Clock; onDelivered?: ((lagMs: number) => void) | undefined },
  sink: DueSink,
  outcomes: Outcome[],
  now: Date,
): Promise<number> {
  const failed = outcomes.filter((o) => o.error !== null);
  await deps.db.withSystem(async (tx: Tx) => {
    for (const { row, error } of outcomes) {
      if (error === null) {
        await sql`DELETE FROM audit_outbox WHERE sink_id = ${row.sink_id} AND event_id = ${row.event_id}`.execute(
          tx,
        );
        deps.onDelivered?.(now.getTime() - row.enqueued_at.getTime());
      } else {
        await sql`UPDATE audit_outbox SET next_attempt_at = ${now}, last_error = ${error}
          WHERE sink_id = ${row.sink_id} AND event_id = ${row.event_id}`.execute(tx);
      }
    }
    await settleSink(tx, deps.clock, sink.id, failed[0]?.error ?? null, now);
  });
  return failed.length;
}
