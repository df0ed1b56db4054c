import { sql } from 'kysely';
import type { Database } from '../platform/db/index.ts';
import { canonicalEventAt, chainHashHex, type EventFields } from './canonical.ts';
import { chainPages } from './store.ts';
import type { CheckedEvent } from './walk.ts';

/**
 * What verification reads of each event: every hashed field as text, under the name the canonical form
 * gives it, so the driver parses nothing and builds no Date or Buffer per row. PostgreSQL writes the
 * time as `Date.toISOString()` does (UTC, milliseconds) followed by the era, and the hashes as hex.
 * Only built-in functions, named with their schema: nothing the table's owner could define runs in
 * the verifier's query. The tenant is the one the query filters on, read as PostgreSQL prints it.
 */
const checkColumns = sql`id, tenant_id::text AS "tenantId", actor_type AS "actorType", actor_id AS "actorId",
  actor_elevation_id AS "actorElevationId", action, target_type AS "targetType", target_id AS "targetId",
  outcome, ip::text AS ip, user_agent AS "userAgent", request_id AS "requestId", details::text AS details,
  pg_catalog.to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"AD') AS at,
  chain_seq::text AS seq, pg_catalog.encode(prev_hash, 'hex') AS "prevHash",
  pg_catalog.encode(hash, 'hex') AS hash`;

type CheckRow = Omit<EventFields, 'details'> & {
  details: string | null;
  at: string | null;
  seq: string;
  prevHash: string | null;
  hash: string | null;
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

function checkRow(row: CheckRow): CheckedEvent {
  const prevHash = row.prevHash ?? '';
  const hash = row.hash ?? '';
  const at = isoTime(row.at);
  let intact = false;
  if (at !== null) {
    // The row itself is the event: only its details are still text.
    const event = row as unknown as EventFields;
    event.details = row.details === null ? (null as never) : JSON.parse(row.details);
    intact = chainHashHex(prevHash, canonicalEventAt(event, at)) === hash;
  }
  return { seq: Number(row.seq), id: row.id, prevHash, hash, intact };
}

/** A chain's events after `afterSeq`, checked page by page, in sequence order. */
export async function* checkedEvents(
  db: Database,
  tenantId: string | null,
  afterSeq: number,
  headSeq: number,
): AsyncGenerator<CheckedEvent[]> {
  for await (const rows of chainPages<CheckRow>(db, tenantId, checkColumns, afterSeq, headSeq)) {
    yield rows.map(checkRow);
  }
}

/** The same rows read the same way without checking them: the bench's baseline. */
export function uncheckedPages(db: Database, tenantId: string | null, afterSeq: number, headSeq: number) {
  return chainPages<CheckRow>(db, tenantId, checkColumns, afterSeq, headSeq);
}
