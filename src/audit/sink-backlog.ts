import { sql } from 'kysely';
import type { Clock } from '../platform/context.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { recordAuditEvent } from './record.ts';
import { forwarding } from './sink-store.ts';
import type { AuditTables } from './tables.ts';

type Tx = SystemTx<AuditTables>;

interface BacklogDeps {
  db: Database;
  clock: Clock;
  maxBacklog: number;
}

/**
 * Removes rows queued by a transaction that raced a sink's stop, and returns the sinks still delivering.
 * Only a transaction open while a sink stopped can have queued such a row: look a day back, one sink at
 * a time (its rows by index), never over the whole queue.
 */
async function purgeStoppedSinks({ db, clock }: BacklogDeps): Promise<{ id: string }[]> {
  return db.withSystem(async (tx: Tx) => {
    const since = new Date(clock.now().getTime() - 86_400_000);
    const { rows: stopped } = await sql<{ id: string }>`SELECT id FROM audit_sinks
      WHERE stopped_at > ${since}`.execute(tx);
    for (const { id } of stopped) await sql`DELETE FROM audit_outbox WHERE sink_id = ${id}`.execute(tx);
    const { rows } = await sql<{ id: string }>`SELECT id FROM audit_sinks
      WHERE stopped_at IS NULL`.execute(tx);
    return rows;
  });
}

/** Drops one sink's oldest rows beyond `maxBacklog`, counted on the sink; returns how many. */
async function trimSinkBacklog({ db, clock, maxBacklog }: BacklogDeps, id: string): Promise<number> {
  return db.withSystem(async (tx: Tx) => {
    const { rows } = await sql<{ enqueued_at: Date; event_id: string }>`
      SELECT enqueued_at, event_id FROM audit_outbox WHERE sink_id = ${id}
      ORDER BY enqueued_at DESC, event_id DESC OFFSET ${maxBacklog} LIMIT 1`.execute(tx);
    const boundary = rows[0];
    if (!boundary) return 0;
    const deleted = await sql`DELETE FROM audit_outbox WHERE sink_id = ${id}
      AND (enqueued_at, event_id) <= (${boundary.enqueued_at}, ${boundary.event_id}::uuid)`.execute(tx);
    const dropped = Number(deleted.numAffectedRows ?? 0n);
    const { rows: before } = await sql<{ overflowed_at: Date | null }>`
      SELECT overflowed_at FROM audit_sinks WHERE id = ${id} FOR NO KEY UPDATE`.execute(tx);
    await sql`UPDATE audit_sinks SET overflowed_at = coalesce(overflowed_at, ${clock.now()}),
      overflow_dropped = overflow_dropped + ${dropped}, dropped_total = dropped_total + ${dropped}
      WHERE id = ${id}`.execute(tx);
    if (before[0]?.overflowed_at === null) {
      // Once per episode; later drops are counted on the sink and reported when it recovers.
      await recordAuditEvent<AuditTables>(tx, clock, forwarding, {
        tenantId: null,
        action: 'audit.sink.overflowed',
        outcome: 'failure',
        target: { type: 'audit_sink', id },
        details: { dropped, maxBacklog, droppedThrough: boundary.enqueued_at.toISOString() },
      });
    }
    return dropped;
  });
}

/**
 * Keeps each sink's backlog at most `maxBacklog`: beyond it the oldest rows are dropped and counted,
 * and a sink that starts overflowing is audited (`audit.sink.overflowed`; the `protect.incident`
 * rule raises a platform alert from it). Counting stops at the maximum, so the check stays bounded.
 * Also removes rows queued by a transaction that raced a sink's stop.
 */
export async function enforceBacklog(deps: BacklogDeps): Promise<{ sink: string; dropped: number }[]> {
  const overflowed: { sink: string; dropped: number }[] = [];
  const sinks = await purgeStoppedSinks(deps);
  for (const { id } of sinks) {
    const dropped = await trimSinkBacklog(deps, id);
    if (dropped > 0) overflowed.push({ sink: id, dropped });
  }
  return overflowed;
}
