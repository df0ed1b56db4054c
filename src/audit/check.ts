import { type Kysely, sql } from 'kysely';
import type { Database } from '../platform/db/index.ts';
import { canonicalEventAt, chainHashHex, type EventFields } from './canonical.ts';
import { chainFilter, chainPages, type FollowedHead } from './store.ts';
import type { AuditEventsTable, AuditTables } from './tables.ts';
import type { CheckedEvent } from './walk.ts';

/**
 * What verification reads of each event: every hashed field as text, so the driver parses nothing and
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

function checkRow(row: CheckRow): CheckedEvent {
  const [seq, prevHash = '', hash = '', id = '', tenantId, ip, atText, mac = ''] = row.fixed.split(',');
  const at = isoTime(orNull(atText));
  let intact = false;
  if (at !== null) {
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
    intact = chainHashHex(prevHash, canonicalEventAt(event, at)) === hash;
  }
  return { seq: Number(seq), id, prevHash, hash, intact, mac };
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
): AsyncGenerator<CheckedEvent[]> {
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
export function uncheckedPages(db: Database, tenantId: string | null, afterSeq: number, headSeq: number) {
  return chainPages<CheckRow>(db, tenantId, checkColumns, afterSeq, headSeq);
}
