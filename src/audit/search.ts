import { isIP } from 'node:net';
import { type Kysely, type RawBuilder, sql } from 'kysely';
import type { AuditDetailsValue } from './details.ts';
import { auditError } from './errors.ts';
import { MAX_RANGE_DAYS } from './schemas.ts';
import { eventColumns, toStoredEvent } from './store.ts';
import type { AuditTables } from './tables.ts';
import type { StoredEvent } from './walk.ts';

export interface SearchInput {
  actor?: string;
  actorType?: string;
  action?: string;
  targetType?: string;
  targetId?: string;
  outcome?: string;
  ip?: string;
  from?: string;
  to?: string;
}

export interface EventView {
  id: string;
  seq: number;
  occurredAt: string;
  actor: { type: string; id: string | null; elevationId: string | null };
  action: string;
  target: { type: string | null; id: string | null } | null;
  outcome: string;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  details: AuditDetailsValue;
  hash: string;
}

export const toView = (e: StoredEvent): EventView => ({
  id: e.id,
  seq: e.seq,
  occurredAt: e.occurredAt.toISOString(),
  actor: { type: e.actorType, id: e.actorId, elevationId: e.actorElevationId },
  action: e.action,
  target: e.targetType === null && e.targetId === null ? null : { type: e.targetType, id: e.targetId },
  outcome: e.outcome,
  // The chain hashes PostgreSQL's text(inet), which keeps the mask of a host address (/32, /128).
  ip: e.ip?.replace(/\/(32|128)$/, '') ?? null,
  userAgent: e.userAgent,
  requestId: e.requestId,
  details: e.details as AuditDetailsValue,
  hash: Buffer.from(e.hash).toString('hex'),
});

/** A position in the newest-first order: the event's time (microseconds, as stored) and its seq. */
export interface Position {
  at: string;
  seq: number;
}

const cursorText = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z)\|(\d{1,18})$/;

export const encodeCursor = (p: Position) => Buffer.from(`${p.at}|${p.seq}`, 'utf8').toString('base64url');

/** A day that exists in years 1-9999 (Date.parse rolls 2026-02-30 over; PostgreSQL refuses it). */
const isRealTime = (at: string): boolean => {
  const millis = `${at.slice(0, 23)}Z`;
  const time = Date.parse(millis);
  return !Number.isNaN(time) && !at.startsWith('0000') && new Date(time).toISOString() === millis;
};

export function decodeCursor(cursor: string | undefined): Position | null {
  if (cursor === undefined) return null;
  const match = cursorText.exec(Buffer.from(cursor, 'base64url').toString('utf8'));
  const at = match?.[1];
  if (!match || !at || !isRealTime(at) || encodeCursor({ at, seq: Number(match[2]) }) !== cursor) {
    throw auditError('bad_cursor', 'The cursor is not one this API returned; start again without it.');
  }
  return { at, seq: Number(match[2]) };
}

const DAY_MS = 86_400_000;
const FIRST_MS = Date.parse('0001-01-01T00:00:00Z');
const END_MS = Date.parse('+010000-01-01T00:00:00Z');

/** The time range, defaulting to the last 30 days; refuses reversed and over-long ranges. */
export function timeRange(input: SearchInput, now: Date): { from: Date; to: Date } {
  // Default end: a minute ahead, so an event of this very millisecond (or from a node whose clock runs
  // slightly ahead) is included.
  const to = input.to ? new Date(input.to) : new Date(now.getTime() + 60_000);
  const from = input.from ? new Date(input.from) : new Date(to.getTime() - 30 * DAY_MS);
  if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime())) {
    throw auditError(
      'bad_filter',
      '`from` and `to` must be RFC 3339 times (a leap second, :60, is not accepted).',
    );
  }
  // PostgreSQL takes later times (PGlite refuses them, 500); 9999-12-31T23:59:59-23:59 is in 10000 (UTC).
  if (from.getTime() < FIRST_MS || to.getTime() > END_MS) {
    throw auditError(
      'bad_filter',
      '`from` and `to` must lie between 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z (years 1-9999 in ' +
        'UTC; with only one of them given, the other is 30 days or a minute away from it).',
    );
  }
  if (from.getTime() >= to.getTime()) throw auditError('bad_filter', '`from` must be before `to`.');
  if (to.getTime() - from.getTime() > MAX_RANGE_DAYS * DAY_MS) {
    throw auditError(
      'range_too_large',
      `A search covers at most ${MAX_RANGE_DAYS} days; narrow \`from\`/\`to\` and page through the rest.`,
    );
  }
  return { from, to };
}

function checkIpFilter(ip: string): string {
  const [address, prefix, extra] = ip.split('/');
  const family = isIP(address ?? '');
  const max = family === 6 ? 128 : 32;
  const okPrefix = prefix === undefined || (/^\d{1,3}$/.test(prefix) && Number(prefix) <= max);
  // Node reads a zone index (fe80::1%eth0) as IPv6; PostgreSQL's inet does not.
  if (family === 0 || ip.includes('%') || !okPrefix || extra !== undefined) {
    throw auditError('bad_filter', '`ip` must be an IP address or a CIDR block such as 203.0.113.0/24.');
  }
  return ip;
}

/**
 * `ip <<= block`, written as conditions the ip index can use. Row-level security lets an index use only
 * leakproof operators, and `<<=` is not one: it filtered every event of the time range instead (750 ms
 * for one address among 1M events). `=` and `>=`/`<=` are leakproof. In inet order, the values that
 * `<<=` a block are exactly those from the block's network to its last address as a host (the family
 * compares first, then the network bits, then the mask length), so the range is the same filter.
 * `<<=` is not repeated beside it: the planner would multiply both selectivities and, estimating a
 * handful of rows, sort a large block's events instead of walking the time index.
 */
function ipCondition(ip: string) {
  if (!ip.includes('/')) return sql`ip = ${ip}::inet`;
  return sql`ip >= network(${ip}::inet)::inet
    AND ip <= set_masklen(broadcast(${ip}::inet), CASE family(${ip}::inet) WHEN 4 THEN 32 ELSE 128 END)`;
}

/** The first string after every string that starts with `prefix` (prefixes are ASCII). */
const afterPrefix = (prefix: string) =>
  prefix.slice(0, -1) + String.fromCharCode(prefix.charCodeAt(prefix.length - 1) + 1);

/** Refuses filters no search could run with (a bad range or address), as the search itself would. */
export function checkFilters(input: SearchInput, now: Date): void {
  timeRange(input, now);
  if (input.ip !== undefined) checkIpFilter(input.ip);
}

export function conditions(tenantId: string | null, input: SearchInput, range: { from: Date; to: Date }) {
  const where: RawBuilder<unknown>[] = [
    tenantId === null ? sql`tenant_id IS NULL` : sql`tenant_id = ${tenantId}`,
    // Events from before chaining (migration 0030) have no position to page by.
    sql`chain_seq IS NOT NULL`,
    sql`occurred_at >= ${range.from}`,
    sql`occurred_at < ${range.to}`,
  ];
  if (input.actor !== undefined) where.push(sql`actor_id = ${input.actor}`);
  if (input.actorType !== undefined) where.push(sql`actor_type = ${input.actorType}`);
  if (input.action !== undefined) {
    // Range operators of text_pattern_ops, so the prefix uses the action index whatever the collation.
    where.push(sql`action ~>=~ ${input.action} AND action ~<~ ${afterPrefix(input.action)}`);
  }
  if (input.targetType !== undefined) where.push(sql`target_type = ${input.targetType}`);
  if (input.targetId !== undefined) where.push(sql`target_id = ${input.targetId}`);
  if (input.outcome !== undefined) where.push(sql`outcome = ${input.outcome}`);
  if (input.ip !== undefined) where.push(ipCondition(checkIpFilter(input.ip)));
  return sql.join(where, sql` AND `);
}

/** One page, newest first, strictly after `after` in that order. */
export async function searchPage(
  tx: Kysely<AuditTables>,
  where: RawBuilder<unknown>,
  after: Position | null,
  limit: number,
): Promise<{ events: StoredEvent[]; last: Position | null; more: boolean }> {
  const position = after
    ? sql`AND (occurred_at, chain_seq) < (${after.at}::timestamptz, ${after.seq})`
    : sql``;
  const { rows } = await sql<Parameters<typeof toStoredEvent>[0] & { at_us: string }>`
    SELECT ${eventColumns},
      to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS at_us
    FROM audit_events WHERE ${where} ${position}
    ORDER BY occurred_at DESC, chain_seq DESC LIMIT ${limit + 1}`.execute(tx);
  const page = rows.slice(0, limit);
  const tail = page.at(-1);
  return {
    events: page.map(toStoredEvent),
    last: tail ? { at: tail.at_us, seq: Number(tail.seq) } : null,
    more: rows.length > limit,
  };
}
