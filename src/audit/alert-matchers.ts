import { type Kysely, type RawBuilder, sql } from 'kysely';
import {
  isPrivileged,
  type RuleEvent,
  type RuleId,
  type RuleSettings,
  type WorkingHours,
  withinWorkingHours,
} from './alert-rules.ts';
import { chainFilter } from './store.ts';
import type { AuditTables } from './tables.ts';

/** One suspicious finding: what it is about (keys), the events behind it and a sentence for people. */
export interface Match {
  rule: RuleId;
  keys: string[];
  events: RuleEvent[];
  summary: string;
}

export interface MatchContext {
  tx: Kysely<AuditTables>;
  tenantId: string | null;
  rules: RuleSettings;
  workingHours: WorkingHours | null;
  /** Whether a tenant user is staff (holds a role beyond member); read in the evaluator's transaction. */
  isStaff(tx: Kysely<AuditTables>, userId: string): Promise<boolean>;
}

const signInActions = [
  'identity.signin.password',
  'identity.signin.second_factor',
  'identity.operator.signin',
];
/** Audited bulk reads of data. Single reads are not audit events; these are what "mass export" counts. */
export const exportActions = ['audit.trail.exported'];
/** Per-node, per-minute counts of refused requests (Protect writes them; samples are not counted). */
const blockActions = ['protect.blocks.counted'];
const readActions = ['audit.reads.counted'];

/** A key an event is counted under, its SQL twin, and the threshold that applies to it. */
interface Scope {
  label: string;
  keyOf(e: RuleEvent): string | null;
  sqlKey: RawBuilder<string>;
  threshold(rules: RuleSettings): number;
}

const scopes = {
  account: (threshold: Scope['threshold']): Scope => ({
    label: 'account',
    keyOf: (e) => (e.targetType && e.targetId ? `account:${e.targetType}:${e.targetId}` : null),
    sqlKey: sql<string>`'account:' || target_type || ':' || target_id`,
    threshold,
  }),
  ip: (threshold: Scope['threshold']): Scope => ({
    label: 'address',
    keyOf: (e) => (e.ip ? `ip:${e.ip}` : null),
    sqlKey: sql<string>`'ip:' || host(ip)`,
    threshold,
  }),
  chain: (threshold: Scope['threshold']): Scope => ({
    label: 'whole trail',
    keyOf: () => 'chain',
    sqlKey: sql<string>`'chain'`,
    threshold,
  }),
  actor: (threshold: Scope['threshold']): Scope => ({
    label: 'actor',
    keyOf: (e) => (e.actorId ? `actor:${e.actorType}:${e.actorId}` : null),
    sqlKey: sql<string>`'actor:' || actor_type || ':' || actor_id`,
    threshold,
  }),
};

/** A rule that counts matching events per key in a sliding window and fires at a threshold. */
interface ThresholdRule {
  rule: RuleId;
  actions: string[] | null;
  outcome: string | null;
  windowSeconds(rules: RuleSettings): number;
  scopes: Scope[];
  /** What one event weighs: 1, or the `count` it carries (aggregated block events). */
  weighted: boolean;
  noun: string;
}

const thresholdRules: ThresholdRule[] = [
  {
    rule: 'signin.failures',
    actions: signInActions,
    outcome: 'failure',
    windowSeconds: (r) => r['signin.failures'].windowSeconds,
    scopes: [
      scopes.account((r) => r['signin.failures'].perAccount),
      scopes.ip((r) => r['signin.failures'].perIp),
      scopes.chain((r) => r['signin.failures'].perTenant),
    ],
    weighted: false,
    noun: 'failed sign-ins',
  },
  {
    rule: 'export.mass',
    actions: exportActions,
    outcome: 'success',
    windowSeconds: (r) => r['export.mass'].windowSeconds,
    scopes: [scopes.actor((r) => r['export.mass'].threshold)],
    weighted: false,
    noun: 'exports',
  },
  {
    rule: 'read.mass',
    actions: readActions,
    outcome: 'success',
    windowSeconds: (r) => r['read.mass'].windowSeconds,
    scopes: [scopes.actor((r) => r['read.mass'].threshold)],
    weighted: true,
    noun: 'reads',
  },
  {
    rule: 'access.denied_burst',
    actions: null,
    outcome: 'denied',
    windowSeconds: (r) => r['access.denied_burst'].windowSeconds,
    scopes: [scopes.actor((r) => r['access.denied_burst'].threshold)],
    weighted: false,
    noun: 'refused requests',
  },
  {
    rule: 'protect.blocks',
    actions: blockActions,
    outcome: null,
    windowSeconds: (r) => r['protect.blocks'].windowSeconds,
    scopes: [scopes.chain((r) => r['protect.blocks'].threshold)],
    weighted: true,
    noun: 'blocked requests',
  },
];

const selects = (rule: ThresholdRule, e: RuleEvent) =>
  (rule.actions === null || rule.actions.includes(e.action)) &&
  (rule.outcome === null || e.outcome === rule.outcome);

/** Events (weighted) per key in the window ending at `to`, for the keys given. */
async function countByKey(
  ctx: MatchContext,
  rule: ThresholdRule,
  scope: Scope,
  keys: string[],
  to: Date,
): Promise<Map<string, number>> {
  const from = new Date(to.getTime() - rule.windowSeconds(ctx.rules) * 1000);
  const weight = rule.weighted
    ? sql`sum(coalesce((details->>'count')::numeric, 1))::float8`
    : sql`count(*)::float8`;
  const { rows } = await sql<{ key: string; n: number }>`
    SELECT ${scope.sqlKey} AS key, ${weight} AS n FROM audit_events
    WHERE ${chainFilter(ctx.tenantId)} AND occurred_at > ${from} AND occurred_at <= ${to}
      ${rule.actions ? sql`AND action IN (${sql.join(rule.actions)})` : sql``}
      ${rule.outcome ? sql`AND outcome = ${rule.outcome}` : sql``}
      AND ${scope.sqlKey} IN (${sql.join(keys)})
    GROUP BY 1`.execute(ctx.tx);
  return new Map(rows.map((r) => [r.key, Number(r.n)]));
}

async function matchThreshold(ctx: MatchContext, rule: ThresholdRule, events: RuleEvent[]): Promise<Match[]> {
  const selected = events.filter((e) => selects(rule, e));
  const last = selected.at(-1);
  if (!last) return [];
  // One count per scope and batch: the window ends at the batch's last matching event.
  const over = new Map<string, { scope: Scope; n: number }>();
  for (const scope of rule.scopes) {
    const keys = [...new Set(selected.map((e) => scope.keyOf(e)).filter((k) => k !== null))];
    if (keys.length === 0) continue;
    const counts = await countByKey(ctx, rule, scope, keys, last.occurredAt);
    for (const [key, n] of counts) if (n >= scope.threshold(ctx.rules)) over.set(key, { scope, n });
  }
  if (over.size === 0) return [];
  const minutes = Math.round(rule.windowSeconds(ctx.rules) / 60);
  const matches: Match[] = [];
  for (const e of selected) {
    const scoped = rule.scopes.map((s) => s.keyOf(e)).filter((k): k is string => k !== null);
    const keys = scoped.filter((k) => over.has(k));
    if (keys.length === 0) continue;
    const parts = keys.map((k) => {
      const { scope, n } = over.get(k) as { scope: Scope; n: number };
      return `${n} for ${scope.label}${k === 'chain' ? '' : ` ${k.slice(k.indexOf(':') + 1)}`}`;
    });
    matches.push({
      rule: rule.rule,
      // A rule counted over the whole chain too has one incident in it at a time, whatever crossed first:
      // the keys over a threshold depend on where the evaluator's runs cut a burst (evaluated as it
      // arrived, five addresses crossing one after another were five alerts; evaluated after it, one,
      // joined by `chain`), so every match of such a rule carries `chain`, which joins them either way.
      keys: scoped.includes('chain') ? scoped.filter((k) => over.has(k) || k === 'chain') : keys,
      events: [e],
      summary: `Too many ${rule.noun} within ${minutes} min: ${parts.join(', ')}.`,
    });
  }
  return matches;
}

/**
 * The device a user agent names, without its version numbers: `Chrome/120.0.6099.71` and `Chrome/121.0.0.0`
 * are the same browser after an update, not a new device; another browser or system still is. The same
 * pattern runs in SQL (regexp_replace) over the stored agents, so both sides compare alike.
 */
const VERSION_RUNS = '[0-9][0-9._]*';
const versionRuns = new RegExp(VERSION_RUNS, 'g');
export const deviceOf = (userAgent: string | null) =>
  userAgent === null ? null : userAgent.replace(versionRuns, '#');

/** A staff member (operator, or tenant user beyond member) signed in from an address or device not seen before. */
async function matchNewLocation(ctx: MatchContext, e: RuleEvent): Promise<Match | null> {
  if (e.outcome !== 'success' || !e.ip || !e.targetType || !e.targetId) return null;
  if (e.action !== 'identity.signin.password' && e.action !== 'identity.operator.signin') return null;
  const staff =
    e.targetType === 'operator' || (e.targetType === 'user' && (await ctx.isStaff(ctx.tx, e.targetId)));
  if (!staff) return null;
  const from = new Date(e.occurredAt.getTime() - ctx.rules['signin.new_location'].lookbackDays * 86_400_000);
  const { rows } = await sql<{ seen: number; same_ip: number; same_device: number }>`
    SELECT count(*)::int AS seen, count(*) FILTER (WHERE host(ip) = ${e.ip})::int AS same_ip,
      count(*) FILTER (WHERE regexp_replace(user_agent, ${VERSION_RUNS}, '#', 'g')
        IS NOT DISTINCT FROM ${deviceOf(e.userAgent)})::int AS same_device
    FROM audit_events
    WHERE ${chainFilter(ctx.tenantId)} AND target_type = ${e.targetType} AND target_id = ${e.targetId}
      AND occurred_at > ${from} AND action = ${e.action} AND outcome = 'success' AND chain_seq < ${e.seq}`.execute(
    ctx.tx,
  );
  const row = rows[0];
  // The first sign-in ever has nothing to compare with: not an anomaly.
  if (!row || row.seen === 0 || (row.same_ip > 0 && row.same_device > 0)) return null;
  const what = [
    row.same_ip === 0 ? `new address ${e.ip}` : null,
    row.same_device === 0 ? 'a new device' : null,
  ]
    .filter(Boolean)
    .join(' and ');
  return {
    rule: 'signin.new_location',
    keys: [`actor:${e.targetType}:${e.targetId}`],
    events: [e],
    summary: `Staff sign-in of ${e.targetType} ${e.targetId} from ${what}.`,
  };
}

/** Refusals of the checkpoint job about the chain itself, not a MAC (checkpoint.ts, RefusalReason). */
const spanReasons = new Set([
  'event_missing',
  'event_modified',
  'link_broken',
  'head_mismatch',
  'start_missing',
]);

function matchEvent(ctx: MatchContext, e: RuleEvent): Match | null {
  const { rules } = ctx;
  if (rules['elevation.used'].enabled && e.actorElevationId) {
    return {
      rule: 'elevation.used',
      keys: [`elevation:${e.actorElevationId}`],
      events: [e],
      summary: `Operator ${e.actorId} acted under elevation ${e.actorElevationId} (${e.action}).`,
    };
  }
  if (rules['protect.incident'].enabled && e.action === 'protect.outbound.refused') {
    // A tenant's refusals are one incident per tenant (its admin chose the URL, and every redirect may
    // name a new host): keyed by host they would page the platform once per hostname.
    const tenant = typeof e.details.tenant === 'string' ? e.details.tenant : null;
    const about = tenant ? `tenant:${tenant}` : String(e.details.host);
    return {
      rule: 'protect.incident',
      keys: [`outbound:${String(e.details.purpose)}:${about}`],
      events: [e],
      summary: `Outbound ${String(e.details.purpose)} request${tenant ? ` for tenant ${tenant}` : ''} to ${String(e.details.host)} refused (${String(e.details.reason)}).`,
    };
  }
  if (rules['protect.incident'].enabled && e.action === 'audit.sink.overflowed') {
    return {
      rule: 'protect.incident',
      keys: [`sink:${e.targetId}`],
      events: [e],
      summary: `SIEM sink ${e.targetId} is overflowing: its oldest undelivered events are being dropped (${String(e.details.dropped)} so far).`,
    };
  }
  if (rules['protect.incident'].enabled && e.action === 'audit.checkpoint.refused') {
    return {
      rule: 'protect.incident',
      keys: [`chain:${e.targetId}`],
      events: [e],
      summary: spanReasons.has(String(e.details.reason))
        ? `Audit chain ${e.targetId} is not being signed: at seq ${String(e.details.seq)} its events do not lead to its head (${String(e.details.reason)}; run rampart audit verify).`
        : `Audit chain ${e.targetId} is not being signed: the event at seq ${String(e.details.seq)} has no matching MAC (forged; run rampart audit verify).`,
    };
  }
  if (rules['protect.incident'].enabled && e.action === 'protect.ratelimit.store_unavailable') {
    return {
      rule: 'protect.incident',
      keys: [`store:${String(e.details.store)}`],
      events: [e],
      summary: `Rate-limit store ${String(e.details.store)} unreachable; ${String(e.details.routeClass)} requests fail ${String(e.details.mode)}.`,
    };
  }
  return null;
}

function matchOffHours(ctx: MatchContext, e: RuleEvent): Match | null {
  if (!ctx.rules['privileged.off_hours'].enabled || !ctx.workingHours || !isPrivileged(e)) return null;
  if (withinWorkingHours(ctx.workingHours, e.occurredAt)) return null;
  return {
    rule: 'privileged.off_hours',
    keys: [`actor:${e.actorType}:${e.actorId}`],
    events: [e],
    summary: `Privileged action ${e.action} by ${e.actorType} ${e.actorId} outside working hours (${e.occurredAt.toISOString()}).`,
  };
}

/**
 * isStaff answered once per user and batch: a batch holds each sign-in of the last second, mostly of
 * few users, and each lookup is a statement. Within one batch's transaction the answer cannot change.
 */
function staffOncePerUser(isStaff: MatchContext['isStaff']): MatchContext['isStaff'] {
  const known = new Map<string, Promise<boolean>>();
  return (tx, userId) => {
    let answer = known.get(userId);
    if (!answer) {
      answer = isStaff(tx, userId);
      known.set(userId, answer);
    }
    return answer;
  };
}

/** Every match of every enabled rule in a batch of new events (the alerts' own events excluded). */
export async function findMatches(batchCtx: MatchContext, batch: RuleEvent[]): Promise<Match[]> {
  const ctx = { ...batchCtx, isStaff: staffOncePerUser(batchCtx.isStaff) };
  const events = batch.filter((e) => !e.action.startsWith('audit.alert.'));
  const matches: Match[] = [];
  for (const rule of thresholdRules) {
    if (ctx.rules[rule.rule].enabled) matches.push(...(await matchThreshold(ctx, rule, events)));
  }
  for (const e of events) {
    const single = matchEvent(ctx, e);
    if (single) matches.push(single);
    const offHours = matchOffHours(ctx, e);
    if (offHours) matches.push(offHours);
    if (ctx.rules['signin.new_location'].enabled) {
      const located = await matchNewLocation(ctx, e);
      if (located) matches.push(located);
    }
  }
  return mergeOverlapping(matches);
}

/** Matches of one rule that share a key become one (an incident seen from several sides). */
export function mergeOverlapping(matches: Match[]): Match[] {
  const merged: Match[] = [];
  for (const match of matches) {
    const into = merged.find((m) => m.rule === match.rule && m.keys.some((k) => match.keys.includes(k)));
    if (!into) {
      merged.push({ ...match, keys: [...match.keys], events: [...match.events] });
      continue;
    }
    for (const k of match.keys) if (!into.keys.includes(k)) into.keys.push(k);
    into.events.push(...match.events);
    into.summary = match.summary;
  }
  // A later match may connect two earlier ones: repeat until nothing merges.
  return merged.length < matches.length ? mergeOverlapping(merged) : merged;
}
