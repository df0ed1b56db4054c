import { sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import { recordAuditEvent } from './record.ts';
import { chainFilter, inChain } from './store.ts';
import type { AuditTables } from './tables.ts';

/**
 * Deletes the chain's acknowledged alerts that were acknowledged and last matched before the cutoff and
 * have no delivery pending (a delivery is deleted once it succeeds; a pending one is still being retried,
 * so its alert stays until it is delivered or given up). A given-up delivery goes with its alert (the
 * foreign key cascades, migration 0042). One transaction with its audit event (`audit.alert.pruned`).
 * The database refuses to delete an open or a recent alert whatever the cutoff (migration 0036), and the
 * query clamps the cutoff to the same floor so that a clock ahead of the database's is not an error.
 */
export async function pruneAlerts(
  db: Database,
  clock: Clock,
  ctx: ActionContext,
  tenantId: string | null,
  cutoff: Date,
): Promise<number> {
  // The delivery queue is visible only with no tenant set (the delivery job's scope, migration 0033).
  // Deliveries are queued only when an alert is raised, never for an old one, so this cannot go stale;
  // if it did, a trigger would refuse to cascade to the pending delivery and the job would report the chain.
  const pending = await db.withSystem(async (tx: SystemTx<AuditTables>) => {
    const { rows } = await sql<{ alert_id: string }>`SELECT DISTINCT alert_id FROM audit_alert_deliveries
      WHERE ${chainFilter(tenantId)} AND failed_at IS NULL`.execute(tx);
    return rows.map((r) => r.alert_id);
  });
  return inChain(db, tenantId, async (tx) => {
    const { rows } = await sql<{ id: string }>`DELETE FROM audit_alerts
      WHERE ${chainFilter(tenantId)} AND status = 'acknowledged'
        AND greatest(acknowledged_at, last_seen_at) < least(${cutoff}::timestamptz,
          audit_alert_prune_floor(${tenantId}::uuid))
        AND NOT (id = ANY(${pending}::uuid[]))
      RETURNING id`.execute(tx);
    if (rows.length > 0) {
      await recordAuditEvent<AuditTables>(tx, clock, ctx, {
        tenantId,
        action: 'audit.alert.pruned',
        outcome: 'success',
        target: { type: 'audit_chain', id: tenantId ?? 'platform' },
        details: { alerts: rows.length, cutoff: cutoff.toISOString() },
      });
    }
    return rows.length;
  });
}
