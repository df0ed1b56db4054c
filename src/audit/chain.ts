import { type Kysely, sql } from 'kysely';
import type { SystemTx, TenantTx } from '../platform/db/index.ts';
import { type ChainedEvent, chainHash } from './canonical.ts';
import { macOf } from './mac.ts';
import { toView } from './search.ts';
import type { AuditEventsTable, AuditTables } from './tables.ts';

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

/** Where a chain ended after this process's last append to it (committed or not: only a guess). */
interface KnownHead {
  seq: number;
  hash: Buffer;
}

const LIMIT = 10_000;
/**
 * Heads this process appended to last, and PostgreSQL's text of ip addresses seen: guesses that let an
 * append skip reading the head first. A stale guess (another node appended, a transaction rolled back) costs one
 * statement that changes nothing; it is never trusted, the database checks it (appendIfHeadIs).
 */
const knownHeads = new Map<string, KnownHead>();
const knownIps = new Map<string, string>();

function remember<V>(map: Map<string, V>, key: string, value: V) {
  if (map.size >= LIMIT && !map.has(key)) map.clear();
  map.set(key, value);
}

const dottedQuad = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** PostgreSQL's text(inet) of the request's address as last seen, or as it prints an IPv4 host. */
function guessIpText(ip: string | null): string | null | undefined {
  if (ip === null) return null;
  return knownIps.get(ip) ?? (dottedQuad.test(ip) ? `${ip}/32` : undefined);
}

interface Linked {
  rows: EventInsert[];
  chained: { event: ChainedEvent; seq: number; prevHash: Buffer; hash: Buffer }[];
  head: KnownHead;
}

type EventInsert = Omit<AuditEventsTable, 'chain_seq'> & { chain_seq: string };

/** Hashes each event onto the one before it, starting after `from`; the rows to insert. */
function link(events: ChainedEvent[], from: KnownHead, ip: string | null): Linked {
  let seq = from.seq;
  let prev = from.hash;
  const rows: EventInsert[] = [];
  const chained: Linked['chained'] = [];
  for (const input of events) {
    const event: ChainedEvent = {
      ...input,
      ip,
      userAgent: wellFormed(input.userAgent),
      requestId: wellFormed(input.requestId),
      actorId: wellFormed(input.actorId),
      actorElevationId: wellFormed(input.actorElevationId),
      targetType: wellFormed(input.targetType),
      targetId: wellFormed(input.targetId),
    };
    const hash = chainHash(prev, event);
    seq += 1;
    rows.push({
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
      // Keyed by a secret the database does not hold: an event written there directly has no valid one.
      mac: macOf(hash),
    });
    chained.push({ event, seq, prevHash: prev, hash });
    prev = hash;
  }
  return { rows, chained, head: { seq, hash: prev } };
}

/**
 * The append from a known head: moves the head from `expected` to the new head, but only if it still is
 * `expected` and PostgreSQL prints the ip as guessed; then inserts the events. The UPDATE waits for a
 * concurrent writer's lock like the locking path and then re-checks the condition on the head that
 * writer committed, so a stale guess changes nothing (null) and the chain cannot fork. Two statements,
 * like the locking path, but the INSERT is a plain one: as one statement (a CTE inserting from VALUES
 * only if the head moved) it measured slower than the locking path's two.
 */
async function appendIfHeadIs(
  db: Kysely<AuditTables>,
  chain: string,
  expected: KnownHead,
  linked: Linked,
  ip: { given: string | null; text: string | null },
): Promise<number | null> {
  const { rows } = await sql<{ sinks: number }>`
    UPDATE audit_chain_heads SET seq = seq + ${linked.rows.length}, head_hash = ${linked.head.hash}
    WHERE chain = ${chain} AND seq = ${String(expected.seq)} AND head_hash = ${expected.hash}
      AND ${ip.given}::inet::text IS NOT DISTINCT FROM ${ip.text}::text
    RETURNING (SELECT count(*) FROM audit_sinks WHERE disabled_at IS NULL)::int AS sinks`.execute(db);
  const head = rows[0];
  if (!head) return null;
  await db.insertInto('audit_events').values(linked.rows).execute();
  return head.sinks;
}

/**
 * The most events one append writes (the largest, a user-import batch, writes 500). The database refuses
 * a head moved more than 10,000 positions at once (migration 0086), so that whoever holds the app role's
 * credentials cannot move a head to where the next append overflows.
 */
export const MAX_EVENTS_PER_APPEND = 2_000;

/**
 * Appends events of one chain. Usually from the head this process left (appendIfHeadIs);
 * else, or when that guess is stale, the locking path: lock and advance the head (learning where it is),
 * hash each event onto the previous, insert. Either way the head's row lock is held until the caller's
 * transaction ends.
 */
export async function appendToChain<DB>(
  tx: TenantTx<DB> | SystemTx<DB>,
  tenantId: string | null,
  events: ChainedEvent[],
): Promise<void> {
  if (events.length > MAX_EVENTS_PER_APPEND)
    throw new Error(`one append writes at most ${MAX_EVENTS_PER_APPEND} events, not ${events.length}`);
  const db = tx as unknown as Kysely<AuditTables>;
  const chain = chainName(tenantId);
  const given = events[0]?.ip ?? null;
  const known = knownHeads.get(chain);
  const ipText = guessIpText(given);
  if (known && ipText !== undefined) {
    const linked = link(events, known, ipText);
    const sinks = await appendIfHeadIs(db, chain, known, linked, { given, text: ipText });
    if (sinks !== null) {
      remember(knownHeads, chain, linked.head);
      if (sinks > 0) await enqueueForSinks(db, linked, events[0]?.occurredAt ?? new Date());
      return;
    }
  }
  const head = await lockHead(db, tenantId, events.length, given);
  if (given !== null && head.ip !== null) remember(knownIps, given, head.ip);
  const linked = link(events, { seq: Number(head.seq), hash: Buffer.from(head.head_hash) }, head.ip);
  await db
    .with('appended', (qb) => qb.insertInto('audit_events').values(linked.rows))
    .updateTable('audit_chain_heads')
    .set({ head_hash: linked.head.hash })
    .where('chain', '=', chain)
    .execute();
  remember(knownHeads, chain, linked.head);
  if (head.sinks > 0) await enqueueForSinks(db, linked, events[0]?.occurredAt ?? new Date());
}

/** Queues the events for every active sink, in the events' own transaction (forward.ts delivers). */
async function enqueueForSinks(db: Kysely<AuditTables>, linked: Linked, at: Date) {
  const payloads = linked.chained.map(({ event, seq, prevHash, hash }) => ({
    event_id: event.id,
    tenant_id: event.tenantId,
    payload: { ...toView({ ...event, seq, prevHash, hash }), tenantId: event.tenantId },
  }));
  await sql`INSERT INTO audit_outbox (sink_id, event_id, tenant_id, payload, enqueued_at, next_attempt_at)
    SELECT s.id, p.event_id, p.tenant_id, p.payload, ${at}, ${at}
    FROM audit_sinks s CROSS JOIN jsonb_to_recordset(${JSON.stringify(payloads)}::jsonb)
      AS p(event_id uuid, tenant_id uuid, payload jsonb)
    WHERE s.disabled_at IS NULL`.execute(db);
}
