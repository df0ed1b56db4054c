import { randomUUID } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { type Clock, systemContext } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { findMatches, type Match, type MatchContext } from './alert-matchers.ts';
import { effectiveRules, type RuleEvent, ruleSeverity, type WorkingHours } from './alert-rules.ts';
import { chainName } from './chain.ts';
import { recordAuditEvent } from './record.ts';
import { chainFilter, inChain } from './store.ts';
import type { AuditEventsTable, AuditTables } from './tables.ts';

type Tx = Kysely<AuditTables>;

const BATCH = 500;
/** An acknowledged alert still absorbs matches this long after its last one, so a person's ack of an
 * ongoing burst does not immediately raise it again. */
const ACK_QUIET_MS = 15 * 60_000;

/** An alert as the API shows it and as webhooks and mails carry it. */
export interface AlertView {
  id: string;
  tenantId: string | null;
  rule: string;
  severity: 'low' | 'medium' | 'high';
  keys: string[];
  summary: string;
  status: 'open' | 'acknowledged';
  occurrences: number;
  firstEventId: string;
  lastEventId: string;
  raisedAt: string;
  lastSeenAt: string;
  acknowledgedAt: string | null;
  acknowledgedBy: string | null;
  acknowledgementNote: string | null;
}

export interface AlertRow {
  id: string;
  tenant_id: string | null;
  rule: string;
  severity: AlertView['severity'];
  keys: string[];
  summary: string;
  status: AlertView['status'];
  occurrences: number;
  first_event_id: string;
  last_event_id: string;
  raised_at: Date;
  last_seen_at: Date;
  acknowledged_at: Date | null;
  acknowledged_by: string | null;
  acknowledgement_note: string | null;
}

export const toAlertView = (r: AlertRow): AlertView => ({
  id: r.id,
  tenantId: r.tenant_id,
  rule: r.rule,
  severity: r.severity,
  keys: r.keys,
  summary: r.summary,
  status: r.status,
  occurrences: r.occurrences,
  firstEventId: r.first_event_id,
  lastEventId: r.last_event_id,
  raisedAt: r.raised_at.toISOString(),
  lastSeenAt: r.last_seen_at.toISOString(),
  acknowledgedAt: r.acknowledged_at?.toISOString() ?? null,
  acknowledgedBy: r.acknowledged_by,
  acknowledgementNote: r.acknowledgement_note,
});

interface SettingsRow {
  rules: unknown;
  working_hours: unknown;
  emails: string[];
  webhook_url: string | null;
  webhook_secret_sealed: string | null;
}

export async function readAlertSettings(
  tx: Tx,
  tenantId: string | null,
  /** Held FOR UPDATE until the transaction ends (a writer's "before"). */
  lock = false,
): Promise<SettingsRow | undefined> {
  const { rows } = await sql<SettingsRow>`
    SELECT rules, working_hours, emails, webhook_url, webhook_secret_sealed FROM audit_alert_settings
    WHERE ${chainFilter(tenantId)} ${lock ? sql`FOR UPDATE` : sql``}`.execute(tx);
  return rows[0];
}

/** A jsonb value as read: an object, or its text where an engine hands jsonb back as text. */
export const parsed = (value: unknown) => (typeof value === 'string' ? JSON.parse(value) : value);

/** The columns the rules read; `ip` in host form (`host(ip)`: no prefix length, the form keys use). */
type EventRecord = Omit<
  AuditEventsTable,
  'tenant_id' | 'request_id' | 'chain_seq' | 'prev_hash' | 'hash' | 'details'
> & {
  seq: string;
  details: unknown;
};

async function eventsAfter(tx: Tx, tenantId: string | null, after: number): Promise<RuleEvent[]> {
  const { rows } = await sql<EventRecord>`
    SELECT id, chain_seq::text AS seq, occurred_at, actor_type, actor_id, actor_elevation_id, action,
      target_type, target_id, outcome, host(ip) AS ip, user_agent, details
    FROM audit_events WHERE ${chainFilter(tenantId)} AND chain_seq > ${after}
    ORDER BY chain_seq LIMIT ${BATCH}`.execute(tx);
  return rows.map((r) => ({
    id: r.id,
    seq: Number(r.seq),
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
    details: (parsed(r.details) ?? {}) as Record<string, unknown>,
  }));
}

/** Locks the chain's cursor (creating it at the chain's start) and returns how far the rules have read. */
async function lockCursor(tx: Tx, tenantId: string | null): Promise<number> {
  const chain = chainName(tenantId);
  await sql`INSERT INTO audit_alert_cursors (chain, tenant_id, seq) VALUES (${chain}, ${tenantId}, 0)
    ON CONFLICT DO NOTHING`.execute(tx);
  const { rows } = await sql<{ seq: string }>`
    SELECT seq::text AS seq FROM audit_alert_cursors WHERE chain = ${chain} FOR UPDATE`.execute(tx);
  return Number(rows[0]?.seq ?? 0);
}

/**
 * A delivery as queued: the channel and the destination it was queued for. The delivery job sends it by
 * the chain's settings at send time (alert-channels.ts), so no copy of the webhook secret is queued.
 */
export interface Delivery {
  channel: 'webhook' | 'email';
  destination: string;
}

export interface EngineDeps {
  db: Database;
  clock: Clock;
  isStaff: MatchContext['isStaff'];
  onRaised?: (alert: AlertView) => void;
}

/**
 * The keys one alert keeps. A tenant-wide burst (every match carries `chain`) adds each account and address
 * it touches; past this many the first ones are kept and the rest only counted in `occurrences`, so the row
 * and its overlap test stay small under a credential-stuffing run.
 */
export const MAX_ALERT_KEYS = 200;

/**
 * `occurrences` saturates at the column's maximum (integer): an alert that has counted that many has made
 * its point, and an overflow would fail the chain's evaluation on every run, silencing all its rules.
 */
export const MAX_OCCURRENCES = 2_147_483_647;

/**
 * Raises a new alert for the match, or adds it to the alert it belongs to: one of the same rule whose
 * keys overlap, open, or acknowledged but still active. Returns the alert when it is new.
 */
async function raiseOrAdd(
  tx: Tx,
  tenantId: string | null,
  match: Match,
  now: Date,
): Promise<AlertRow | null> {
  const first = match.events[0] as RuleEvent;
  const last = match.events.at(-1) as RuleEvent;
  const { rows: existing } = await sql<{ id: string }>`
    SELECT id FROM audit_alerts
    WHERE ${chainFilter(tenantId)} AND rule = ${match.rule} AND keys && ${sql.val(match.keys)}::text[]
      AND (status = 'open' OR last_seen_at > ${new Date(now.getTime() - ACK_QUIET_MS)})
    ORDER BY raised_at DESC LIMIT 1 FOR UPDATE`.execute(tx);
  const found = existing[0];
  if (found) {
    await sql`UPDATE audit_alerts SET
        keys = (SELECT array_agg(k ORDER BY first) FROM (
          SELECT k, min(n) AS first FROM unnest(keys || ${sql.val(match.keys)}::text[]) WITH ORDINALITY AS u(k, n)
          GROUP BY k ORDER BY min(n) LIMIT ${MAX_ALERT_KEYS}) AS kept),
        occurrences = least(occurrences::bigint + ${match.events.length}, ${MAX_OCCURRENCES}),
        last_event_id = ${last.id},
        last_seen_at = ${now}, summary = ${match.summary}
      WHERE id = ${found.id}`.execute(tx);
    return null;
  }
  const { rows } = await sql<AlertRow>`
    INSERT INTO audit_alerts (id, tenant_id, rule, severity, keys, summary, status, occurrences,
      first_event_id, last_event_id, raised_at, last_seen_at)
    VALUES (${randomUUID()}, ${tenantId}, ${match.rule}, ${ruleSeverity[match.rule]},
      ${sql.val(match.keys.slice(0, MAX_ALERT_KEYS))}::text[], ${match.summary}, 'open', ${match.events.length}, ${first.id}, ${last.id},
      ${now}, ${now})
    RETURNING *`.execute(tx);
  return rows[0] as AlertRow;
}

async function enqueueDeliveries(tx: Tx, alert: AlertView, deliveries: Delivery[], now: Date) {
  for (const d of deliveries) {
    await sql`INSERT INTO audit_alert_deliveries (alert_id, channel, destination, tenant_id, payload,
        enqueued_at, next_attempt_at)
      VALUES (${alert.id}, ${d.channel}, ${d.destination}, ${alert.tenantId},
        ${JSON.stringify(alert)}::jsonb, ${now}, ${now})`.execute(tx);
  }
}

const deliveriesOf = (settings: SettingsRow | undefined): Delivery[] => [
  ...(settings?.webhook_url ? [{ channel: 'webhook' as const, destination: settings.webhook_url }] : []),
  ...(settings?.emails ?? []).map((to) => ({ channel: 'email' as const, destination: to })),
];

const raisedByRule = new Map<string, number>();
/** Alerts this process raised, per rule: the source of the alerts-by-rule metric. */
export const alertsRaisedByRule = (): ReadonlyMap<string, number> => raisedByRule;

/** Reads each chain's new events once, across nodes (the cursor row lock), and raises alerts. */
export function createAlertEngine(deps: EngineDeps) {
  const context = systemContext('audit-alerts');

  /** One batch of one chain, in one transaction: the alerts and the cursor move together. */
  const evaluateBatch = (tenantId: string | null) =>
    inChain(deps.db, tenantId, async (tx) => {
      const after = await lockCursor(tx, tenantId);
      const events = await eventsAfter(tx, tenantId, after);
      const lastEvent = events.at(-1);
      if (!lastEvent) return { events: 0, raised: [] as AlertView[] };
      const settings = await readAlertSettings(tx, tenantId);
      const ctx: MatchContext = {
        tx,
        tenantId,
        rules: effectiveRules(parsed(settings?.rules)),
        workingHours: (parsed(settings?.working_hours) ?? null) as WorkingHours | null,
        isStaff: deps.isStaff,
      };
      const raised: AlertView[] = [];
      const now = deps.clock.now();
      for (const match of await findMatches(ctx, events)) {
        const row = await raiseOrAdd(tx, tenantId, match, now);
        if (!row) continue;
        const alert = toAlertView(row);
        await recordAuditEvent(tx, deps.clock, context, {
          tenantId,
          action: 'audit.alert.raised',
          outcome: 'success',
          target: { type: 'audit_alert', id: alert.id },
          details: { rule: alert.rule, severity: alert.severity, summary: alert.summary.slice(0, 2000) },
        });
        await enqueueDeliveries(tx, alert, deliveriesOf(settings), now);
        raised.push(alert);
      }
      await sql`UPDATE audit_alert_cursors SET seq = ${lastEvent.seq}
        WHERE chain = ${chainName(tenantId)}`.execute(tx);
      return { events: events.length, raised };
    });

  return {
    /** Evaluates everything new in one chain; returns the alerts raised. */
    async evaluateChain(tenantId: string | null): Promise<AlertView[]> {
      const raised: AlertView[] = [];
      for (;;) {
        const batch = await evaluateBatch(tenantId);
        raised.push(...batch.raised);
        if (batch.events < BATCH) break;
      }
      for (const alert of raised) {
        raisedByRule.set(alert.rule, (raisedByRule.get(alert.rule) ?? 0) + 1);
        deps.onRaised?.(alert);
      }
      return raised;
    },
  };
}

export type AlertEngine = ReturnType<typeof createAlertEngine>;
