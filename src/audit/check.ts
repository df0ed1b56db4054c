import { type Kysely, sql } from 'kysely';
import type { Database } from '../platform/db/index.ts';
import { canonicalEventOrNull, chainHashHex, type EventFields } from './canonical.ts';
import { chainFilter, chainPages, type FollowedHead, type JsonRows } from './store.ts';
import type { AuditEventsTable, AuditTables } from './tables.ts';
import type { CheckedEvent } from './walk.ts';

/**
 * What verification reads of each event on PostgreSQL: every hashed field as text, so the driver parses nothing and
 * builds no Date or Buffer per row. PostgreSQL writes the time as `Date.toISOString()` does (UTC,
 * milliseconds) followed by the era, and the hashes as hex. The fields whose text has no comma (the
 * position, hashes, ids, address, time) come as one comma-separated column, an empty field for NULL
 * (none of them prints as empty text): every column costs the driver a string and a property. Only
 * built-in functions, named with their schema: nothing the table's owner could define runs here.
 */
const checkColumns = sql`pg_catalog.concat(chain_seq::text, ',', pg_catalog.encode(prev_hash, 'hex'), ',',
    pg_catalog.encode(hash, 'hex'), ',', id::text, ',', tenant_id::text, ',', ip::text, ',',
    pg_catalog.to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"AD'), ',',
    pg_catalog.encode(mac, 'hex')) AS fixed,
  chain_seq::text AS seq, actor_type, actor_id, actor_elevation_id, action, target_type, target_id, outcome,
  user_agent, request_id, details::text AS details`;

type CheckRow = Pick<
  AuditEventsTable,
  | 'actor_type'
  | 'actor_id'
  | 'actor_elevation_id'
  | 'action'
  | 'target_type'
  | 'target_id'
  | 'outcome'
  | 'user_agent'
  | 'request_id'
> & {
  /** seq,prev_hash,hash,id,tenant_id,ip,at,mac as described above. */
  fixed: string;
  seq: string;
  details: string | null;
};

/**
 * The same fields on PGlite, as one JSON array per event (`json_build_array`, the details embedded as
 * the jsonb's own text, so they parse as `details::text` would), a page's arrays aggregated into one JSON
 * text (chainPages). PGlite's driver copies and UTF-8-decodes each field of each row on its own: that was
 * most of the read there, and one text per page costs one. PostgreSQL builds JSON more slowly than it
 * writes columns, and its driver's per-field cost is small: the columns are faster there (measured, see
 * docs/audit.md "Verification speed").
 */
const jsonFields = sql`pg_catalog.json_build_array(chain_seq::text, pg_catalog.encode(prev_hash, 'hex'),
    pg_catalog.encode(hash, 'hex'), id::text, tenant_id::text, ip::text,
    pg_catalog.to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"AD'),
    pg_catalog.encode(mac, 'hex'), actor_type, actor_id, actor_elevation_id, action, target_type, target_id,
    outcome, user_agent, request_id, details)`;

/** One event as jsonFields writes it (a NULL is null). */
type JsonFields = [
  seq: string,
  prevHash: string | null,
  hash: string | null,
  id: string,
  tenantId: string | null,
  ip: string | null,
  at: string | null,
  mac: string | null,
  actorType: string,
  actorId: string | null,
  actorElevationId: string | null,
  action: string,
  targetType: string | null,
  targetId: string | null,
  outcome: string,
  userAgent: string | null,
  requestId: string | null,
  details: Record<string, unknown>,
];

interface JsonRow {
  seq: string;
  fields: JsonFields;
}

const jsonPages: JsonRows<JsonRow> = {
  json: jsonFields,
  decode: (values) => (values as JsonFields[]).map((fields) => ({ seq: fields[0], fields })),
};

/** How events are read: checkColumns or jsonFields. Both give the same checked events (tested). */
export type ReadForm = 'columns' | 'json';

export const readFormFor = (db: Database): ReadForm => (db.engine.kind === 'pglite' ? 'json' : 'columns');

const eraTime = /^(\d{4,})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)\.(\d{3})Z(AD|BC)$/;

/**
 * `Date.toISOString()` of the time PostgreSQL wrote. Years 1-9999 AD (every real event) are the text
 * without its era; other years go through a Date as the driver's parser would have made it. Null for
 * what has no such form (infinity, a year a Date cannot hold): the event then fails its hash.
 */
export function isoTime(text: string | null): string | null {
  if (text === null) return null;
  if (text.length === 26 && text.endsWith('ZAD')) return text.slice(0, 24);
  const m = eraTime.exec(text);
  if (!m) return null;
  const [year, month, day, hour, minute, second, ms] = m.slice(1, 8).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const date = new Date(Date.UTC(2000, month - 1, day, hour, minute, second, ms));
  date.setUTCFullYear(m[8] === 'BC' ? 1 - year : year);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

const orNull = (text: string | undefined) => (text ? text : null);

/** Whether the event's own hash holds: SHA-256(prev_hash || canonical JSON) is the hash it stores. */
function holds(prevHash: string, hash: string, atText: string | null, event: EventFields): boolean {
  const at = isoTime(atText);
  const text = at === null ? null : canonicalEventOrNull(event, at);
  return text !== null && chainHashHex(prevHash, text) === hash;
}

function checkRow(row: CheckRow): CheckedEvent {
  const [seq, prevHash = '', hash = '', id = '', tenantId, ip, atText, mac = ''] = row.fixed.split(',');
  const event: EventFields = {
    id,
    tenantId: orNull(tenantId),
    actorType: row.actor_type,
    actorId: row.actor_id,
    actorElevationId: row.actor_elevation_id,
    action: row.action,
    targetType: row.target_type,
    targetId: row.target_id,
    outcome: row.outcome,
    ip: orNull(ip),
    userAgent: row.user_agent,
    requestId: row.request_id,
    details: row.details === null ? (null as never) : JSON.parse(row.details),
  };
  return { seq: Number(seq), id, prevHash, hash, intact: holds(prevHash, hash, orNull(atText), event), mac };
}

/** The same from jsonFields: a NULL hash or MAC reads as '' like the columns' empty field. */
function checkJsonRow({ fields: f }: JsonRow): CheckedEvent {
  const [seq, prev, stored, id, tenantId, ip, atText, mac] = f;
  const prevHash = prev ?? '';
  const hash = stored ?? '';
  const event: EventFields = {
    id,
    tenantId,
    actorType: f[8],
    actorId: f[9],
    actorElevationId: f[10],
    action: f[11],
    targetType: f[12],
    targetId: f[13],
    outcome: f[14],
    ip,
    userAgent: f[15],
    requestId: f[16],
    details: f[17],
  };
  return {
    seq: Number(seq),
    id,
    prevHash,
    hash,
    intact: holds(prevHash, hash, atText, event),
    mac: mac ?? '',
  };
}

/**
 * A chain's events after `afterSeq`, checked page by page, in sequence order. With `follow`, the head
 * is read again at `headSeq` and the events appended meanwhile come too (chainPages).
 */
export async function* checkedEvents(
  db: Database,
  tenantId: string | null,
  afterSeq: number,
  headSeq: number,
  follow?: (head: FollowedHead) => void,
  form: ReadForm = readFormFor(db),
): AsyncGenerator<CheckedEvent[]> {
  if (form === 'json') {
    for await (const rows of chainPages(db, tenantId, jsonPages, afterSeq, headSeq, undefined, follow)) {
      yield rows.map(checkJsonRow);
    }
    return;
  }
  const pages = chainPages<CheckRow>(db, tenantId, checkColumns, afterSeq, headSeq, undefined, follow);
  for await (const rows of pages) {
    yield rows.map(checkRow);
  }
}

/**
 * The chain's events at positions after < seq <= upTo, checked the same way, in a transaction the caller
 * holds (the checkpoint job, under its per-chain lock): one bounded range of positions.
 */
export async function checkedRange(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  after: number,
  upTo: number,
): Promise<CheckedEvent[]> {
  const { rows } = await sql<CheckRow>`SELECT ${checkColumns} FROM audit_events
    WHERE ${chainFilter(tenantId)} AND chain_seq > ${after} AND chain_seq <= ${upTo}
    ORDER BY chain_seq`.execute(tx);
  return rows.map(checkRow);
}

/** The same rows read the same way without checking them: the bench's baseline. */
export function uncheckedPages(
  db: Database,
  tenantId: string | null,
  afterSeq: number,
  headSeq: number,
): AsyncGenerator<unknown[]> {
  if (readFormFor(db) === 'json') return chainPages(db, tenantId, jsonPages, afterSeq, headSeq);
  return chainPages<CheckRow>(db, tenantId, checkColumns, afterSeq, headSeq);
}
