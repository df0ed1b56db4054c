import { createPublicKey, type KeyObject } from 'node:crypto';
import { type Kysely, type RawBuilder, sql } from 'kysely';
import { asTenantId, type Database, type SystemTx, type TenantTx } from '../platform/db/index.ts';
import { type CheckpointSigner, keyIdOf, verifyEndorsement } from './signer.ts';
import type { AuditCheckpointsTable, AuditEventsTable, AuditTables } from './tables.ts';
import { type StoredCheckpoint, type StoredEvent, signatureProblem, type TrustedKeys } from './walk.ts';

export type ChainTx = TenantTx<AuditTables> | SystemTx<AuditTables>;

/** Runs fn in the chain's scope: the tenant's, or the platform's (no tenant set). */
export function inChain<R>(
  db: Database,
  tenantId: string | null,
  fn: (tx: ChainTx) => Promise<R>,
): Promise<R> {
  return tenantId === null
    ? db.withSystem<AuditTables, R>(fn)
    : db.withTenant<AuditTables, R>(asTenantId(tenantId), fn);
}

/**
 * Every chain that has a head, the platform's first: tenant ids (null for the platform), whether or not
 * a tenant of that id still exists (migration 0053's audit_chains()).
 */
export async function listChains(db: Database): Promise<(string | null)[]> {
  return db.withSystem<AuditTables, (string | null)[]>(async (tx) => {
    const { rows } = await sql<{ tenant_id: string | null }>`
      SELECT tenant_id::text AS tenant_id FROM audit_chains()`.execute(tx);
    return rows.map((r) => r.tenant_id);
  });
}

/** The rows of one chain: a tenant's, or the platform's (tenant_id NULL). */
export const chainFilter = (tenantId: string | null) =>
  tenantId === null ? sql`tenant_id IS NULL` : sql`tenant_id = ${tenantId}`;

export const bytes = (value: Uint8Array | null): Uint8Array => (value ? Buffer.from(value) : Buffer.alloc(0));

export interface HeadRow {
  seq: number;
  hash: Uint8Array;
  legacyEvents: number;
  prunedThrough: number;
  /** The first position that must carry a MAC (migration 0059: events before it were written without). */
  macFromSeq: number;
}

export async function readHead(tx: Kysely<AuditTables>, tenantId: string | null): Promise<HeadRow> {
  const { rows } = await sql<{
    seq: string;
    head_hash: Uint8Array;
    legacy_events: string;
    pruned_through: string;
    mac_from_seq: string;
  }>`
    SELECT seq::text, head_hash, legacy_events::text, pruned_through::text, mac_from_seq::text
    FROM audit_chain_heads WHERE chain = ${tenantId ?? 'platform'}`.execute(tx);
  const row = rows[0];
  if (!row) return { seq: 0, hash: Buffer.alloc(32), legacyEvents: 0, prunedThrough: 0, macFromSeq: 1 };
  return {
    seq: Number(row.seq),
    hash: bytes(row.head_hash),
    legacyEvents: Number(row.legacy_events),
    prunedThrough: Number(row.pruned_through),
    macFromSeq: Number(row.mac_from_seq),
  };
}

/** A row as `eventColumns` reads it: details parsed (jsonb), the chain position as text under `seq`. */
export type EventRow = Omit<AuditEventsTable, 'details' | 'chain_seq'> & {
  details: Record<string, unknown>;
  seq: string;
};

export const toStoredEvent = (r: EventRow): StoredEvent => ({
  id: r.id,
  tenantId: r.tenant_id,
  occurredAt: r.occurred_at,
  actorType: r.actor_type,
  actorId: r.actor_id,
  actorElevationId: r.actor_elevation_id,
  action: r.action,
  targetType: r.target_type,
  targetId: r.target_id,
  outcome: r.outcome,
  ip: r.ip,
  userAgent: r.user_agent,
  requestId: r.request_id,
  details: r.details,
  seq: Number(r.seq),
  prevHash: bytes(r.prev_hash),
  hash: bytes(r.hash),
});

export const eventColumns = sql`id, tenant_id, occurred_at, actor_type, actor_id, actor_elevation_id, action,
  target_type, target_id, outcome, ip::text AS ip, user_agent, request_id, details, chain_seq::text AS seq,
  prev_hash, hash`;

/** The chain's head as a reader that follows it reads it again: its position and hash. */
export interface FollowedHead {
  seq: number;
  hash: Uint8Array;
}

/**
 * A chain's rows after `afterSeq`, in sequence order, page by page (one short transaction each), as
 * `columns` reads them (`seq` is the position as text): a select list, one row per event, or JsonRows,
 * one JSON text per page. Up to `headSeq` each page is a bounded range of
 * positions (`after < seq <= after + pageSize`): its cost does not depend on the planner's row
 * estimates (without statistics on a freshly loaded table it sorted every remaining event for each
 * page) nor on the length of the chain. After an empty page the next page starts at the next position
 * that holds a row (one indexed lookup), so a gap costs two statements whatever its length. Past the
 * head, rows that should not exist are still read, so
 * that verification can name them.
 *
 * With `follow`, the head is read again once the rows up to `headSeq` are read, in the same statement
 * as the first rows beyond it: if it moved on (events appended meanwhile), `follow` hears the new head
 * and the rows up to it come next, read like the others; only rows beyond the head of that statement
 * follow them. Without it, every row after `headSeq` comes as it is (readers that stop at the head).
 */
export async function* chainPages<Row extends { seq: string }>(
  db: Database,
  tenantId: string | null,
  columns: RawBuilder<unknown> | JsonRows<Row>,
  afterSeq: number,
  headSeq = afterSeq,
  pageSize = 5000,
  follow?: (head: FollowedHead) => void,
): AsyncGenerator<Row[]> {
  const rowsAfter = (after: RawBuilder<unknown>, bound: RawBuilder<unknown>) => {
    const where = sql`${chainFilter(tenantId)} AND chain_seq > ${after} ${bound}`;
    return 'json' in columns
      ? sql`(SELECT pg_catalog.json_agg(e.fields ORDER BY e.n)::text FROM (SELECT ${columns.json} AS fields,
          chain_seq AS n FROM audit_events WHERE ${where} ORDER BY chain_seq LIMIT ${pageSize}) AS e) AS page`
      : sql`${columns} FROM audit_events WHERE ${where} ORDER BY chain_seq LIMIT ${pageSize}`;
  };
  const decode = (rows: unknown[]): Row[] => {
    if (!('json' in columns)) return rows as Row[];
    const text = (rows[0] as { page: string | null } | undefined)?.page;
    return text ? columns.decode(JSON.parse(text) as unknown[]) : [];
  };
  const page = (after: number, upTo: number | null) =>
    inChain(db, tenantId, async (tx) => {
      const bound = upTo === null ? sql`` : sql`AND chain_seq <= ${upTo}`;
      const { rows } = await sql<Row>`SELECT ${rowsAfter(sql`${after}`, bound)}`.execute(tx);
      return decode(rows);
    });
  // The head and the first rows beyond it (and beyond `after`) in one statement, hence one snapshot:
  // an append commits its events and its head together, so no committed event lies beyond this head.
  const beyondHead = (after: number) =>
    inChain(db, tenantId, async (tx) => {
      const past = sql`greatest(${after}::bigint, coalesce(h.seq, 0))`;
      // JSON pages: one row whose page is a subquery on the head; else the rows, joined laterally.
      const [selected, lateral] =
        'json' in columns
          ? [rowsAfter(past, sql``), sql``]
          : [sql`e.*`, sql`LEFT JOIN LATERAL (SELECT ${rowsAfter(past, sql``)}) e ON true`];
      const { rows } = await sql<Row & { head_seq: string | null; head_hash: Uint8Array | null }>`
        SELECT h.seq::text AS head_seq, h.head_hash, ${selected}
        FROM (SELECT 1) AS one
        LEFT JOIN audit_chain_heads h ON h.chain = ${tenantId ?? 'platform'}
        ${lateral}`.execute(tx);
      const first = rows[0];
      const head =
        first?.head_seq == null ? null : { seq: Number(first.head_seq), hash: bytes(first.head_hash) };
      if ('json' in columns) return { head, rows: decode(rows) };
      const events: Row[] = [];
      for (const { head_seq: _seq, head_hash: _hash, ...row } of rows) {
        if (row.seq !== null) events.push(row as unknown as Row);
      }
      return { head, rows: events };
    });
  // One page ahead: the database produces the next page while this one is hashed. A reader that stops
  // early leaves at most that page's short transaction to finish on its own (its failure is then moot).
  const fetch = (from: number, upTo: number) => {
    const pending = page(from, Math.min(from + pageSize, upTo));
    pending.catch(() => {});
    return pending;
  };
  // The first position of the chain after `after`, up to `to` (one step of the position index), or `to`
  // when there is none: where the next page starts after an empty one.
  const nextExisting = (after: number, to: number) =>
    inChain(db, tenantId, async (tx) => {
      const { rows } = await sql<{ seq: string | null }>`SELECT min(chain_seq)::text AS seq FROM audit_events
        WHERE ${chainFilter(tenantId)} AND chain_seq > ${after} AND chain_seq <= ${to}`.execute(tx);
      const seq = rows[0]?.seq;
      return seq == null ? to : Number(seq) - 1;
    });
  async function* upTo(from: number, to: number): AsyncGenerator<Row[]> {
    let after = from;
    let next = after < to ? fetch(after, to) : null;
    while (next) {
      const rows = await next;
      after = Math.min(after + pageSize, to);
      // An empty page: the next rows, if any, lie further on. A head moved far ahead of its events (the
      // app role may move it, migration 0034) would otherwise cost one empty page per pageSize positions
      // of the gap (10^12 positions: forever); one indexed lookup jumps over the gap whatever its length.
      if (rows.length === 0 && after < to) after = await nextExisting(after, to);
      next = after < to ? fetch(after, to) : null;
      yield rows;
    }
  }
  yield* upTo(afterSeq, headSeq);
  let after = Math.max(afterSeq, headSeq);
  if (follow) {
    const tail = await beyondHead(after);
    if (tail.head && tail.head.seq > after) {
      follow(tail.head);
      yield* upTo(after, tail.head.seq);
      after = tail.head.seq;
    }
    yield tail.rows;
    const last = tail.rows.at(-1);
    if (!last || tail.rows.length < pageSize) return;
    after = Number(last.seq);
  }
  for (;;) {
    const rows = await page(after, null);
    yield rows;
    const last = rows.at(-1);
    if (!last || rows.length < pageSize) return;
    after = Number(last.seq);
  }
}

/**
 * A page read as one JSON text (chainPages): each event's fields as one json value (`json`), the page's
 * values aggregated in position order, then parsed and turned into rows at once (`decode`). Per event
 * the driver then decodes nothing: on PGlite, each field it decodes costs a copy and a UTF-8 decode.
 */
export interface JsonRows<Row> {
  json: RawBuilder<unknown>;
  decode: (values: unknown[]) => Row[];
}

/** A chain's events after `afterSeq` in full, in sequence order (export, search-shaped readers). */
export async function* chainEvents(
  db: Database,
  tenantId: string | null,
  afterSeq: number,
  headSeq = afterSeq,
): AsyncGenerator<StoredEvent> {
  for await (const rows of chainPages<EventRow>(db, tenantId, eventColumns, afterSeq, headSeq)) {
    for (const row of rows) yield toStoredEvent(row);
  }
}

/** A checkpoint row as toCheckpoint reads it (positions and constants as text). */
const checkpointColumns = sql`tenant_id, seq::text, head_hash, signed_at, key_id, signature,
  mac_from_seq::text, legacy_events::text`;

/**
 * The chain's checkpoint rows in position order (all of them, or those at `seq`), signatures unchecked.
 * Ordered by the column: a bare `seq` would name the text output column and sort 10 before 5.
 */
export async function readCheckpoints(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  seq?: number,
): Promise<StoredCheckpoint[]> {
  const at = seq === undefined ? sql`` : sql`AND seq = ${seq}`;
  const { rows } = await sql<AuditCheckpointsTable>`SELECT ${checkpointColumns}
     FROM audit_checkpoints WHERE ${chainFilter(tenantId)} ${at} ORDER BY audit_checkpoints.seq, signed_at`.execute(
    tx,
  );
  return rows.map(toCheckpoint);
}

const toCheckpoint = (r: AuditCheckpointsTable): StoredCheckpoint => ({
  tenantId: r.tenant_id,
  seq: Number(r.seq),
  headHash: bytes(r.head_hash),
  signedAt: new Date(r.signed_at),
  keyId: r.key_id,
  signature: bytes(r.signature),
  // Both or neither (migration 0085's check); either way the signature decides whether they count.
  constants:
    r.mac_from_seq === null || r.legacy_events === null
      ? null
      : { macFromSeq: Number(r.mac_from_seq), legacyEvents: Number(r.legacy_events) },
});

/**
 * The chain's newest checkpoint that a trusted key signed (`withConstants`: the newest of those that
 * carry the chain constants, migration 0085), read newest first a page at a time (rows
 * nobody trusted signed are passed over: they are not "the newest checkpoint"). As in verify
 * (partitionCheckpoints, walk.ts), a recorded older key counts only up to where a key recorded after it
 * first signed in this chain: whoever kept an old secret cannot choose where the job starts proving.
 */
export async function newestTrustedCheckpoint(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  keys: TrustedKeys,
  { withConstants = false }: { withConstants?: boolean } = {},
): Promise<StoredCheckpoint | null> {
  const takeovers = new Map<string, number | null>();
  const trusted = async (cp: StoredCheckpoint) => {
    if (signatureProblem(cp, keys) !== null) return false;
    const later = keys.successors?.get(cp.keyId);
    if (!later) return true;
    let takeover = takeovers.get(cp.keyId);
    if (takeover === undefined) {
      takeover = null;
      for (const id of later) {
        const first = await firstSignedBy(tx, tenantId, id, keys);
        if (first !== null && (takeover === null || first < takeover)) takeover = first;
      }
      takeovers.set(cp.keyId, takeover);
    }
    return takeover === null || cp.seq <= takeover;
  };
  let below: number | null = null;
  for (;;) {
    const bound: RawBuilder<unknown> = below === null ? sql`` : sql`AND seq < ${below}`;
    // Only rows that carry constants, when asked: a row whose columns were filled in or emptied by
    // someone else fails its signature below, like any forged row.
    const carrying = withConstants ? sql`AND mac_from_seq IS NOT NULL` : sql``;
    const { rows } = await sql<AuditCheckpointsTable>`SELECT ${checkpointColumns}
      FROM audit_checkpoints WHERE ${chainFilter(tenantId)} ${bound} ${carrying} ORDER BY audit_checkpoints.seq DESC LIMIT 100`.execute(
      tx,
    );
    const page: StoredCheckpoint[] = rows.map(toCheckpoint);
    for (const cp of page) if (await trusted(cp)) return cp;
    const last: StoredCheckpoint | undefined = page.at(-1);
    if (!last || rows.length < 100) return null;
    // The page may have cut the rows of its last position short: read that position whole.
    for (const cp of await readCheckpoints(tx, tenantId, last.seq)) {
      if ((!withConstants || cp.constants) && (await trusted(cp))) return cp;
    }
    below = last.seq;
  }
}

/** The position of the chain's first checkpoint that key `keyId` validly signed, or null. */
async function firstSignedBy(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  keyId: string,
  keys: Map<string, KeyObject>,
): Promise<number | null> {
  let above = -1;
  for (;;) {
    const { rows } = await sql<AuditCheckpointsTable>`SELECT ${checkpointColumns}
      FROM audit_checkpoints WHERE ${chainFilter(tenantId)} AND key_id = ${keyId} AND seq > ${above}
      ORDER BY audit_checkpoints.seq LIMIT 100`.execute(tx);
    const page = rows.map(toCheckpoint);
    const signed = page.find((cp) => signatureProblem(cp, keys) === null);
    if (signed) return signed.seq;
    const last = page.at(-1);
    if (!last || rows.length < 100) return null;
    // The page may have cut the rows of its last position short: read that position whole.
    const atLast = await readCheckpoints(tx, tenantId, last.seq);
    if (atLast.some((cp) => cp.keyId === keyId && signatureProblem(cp, keys) === null)) return last.seq;
    above = last.seq;
  }
}

/** Events of the chain that carry no position: legacy ones, or rows slipped in outside the chain. */
export async function unchainedEvents(tx: Kysely<AuditTables>, tenantId: string | null) {
  const { rows } = await sql<{ count: string; first: string | null }>`
    SELECT count(*)::text AS count, (array_agg(id ORDER BY occurred_at DESC))[1]::text AS first
    FROM audit_events WHERE ${chainFilter(tenantId)} AND chain_seq IS NULL`.execute(tx);
  return { count: Number(rows[0]?.count ?? 0), newest: rows[0]?.first ?? null };
}

/**
 * Events of the chain at or below `prunedThrough`: retention deleted that range, so any row there was
 * written back into it (the insert trigger of migrations 0052 and 0057 refuses that, except to the table owner
 * with the trigger off). One range scan of the chain's position index; usually it finds nothing.
 */
export async function eventsInPrunedRange(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  prunedThrough: number,
): Promise<{ count: number; first: { seq: number; id: string } | null }> {
  if (prunedThrough <= 0) return { count: 0, first: null };
  const { rows } = await sql<{ count: string; seq: string | null; id: string | null }>`
    SELECT count(*)::text AS count, min(chain_seq)::text AS seq,
      (array_agg(id ORDER BY chain_seq))[1]::text AS id
    FROM audit_events WHERE ${chainFilter(tenantId)} AND chain_seq IS NOT NULL
      AND chain_seq <= ${prunedThrough}`.execute(tx);
  const row = rows[0];
  const count = Number(row?.count ?? 0);
  if (count === 0 || !row?.seq || !row.id) return { count: 0, first: null };
  return { count, first: { seq: Number(row.seq), id: row.id } };
}

/**
 * The position of the chain's `audit.trail.pruned` event that moved `pruned_through` where it is (its
 * `throughSeq`), between `pruned_through` and the head; null when there is none. The pruning job appends
 * it in the transaction that deletes the prefix, so a pruned chain without one was pruned by someone else.
 */
export async function prunedRecordSeq(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  prunedThrough: number,
  headSeq: number,
): Promise<number | null> {
  if (prunedThrough <= 0) return null;
  const { rows } = await sql<{ seq: string }>`SELECT chain_seq::text AS seq FROM audit_events
    WHERE ${chainFilter(tenantId)} AND action = 'audit.trail.pruned'
      AND chain_seq > ${prunedThrough} AND chain_seq <= ${headSeq}
      AND details ->> 'throughSeq' = ${String(prunedThrough)}
    ORDER BY chain_seq LIMIT 1`.execute(tx);
  return rows[0] ? Number(rows[0].seq) : null;
}

/**
 * Records the public key this node signs with (migration 0060), once: after a SECRET_KEY rotation the
 * server still knows the keys of the checkpoints signed before it. Racing nodes insert the same row.
 * With it, this key's endorsement of each previous key (SECRET_KEY_PREVIOUS, `signer.previous`; migration
 * 0089), recorded or not: only an endorsed older key is trusted (trustedKeysIn). Ed25519 is deterministic,
 * so the rows are the same every time and on every node.
 */
export async function recordSigningKey(tx: Kysely<AuditTables>, signer: CheckpointSigner) {
  const der = signer.publicKey.export({ format: 'der', type: 'spki' });
  await sql`INSERT INTO audit_signing_keys (key_id, public_key) VALUES (${signer.keyId}, ${der})
    ON CONFLICT DO NOTHING`.execute(tx);
  const previous = (signer.previous ?? []).filter((p) => p.keyId !== signer.keyId);
  if (previous.length === 0) return;
  const rows = previous.map(
    (p) =>
      sql`(${signer.keyId}, ${p.keyId}, ${p.publicKey.export({ format: 'der', type: 'spki' })}, ${signer.endorse(p.publicKey)})`,
  );
  await sql`INSERT INTO audit_key_endorsements (endorser_key_id, key_id, public_key, signature)
    VALUES ${sql.join(rows)} ON CONFLICT DO NOTHING`.execute(tx);
}

/**
 * The keys checkpoints are verified with: the current one, any the operator gives (both trusted
 * everywhere), and the older keys a trusted key endorsed (migration 0089), directly or along a line of
 * endorsements (the current key endorsed K1, K1 endorsed K0...). Each older key is trusted up to where,
 * in a chain, a key that endorsed it (directly or not) or one recorded after it took over (walk.ts).
 * A recorded key no trusted key endorsed (one added by someone with database access, whatever its
 * recorded_at, or one the server never signed with) is not trusted: its checkpoints are reported as
 * signed by an unknown key.
 */
export function loadTrustedKeys(
  db: Database,
  current: CheckpointSigner,
  extra: KeyObject[] = [],
): Promise<TrustedKeys> {
  return db.withSystem<AuditTables, TrustedKeys>((tx) => trustedKeysIn(tx, current, extra));
}

/** loadTrustedKeys in a transaction the caller holds (the tables have no tenant: any scope reads them). */
export async function trustedKeysIn(
  tx: Kysely<AuditTables>,
  current: CheckpointSigner,
  extra: KeyObject[] = [],
): Promise<TrustedKeys> {
  const { rows: recorded } = await sql<{ key_id: string }>`
    SELECT key_id FROM audit_signing_keys ORDER BY recorded_at, key_id`.execute(tx);
  const { rows: endorsements } = await sql<{
    endorser_key_id: string;
    key_id: string;
    public_key: Uint8Array;
    signature: Uint8Array;
  }>`SELECT endorser_key_id, key_id, public_key, signature FROM audit_key_endorsements
    ORDER BY created_at, endorser_key_id, key_id`.execute(tx);
  const keys: TrustedKeys = new Map();
  for (const k of extra) keys.set(keyIdOf(k), k);
  keys.set(current.keyId, current.publicKey);
  // From the keys trusted everywhere, along valid endorsements: each endorsed key and who endorsed it.
  const endorsed = new Map<string, KeyObject>();
  const endorsers = new Map<string, Set<string>>();
  const queue = [...keys.entries()];
  for (let next = queue.shift(); next; next = queue.shift()) {
    const [endorserId, endorser] = next;
    for (const e of endorsements) {
      if (e.endorser_key_id !== endorserId || e.key_id === endorserId || keys.has(e.key_id)) continue;
      const known = endorsed.get(e.key_id);
      if (known && endorsers.get(e.key_id)?.has(endorserId)) continue;
      let key: KeyObject;
      try {
        key = createPublicKey({ key: Buffer.from(e.public_key), format: 'der', type: 'spki' });
      } catch {
        continue;
      }
      if (keyIdOf(key) !== e.key_id || !verifyEndorsement(endorser, e.public_key, e.signature)) continue;
      endorsers.set(e.key_id, (endorsers.get(e.key_id) ?? new Set()).add(endorserId));
      if (!known) {
        endorsed.set(e.key_id, key);
        queue.push([e.key_id, key]);
      }
    }
  }
  // An endorsed key counts up to where a later key took over: one that endorsed it (directly or along
  // the line) or an endorsed one recorded after it, and the current key.
  const order = recorded.map((r) => r.key_id);
  const successors = new Map<string, string[]>();
  for (const [id, key] of endorsed) {
    const later = new Set<string>();
    const up = [...(endorsers.get(id) ?? [])];
    for (let e = up.shift(); e; e = up.shift()) {
      if (later.has(e) || e === id) continue;
      later.add(e);
      up.push(...(endorsers.get(e) ?? []));
    }
    const at = order.indexOf(id);
    if (at !== -1) {
      for (const other of order.slice(at + 1))
        if (other !== id && (endorsed.has(other) || keys.has(other))) later.add(other);
    }
    later.add(current.keyId);
    keys.set(id, key);
    successors.set(id, [...later]);
  }
  keys.successors = successors;
  return keys;
}
