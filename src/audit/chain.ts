import { type Kysely, sql } from 'kysely';
import type { SystemTx, TenantTx } from '../platform/db/index.ts';
import { type ChainedEvent, chainHash } from './canonical.ts';
import { type EventView, toView } from './search.ts';
import type { AuditTables } from './tables.ts';

/** `platform` for platform events, else the tenant's id. */
export const chainName = (tenantId: string | null): string => tenantId ?? 'platform';

const wellFormed = (value: string | null): string | null =>
  value === null ? null : (value as unknown as { toWellFormed(): string }).toWellFormed();

interface LockedHead {
  seq: string;
  head_hash: Uint8Array;
  ip: string | null;
  /** Active SIEM sinks, read in the same statement so an append without sinks costs nothing more. */
  sinks: number;
}

/**
 * Moves the head forward by `count` and returns where it was. The UPDATE takes the head's row lock,
 * held to the end of the caller's transaction: a second writer of the same chain waits here and then
 * reads the head as the first writer committed it (or left it, on rollback), so the chain never forks.
 * The request's ip comes back as PostgreSQL prints it (`::inet::text`), the form the verifier reads.
 */
async function advanceHead(db: Kysely<AuditTables>, chain: string, count: number, ip: string | null) {
  const { rows } = await sql<LockedHead>`
    UPDATE audit_chain_heads SET seq = seq + ${count} WHERE chain = ${chain}
    RETURNING (seq - ${count})::text AS seq, head_hash, ${ip}::inet::text AS ip,
      (SELECT count(*) FROM audit_sinks WHERE disabled_at IS NULL)::int AS sinks`.execute(db);
  return rows[0];
}

async function lockHead(db: Kysely<AuditTables>, tenantId: string | null, count: number, ip: string | null) {
  const chain = chainName(tenantId);
  const head = await advanceHead(db, chain, count, ip);
  if (head) return head;
  // First event of this chain: create its head (a concurrent first writer may win; then wait on it).
  await sql`INSERT INTO audit_chain_heads (chain, tenant_id) VALUES (${chain}, ${tenantId})
    ON CONFLICT DO NOTHING`.execute(db);
  const created = await advanceHead(db, chain, count, ip);
  if (!created) throw new Error(`audit chain ${chain} has no head row`);
  return created;
}

/** Appends events of one chain: lock and advance the head, hash each event onto the previous, insert. */
export async function appendToChain<DB>(
  tx: TenantTx<DB> | SystemTx<DB>,
  tenantId: string | null,
  events: ChainedEvent[],
): Promise<void> {
  const db = tx as unknown as Kysely<AuditTables>;
  const head = await lockHead(db, tenantId, events.length, events[0]?.ip ?? null);
  let seq = Number(head.seq);
  let prev: Buffer = Buffer.from(head.head_hash);
  const payloads: {
    event_id: string;
    tenant_id: string | null;
    payload: EventView & { tenantId: string | null };
  }[] = [];
  const values = events.map((input) => {
    const event: ChainedEvent = {
      ...input,
      ip: head.ip,
      userAgent: wellFormed(input.userAgent),
      requestId: wellFormed(input.requestId),
      actorId: wellFormed(input.actorId),
      actorElevationId: wellFormed(input.actorElevationId),
      targetType: wellFormed(input.targetType),
      targetId: wellFormed(input.targetId),
    };
    const hash = chainHash(prev, event);
    seq += 1;
    const row = {
      id: event.id,
      tenant_id: event.tenantId,
      occurred_at: event.occurredAt,
      actor_type: event.actorType,
      actor_id: event.actorId,
      actor_elevation_id: event.actorElevationId,
      action: event.action,
      target_type: event.targetType,
      target_id: event.targetId,
      outcome: event.outcome,
      ip: event.ip,
      user_agent: event.userAgent,
      request_id: event.requestId,
      details: JSON.stringify(event.details),
      chain_seq: String(seq),
      prev_hash: prev,
      hash,
    };
    if (head.sinks > 0) {
      const view = toView({ ...event, seq, prevHash: row.prev_hash, hash });
      payloads.push({
        event_id: event.id,
        tenant_id: event.tenantId,
        payload: { ...view, tenantId: event.tenantId },
      });
    }
    prev = hash;
    return row;
  });
  await db
    .with('appended', (qb) => qb.insertInto('audit_events').values(values))
    .updateTable('audit_chain_heads')
    .set({ head_hash: prev })
    .where('chain', '=', chainName(tenantId))
    .execute();
  if (payloads.length > 0) await enqueueForSinks(db, payloads, events[0]?.occurredAt ?? new Date());
}

/** Queues the events for every active sink, in the events' own transaction (forward.ts delivers). */
async function enqueueForSinks(db: Kysely<AuditTables>, payloads: unknown[], at: Date) {
  await sql`INSERT INTO audit_outbox (sink_id, event_id, tenant_id, payload, enqueued_at, next_attempt_at)
    SELECT s.id, p.event_id, p.tenant_id, p.payload, ${at}, ${at}
    FROM audit_sinks s CROSS JOIN jsonb_to_recordset(${JSON.stringify(payloads)}::jsonb)
      AS p(event_id uuid, tenant_id uuid, payload jsonb)
    WHERE s.disabled_at IS NULL`.execute(db);
}
