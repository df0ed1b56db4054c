import { sql } from 'kysely';
import { type ActionContext, type Clock, systemContext } from '../platform/context.ts';
import type { SystemTx } from '../platform/db/index.ts';
import { shownUrl } from './details.ts';
import { recordAuditEvent } from './record.ts';
import type { SinkKind } from './sink-input.ts';
import type { AuditTables } from './tables.ts';

type Tx = SystemTx<AuditTables>;

/** The platform job whose events (a sink stopped, overflowed, recovered) the forwarder records. */
export const forwarding = systemContext('audit-forwarding');

/** A sink's lifecycle: receiving events, draining its backlog after being disabled, stopped. */
export type SinkState = 'active' | 'draining' | 'stopped';

/** Backlog a sink may hold unless configured (AUDIT_SINK_MAX_BACKLOG). */
export const DEFAULT_MAX_BACKLOG = 1_000_000;

export interface SinkStatus {
  id: string;
  kind: SinkKind;
  url: string;
  state: Exclude<SinkState, 'stopped'>;
  createdAt: string;
  /** Undelivered events, counted up to the maximum backlog + 1 (a bounded count). */
  pending: number;
  oldestPendingAt: string | null;
  /** Consecutive failed deliveries (0 when healthy); while above 0, one probe delivery at a time. */
  failures: number;
  nextAttemptAt: string | null;
  lastErrorClass: string | null;
  lastFailureAt: string | null;
  /** Since when the backlog is at its maximum and its oldest events are being dropped, else null. */
  overflowingSince: string | null;
  /** Events dropped from this sink's backlog since it was added (overflow). */
  dropped: number;
}

/**
 * Every sink still delivering (active or draining), with its backlog: each count stops at `cap` rows
 * (the maximum backlog + 1) so that reading it stays bounded however far a sink is behind.
 */
export async function sinkStatuses(tx: Tx, cap: number): Promise<SinkStatus[]> {
  const { rows } = await sql<{
    id: string;
    kind: SinkKind;
    url: string;
    disabled_at: Date | null;
    created_at: Date;
    pending: number;
    oldest: Date | null;
    failures: number;
    next_attempt_at: Date | null;
    last_error_class: string | null;
    last_failure_at: Date | null;
    overflowed_at: Date | null;
    dropped_total: string;
  }>`
    SELECT s.id, s.kind, s.url, s.disabled_at, s.created_at, s.failures, s.next_attempt_at,
      s.last_error_class, s.last_failure_at, s.overflowed_at, s.dropped_total::text AS dropped_total,
      (SELECT count(*)::int FROM (SELECT 1 FROM audit_outbox o WHERE o.sink_id = s.id LIMIT ${cap}) b) AS pending,
      (SELECT o.enqueued_at FROM audit_outbox o WHERE o.sink_id = s.id
        ORDER BY o.enqueued_at, o.event_id LIMIT 1) AS oldest
    FROM audit_sinks s WHERE s.stopped_at IS NULL ORDER BY s.created_at, s.id`.execute(tx);
  return rows.map((r) => ({
    id: r.id,
    kind: r.kind,
    // Without its query: an intake may take its key there, and `platform-audit:read` reads this list.
    url: shownUrl(r.url),
    state: r.disabled_at === null ? 'active' : 'draining',
    createdAt: r.created_at.toISOString(),
    pending: r.pending,
    oldestPendingAt: r.oldest?.toISOString() ?? null,
    failures: r.failures,
    nextAttemptAt: r.next_attempt_at?.toISOString() ?? null,
    lastErrorClass: r.last_error_class,
    lastFailureAt: r.last_failure_at?.toISOString() ?? null,
    overflowingSince: r.overflowed_at?.toISOString() ?? null,
    dropped: Number(r.dropped_total),
  }));
}

/** Stops a disabled sink: deletes what it still holds and records `audit.sink.stopped` (to the others). */
export async function stopSink(tx: Tx, clock: Clock, ctx: ActionContext, id: string, drained: boolean) {
  const deleted = await sql`DELETE FROM audit_outbox WHERE sink_id = ${id}`.execute(tx);
  const dropped = Number(deleted.numAffectedRows ?? 0n);
  await sql`UPDATE audit_sinks SET stopped_at = ${clock.now()}, next_attempt_at = NULL,
    dropped_total = dropped_total + ${dropped} WHERE id = ${id}`.execute(tx);
  await recordAuditEvent<AuditTables>(tx, clock, ctx, {
    tenantId: null,
    action: 'audit.sink.stopped',
    outcome: 'success',
    target: { type: 'audit_sink', id },
    details: { drained, dropped },
  });
  return dropped;
}

/** Disabled sinks whose backlog is delivered stop, audited (the other sinks receive that). */
export async function stopDrainedSinks(tx: Tx, clock: Clock) {
  const { rows } = await sql<{ id: string }>`SELECT id FROM audit_sinks s
    WHERE disabled_at IS NOT NULL AND stopped_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM audit_outbox o WHERE o.sink_id = s.id)
    FOR NO KEY UPDATE SKIP LOCKED`.execute(tx);
  for (const { id } of rows) await stopSink(tx, clock, forwarding, id, true);
}
