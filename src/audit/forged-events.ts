import { createHmac, type KeyObject, timingSafeEqual } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { chainHash, GENESIS_HASH } from './canonical.ts';
import type { MacKey } from './mac.ts';
import {
  bytes,
  chainFilter,
  type EventRow,
  eventColumns,
  type HeadRow,
  readCheckpoints,
  toStoredEvent,
} from './store.ts';
import type { AuditTables } from './tables.ts';
import { signatureProblem } from './walk.ts';

/**
 * An operator's acknowledgement of one forged event (docs/audit.md, "Event MACs": recovery): after it,
 * the checkpoint job signs over that event, and verify names it as acknowledged. It names the exact
 * event (position, id and stored hash), so a different forgery at that position is not covered.
 */
export interface ForgeryAcknowledgement {
  id: string;
  /** The chain: a tenant's id, or `platform`. */
  chain: string;
  seq: number;
  eventId: string;
  eventHash: Buffer;
  reason: string;
  actorType: string;
  actorId: string | null;
  acknowledgedAt: Date;
  /** Key id (8 bytes) || HMAC-SHA256 under the acknowledgement key (mac.ts); the database never holds it. */
  mac: Buffer;
}

export type AcknowledgementFields = Omit<ForgeryAcknowledgement, 'mac'>;

const KEY_ID_BYTES = 8;

/** The HMAC of every field, as a JSON array in a fixed order: one unambiguous text per acknowledgement. */
function tag(key: Buffer, a: AcknowledgementFields): Buffer {
  const text = JSON.stringify([
    'rampart:audit-forgery-ack:v1',
    a.id,
    a.chain,
    a.seq,
    a.eventId,
    a.eventHash.toString('hex'),
    a.reason,
    a.actorType,
    a.actorId,
    a.acknowledgedAt.toISOString(),
  ]);
  return createHmac('sha256', key).update(text).digest();
}

export const acknowledgementMac = (key: MacKey, a: AcknowledgementFields): Buffer =>
  Buffer.concat([Buffer.from(key.id, 'hex'), tag(key.ackKey, a)]);

/**
 * Whether an acknowledgement row was written by a node: `ok`; `bad` (someone with database access wrote
 * it); `other-key` (under a key from before a SECRET_KEY rotation, which this process does not hold).
 */
export function checkAcknowledgement(key: MacKey, a: ForgeryAcknowledgement): 'ok' | 'bad' | 'other-key' {
  if (a.mac.length !== KEY_ID_BYTES + 32) return 'bad';
  if (a.mac.subarray(0, KEY_ID_BYTES).toString('hex') !== key.id) return 'other-key';
  return timingSafeEqual(tag(key.ackKey, a), a.mac.subarray(KEY_ID_BYTES)) ? 'ok' : 'bad';
}

interface AckRow {
  id: string;
  chain: string;
  seq: string;
  event_id: string;
  event_hash: Uint8Array;
  reason: string;
  actor_type: string;
  actor_id: string | null;
  acknowledged_at: Date;
  mac: Uint8Array;
}

/**
 * The chain's acknowledgement rows (whoever wrote them), in position order, all of them or those in
 * `range` (after < seq <= upTo: the checkpoint job's interval, so rows anyone adds elsewhere cost it
 * nothing). Any scope of the chain reads them.
 */
export async function readAcknowledgements(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  range?: { after: number; upTo: number },
): Promise<ForgeryAcknowledgement[]> {
  const within = range ? sql`AND seq > ${range.after} AND seq <= ${range.upTo}` : sql``;
  const { rows } = await sql<AckRow>`
    SELECT id::text AS id, chain, seq::text AS seq, event_id::text AS event_id, event_hash, reason, actor_type,
      actor_id, acknowledged_at, mac
    FROM audit_forgery_acknowledgements WHERE ${chainFilter(tenantId)} ${within}
    ORDER BY audit_forgery_acknowledgements.seq, acknowledged_at`.execute(tx);
  return rows.map((r) => ({
    id: r.id,
    chain: r.chain,
    seq: Number(r.seq),
    eventId: r.event_id,
    eventHash: Buffer.from(bytes(r.event_hash)),
    reason: r.reason,
    actorType: r.actor_type,
    actorId: r.actor_id,
    acknowledgedAt: new Date(r.acknowledged_at),
    mac: Buffer.from(bytes(r.mac)),
  }));
}

/** Writes an acknowledgement with its MAC (a platform action: the transaction has no tenant set). */
export async function insertAcknowledgement(tx: Kysely<AuditTables>, key: MacKey, a: AcknowledgementFields) {
  await sql`
    INSERT INTO audit_forgery_acknowledgements (id, chain, tenant_id, seq, event_id, event_hash, reason,
      actor_type, actor_id, acknowledged_at, mac)
    VALUES (${a.id}, ${a.chain}, ${a.chain === 'platform' ? null : a.chain}, ${a.seq}, ${a.eventId},
      ${a.eventHash}, ${a.reason}, ${a.actorType}, ${a.actorId}, ${a.acknowledgedAt},
      ${acknowledgementMac(key, a)})`.execute(tx);
}

/**
 * The acknowledgement that covers an event: one naming its position, id and hash whose MAC verifies
 * (`acceptOtherKey`: or one under an older key, where a signed checkpoint already covers the event).
 */
export function acknowledgementOf(
  acks: readonly ForgeryAcknowledgement[],
  key: MacKey,
  event: { seq: number; id: string; hash: string },
  acceptOtherKey = false,
): ForgeryAcknowledgement | null {
  for (const a of acks) {
    if (a.seq !== event.seq || a.eventId !== event.id || a.eventHash.toString('hex') !== event.hash) continue;
    const verdict = checkAcknowledgement(key, a);
    if (verdict === 'ok' || (verdict === 'other-key' && acceptOtherKey)) return a;
  }
  return null;
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.from(a).equals(Buffer.from(b));

/**
 * Why the event at `seq` is not a consistent part of its chain, or null when it is: its content hashes
 * to its stored hash, it links to the event before it, and the event after it (or the head) links to it.
 * An acknowledgement covers a missing or wrong MAC only: without this check the checkpoint job, which
 * otherwise trusts the hashes its MACs vouch for, would sign over whatever the forged row claims.
 * When the event before it was pruned, the link is to the head hash of the signed checkpoint the chain
 * was pruned at (one `keys` trusts), as verify walks it: a forged first event after the pruning point
 * could otherwise claim any predecessor (code review).
 */
export async function chainInconsistency(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  seq: number,
  head: HeadRow,
  keys: Map<string, KeyObject>,
): Promise<string | null> {
  if (seq <= head.prunedThrough) {
    return `event at seq ${seq} lies in the pruned part of the chain (up to seq ${head.prunedThrough})`;
  }
  const { rows } = await sql<EventRow>`SELECT ${eventColumns} FROM audit_events
    WHERE ${chainFilter(tenantId)} AND chain_seq BETWEEN ${seq - 1} AND ${seq + 1}
    ORDER BY chain_seq`.execute(tx);
  const events = rows.map(toStoredEvent);
  const cur = events.find((e) => e.seq === seq);
  if (!cur) return `there is no event at seq ${seq}`;
  if (!same(chainHash(cur.prevHash, cur), cur.hash)) {
    return `event at seq ${seq} no longer matches its own hash`;
  }
  const broken = await brokenLinkBefore(tx, tenantId, cur, events, head.prunedThrough, keys);
  if (broken) return broken;
  // At the head, the head's hash; before it, the next event's link (a row beyond the head proves nothing).
  const after = events.find((e) => e.seq === seq + 1);
  const continues =
    seq >= head.seq
      ? seq === head.seq && same(head.hash, cur.hash)
      : after !== undefined && same(after.prevHash, cur.hash);
  return continues ? null : `the chain does not continue from the event at seq ${seq}`;
}

/** Why the event does not link to what precedes it (genesis, the event before, or the pruning checkpoint). */
async function brokenLinkBefore(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  cur: { seq: number; prevHash: Uint8Array },
  events: readonly { seq: number; hash: Uint8Array }[],
  prunedThrough: number,
  keys: Map<string, KeyObject>,
): Promise<string | null> {
  if (cur.seq - 1 === prunedThrough && prunedThrough > 0) {
    // The first trusted row there, as verify takes it (rows nobody trusted signed do not count).
    const from = (await readCheckpoints(tx, tenantId, prunedThrough)).find(
      (c) => signatureProblem(c, keys) === null,
    );
    if (!from) return `the chain was pruned up to seq ${prunedThrough} but that checkpoint is missing`;
    return same(from.headHash, cur.prevHash)
      ? null
      : `event at seq ${cur.seq} does not link to the signed checkpoint the chain was pruned at (seq ${prunedThrough})`;
  }
  const expectedPrev = cur.seq === 1 ? GENESIS_HASH : events.find((e) => e.seq === cur.seq - 1)?.hash;
  return expectedPrev && same(expectedPrev, cur.prevHash)
    ? null
    : `event at seq ${cur.seq} does not link to the event before it`;
}
