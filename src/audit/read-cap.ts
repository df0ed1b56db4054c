import { sql } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { AnyTenantTx } from '../platform/db/index.ts';
import { auditError } from './errors.ts';

/**
 * The search read cap (docs/audit.md, "Search read cap"). Where a tenant's exports need a second
 * approver, paging through the search API would fetch the same events without one; so, there, each person
 * may page through at most `eventsPerDay` events of the tenant's trail per UTC day, and beyond that asks
 * for an export. Counted in the search's own transaction, atomically across nodes (one row per reader
 * and day), and only for pages actually answered: a refused page counts nothing.
 */
export interface ReadCap {
  /** 0: no cap. */
  eventsPerDay: number;
  /** Whether this tenant's exports need a second approver (Access decides, in the search's transaction). */
  applies: (tx: AnyTenantTx) => Promise<boolean>;
}

/** Counts a page of `count` events against the reader's day; refuses it if it would pass `eventsPerDay`. */
export async function spendSearchReads(
  tx: AnyTenantTx,
  eventsPerDay: number,
  clock: Clock,
  tenantId: string,
  ctx: ActionContext,
  count: number,
): Promise<void> {
  if (count === 0) return;
  const { actor } = ctx;
  const actorId = actor.id ?? '';
  const day = clock.now().toISOString().slice(0, 10);
  const { rows } = await sql<{ events: number }>`
    INSERT INTO audit_search_reads AS r (tenant_id, actor_type, actor_id, day, events)
    VALUES (${tenantId}, ${actor.type}, ${actorId}, ${day}::date, ${count})
    ON CONFLICT (tenant_id, actor_type, actor_id, day) DO UPDATE SET events = r.events + EXCLUDED.events
    RETURNING events`.execute(tx);
  const events = rows[0]?.events ?? count;
  if (events > eventsPerDay) {
    // Thrown in the search's transaction: the count above is rolled back with it.
    const read = events - count;
    const left = Math.max(0, eventsPerDay - read);
    throw auditError(
      'read_cap_reached',
      `You have paged through ${read} of the ${eventsPerDay} audit events one person may read by search per day while this tenant's exports need a second approver; this page of ${count} would pass that. ${
        left > 0 ? `Ask for at most ${left} (limit=${left}), or request` : 'Until midnight UTC, request'
      } an export (POST …/audit/export-requests) and have another person approve it.`,
    );
  }
  // The reader's first page of a day: their earlier days are of no further use.
  if (events === count) {
    await sql`DELETE FROM audit_search_reads WHERE tenant_id = ${tenantId} AND actor_type = ${actor.type}
      AND actor_id = ${actorId} AND day < ${day}::date`.execute(tx);
  }
}
