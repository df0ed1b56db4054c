import { sql } from 'kysely';
import type { Clock } from '../platform/context.ts';
import type { SystemTx } from '../platform/db/index.ts';
import { recordAuditEvent } from './record.ts';
import { forwarding } from './sink-store.ts';
import type { AuditTables } from './tables.ts';

/**
 * A sink's delivery health: backoff after a failure, the class of error kept for operators, recovery
 * after an overflow. While a sink has failures it is probed with one event at a time (forward.ts).
 */

type Tx = SystemTx<AuditTables>;

/** Seconds before attempt n+1 after n failures: 5 s doubling, at most an hour; never given up. */
export const backoffSeconds = (failures: number) => Math.min(5 * 2 ** Math.max(0, failures - 1), 3600);

/**
 * What kind of failure a delivery met, for operators (stored on the sink and listed): a short class,
 * never the message, which may carry a receiver's text or an address.
 */
export function errorClass(error: string): string {
  const http = /^HTTP (\d)\d\d$/.exec(error);
  // A 3xx: the receiver redirects, which a delivery never follows (the operator moves the sink instead).
  const classes: Record<string, string> = { '3': 'http_redirect', '4': 'http_4xx', '5': 'http_5xx' };
  if (http) return classes[http[1] ?? ''] ?? 'http_other';
  const text = error.toLowerCase();
  if (text.includes('not configured')) return 'not_configured';
  if (text.includes('refused:') || text.includes('outbound request to')) return 'egress_refused';
  if (/timed? ?out|timeout|etimedout/.test(text)) return 'timeout';
  if (/econnrefused|connection refused/.test(text)) return 'connection_refused';
  if (/enotfound|eai_again|getaddrinfo|has no address/.test(text)) return 'dns';
  if (/cert|tls|ssl|self.signed|handshake/.test(text)) return 'tls';
  if (/econnreset|epipe|socket|closed|hang up|other side/.test(text)) return 'connection';
  return 'other';
}

/**
 * Records a sink's outcome on the sink, in the transaction that acknowledged its rows: on a failure
 * (`firstError`) it backs off as a whole and keeps the class of the error; otherwise it is healthy
 * again, and one that was overflowing is audited as recovered.
 */
export async function settleSink(tx: Tx, clock: Clock, sinkId: string, firstError: string | null, now: Date) {
  const { rows } = await sql<{ failures: number; overflowed_at: Date | null; overflow_dropped: string }>`
    SELECT failures, overflowed_at, overflow_dropped::text AS overflow_dropped FROM audit_sinks
    WHERE id = ${sinkId} FOR NO KEY UPDATE`.execute(tx);
  const state = rows[0];
  if (!state) return;
  if (firstError !== null) {
    const failures = state.failures + 1;
    await sql`UPDATE audit_sinks SET failures = ${failures}, last_failure_at = ${now},
      last_error_class = ${errorClass(firstError)},
      next_attempt_at = ${new Date(now.getTime() + backoffSeconds(failures) * 1000)}
      WHERE id = ${sinkId}`.execute(tx);
    return;
  }
  await sql`UPDATE audit_sinks SET failures = 0, next_attempt_at = NULL, last_error_class = NULL,
    overflowed_at = NULL, overflow_dropped = 0 WHERE id = ${sinkId}`.execute(tx);
  if (state.overflowed_at !== null) {
    // It receives again: say how many events it lost while overflowing (it receives this too).
    await recordAuditEvent<AuditTables>(tx, clock, forwarding, {
      tenantId: null,
      action: 'audit.sink.recovered',
      outcome: 'success',
      target: { type: 'audit_sink', id: sinkId },
      details: {
        dropped: Number(state.overflow_dropped),
        overflowingSince: state.overflowed_at.toISOString(),
      },
    });
  }
}

/** Ends this pass's lease on a sink that had nothing (more) due (its due time: none if healthy, else now). */
export async function releaseSink(tx: Tx, sinkId: string, now: Date) {
  await sql`UPDATE audit_sinks SET next_attempt_at = CASE WHEN failures = 0 THEN NULL ELSE ${now}::timestamptz END
    WHERE id = ${sinkId}`.execute(tx);
}
