import { sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { type Clock, systemContext } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import { asTenantId, type Database, enterTenant, type SystemTx } from '../platform/db/index.ts';
import { currentChannels, type Route, routeOf } from './alert-channels.ts';
import type { AlertView } from './alert-engine.ts';
import { recordAuditEvent } from './record.ts';
import { backoffSeconds } from './sink-health.ts';
import type { SendHttp } from './sink-transport.ts';
import type { AuditTables } from './tables.ts';

export type SendMail = (mail: { to: string; subject: string; text: string }) => Promise<void>;

export interface AlertDeliveryDeps {
  db: Database;
  clock: Clock;
  box: SecretBox;
  send: SendHttp;
  sendMail: SendMail;
  batch?: number;
  leaseMs?: number;
  /** How long after it was first due a delivery is still retried (AUDIT_ALERT_DELIVERY_MAX_HOURS). */
  maxAgeMs?: number;
}

export const DEFAULT_ALERT_DELIVERY_MAX_AGE_MS = 72 * 3_600_000;

interface Claimed {
  alert_id: string;
  channel: 'webhook' | 'email';
  destination: string;
  tenant_id: string | null;
  payload: string;
  attempts: number;
  enqueued_at: Date;
}

type Tx = SystemTx<AuditTables>;

/** The purpose a webhook secret is sealed for: one chain's alert channel. */
export const alertSecretPurpose = (tenantId: string | null) =>
  `audit-alert-webhook:${tenantId ?? 'platform'}`;

function mailOf(alert: AlertView) {
  const scope = alert.tenantId ? `tenant ${alert.tenantId}` : 'the platform';
  return {
    subject: `[Rampart] ${alert.severity} alert: ${alert.rule}`,
    text: [
      `An anomaly rule raised an alert in ${scope}.`,
      '',
      alert.summary,
      '',
      `Alert:    ${alert.id}`,
      `Rule:     ${alert.rule} (${alert.severity})`,
      `Raised:   ${alert.raisedAt}`,
      `About:    ${alert.keys.join(', ')}`,
      `Event:    ${alert.firstEventId}`,
      '',
      'Review it in the audit trail and acknowledge it once handled.',
    ].join('\n'),
  };
}

/**
 * A failed mail's text as stored and audited (`lastError`): an SMTP reply is named by its code and the
 * command it answered, never its text, which often quotes the recipient ("550 <soc@…> unknown") and
 * would put a mail address into the chain and every SIEM; an error without a reply (a refused
 * connection) keeps its message. As the mail dispatcher logs them (src/mail/dispatcher.ts).
 */
function mailFailureText(error: unknown): string {
  const e = error as { code?: unknown; responseCode?: unknown; command?: unknown; message?: unknown };
  if (typeof e?.responseCode !== 'number') return String(e?.message ?? error).slice(0, 300) || 'send failed';
  const command = typeof e.command === 'string' ? ` to ${e.command.split(' ')[0]}` : '';
  return `SMTP ${e.responseCode}${command}${typeof e.code === 'string' ? ` (${e.code})` : ''}`;
}

const whereRow = (row: Claimed) =>
  sql`alert_id = ${row.alert_id} AND channel = ${row.channel} AND destination = ${row.destination}`;

/**
 * Delivers raised alerts to their channels, at least once: a claim leases the rows and commits before
 * any network call; a failure is retried with the SIEM forwarder's backoff. A webhook carries the alert
 * id as `webhook-id` (Standard Webhooks), so a receiver drops a repeat. Unlike SIEM forwarding, an alert
 * delivery gives up: one still failing `maxAgeMs` after it was first due is marked failed and audited
 * (an alert days late is no longer a page worth sending, and a queue of them would only grow). Each
 * attempt goes to the chain's channels as they are set then (alert-channels.ts), never to where the
 * delivery was queued: one whose channel was removed is dropped unsent and audited.
 */
export function createAlertDelivery(deps: AlertDeliveryDeps) {
  const batch = deps.batch ?? 50;
  const leaseMs = deps.leaseMs ?? 60_000;
  const maxAgeMs = deps.maxAgeMs ?? DEFAULT_ALERT_DELIVERY_MAX_AGE_MS;
  const context = systemContext('audit-alerts');

  const claim = (now: Date) =>
    deps.db.withSystem(async (tx: Tx) => {
      // A MATERIALIZED CTE is evaluated once. A plain subquery in FROM may be scanned again for the
      // join; each rescan skips the rows this statement already updated and locks the next ones, so a
      // claim could lease far more than `batch` rows (PGlite was seen leasing 32 with a batch of 5).
      const { rows } = await sql<Claimed>`
        WITH due AS MATERIALIZED (
          SELECT alert_id, channel, destination FROM audit_alert_deliveries
          WHERE next_attempt_at <= ${now} AND failed_at IS NULL ORDER BY next_attempt_at LIMIT ${batch}
          FOR UPDATE SKIP LOCKED)
        UPDATE audit_alert_deliveries d SET next_attempt_at = ${new Date(now.getTime() + leaseMs)},
          attempts = d.attempts + 1
        FROM due
        WHERE d.alert_id = due.alert_id AND d.channel = due.channel AND d.destination = due.destination
        RETURNING d.alert_id, d.channel, d.destination, d.tenant_id, d.payload::text AS payload,
          d.attempts, d.enqueued_at`.execute(tx);
      return rows;
    });

  /**
   * Marks a delivery failed for good, in one transaction with `audit.alert.delivery_failed` in the
   * alert's chain. Returns false when another node settled it meanwhile (its lease had run out).
   */
  const giveUp = (row: Claimed, route: Route, error: string, now: Date) =>
    deps.db.withSystem(async (tx: Tx) => {
      const updated = await sql`UPDATE audit_alert_deliveries SET failed_at = ${now}, last_error = ${error}
        WHERE ${whereRow(row)} AND failed_at IS NULL`.execute(tx);
      if (updated.numAffectedRows !== 1n) return false;
      // The queue is visible only with no tenant set, so the tenant's chain is entered after the update.
      const chainTx =
        row.tenant_id === null ? tx : await enterTenant<AuditTables>(tx, asTenantId(row.tenant_id));
      await recordAuditEvent<AuditTables>(chainTx, deps.clock, context, {
        tenantId: row.tenant_id,
        action: 'audit.alert.delivery_failed',
        outcome: 'failure',
        target: { type: 'audit_alert', id: row.alert_id },
        details: {
          channel: row.channel,
          // A webhook URL is audited with the settings already; mail addresses only ever as a count.
          webhookUrl: route.channel === 'webhook' ? route.url : null,
          attempts: row.attempts,
          firstDueAt: new Date(row.enqueued_at).toISOString(),
          lastError: error,
        },
      });
      return true;
    });

  /**
   * Drops a delivery whose channel the chain's settings no longer name, unsent, in one transaction with
   * `audit.alert.delivery_dropped` in the alert's chain. False when another node settled it meanwhile.
   */
  const drop = (row: Claimed) =>
    deps.db.withSystem(async (tx: Tx) => {
      const deleted = await sql`DELETE FROM audit_alert_deliveries
        WHERE ${whereRow(row)} AND failed_at IS NULL`.execute(tx);
      if (deleted.numAffectedRows !== 1n) return false;
      const chainTx =
        row.tenant_id === null ? tx : await enterTenant<AuditTables>(tx, asTenantId(row.tenant_id));
      await recordAuditEvent<AuditTables>(chainTx, deps.clock, context, {
        tenantId: row.tenant_id,
        action: 'audit.alert.delivery_dropped',
        outcome: 'success',
        target: { type: 'audit_alert', id: row.alert_id },
        details: {
          channel: row.channel,
          reason: 'channel_removed',
          // The URL it was queued for (audited with the settings already); a mail address never.
          webhookUrl: row.channel === 'webhook' ? row.destination : null,
          attempts: row.attempts,
          firstDueAt: new Date(row.enqueued_at).toISOString(),
        },
      });
      return true;
    });

  async function deliver(row: Claimed, route: Route, now: Date): Promise<string | null> {
    const alert = JSON.parse(row.payload) as AlertView;
    if (route.channel === 'email') {
      try {
        await deps.sendMail({ to: route.to, ...mailOf(alert) });
        return null;
      } catch (error) {
        return mailFailureText(error);
      }
    }
    try {
      if (!route.secretSealed) return 'no signing secret';
      const secret = deps.box.open(route.secretSealed, alertSecretPurpose(row.tenant_id));
      const body = JSON.stringify({ type: 'audit.alert.raised', timestamp: now.toISOString(), data: alert });
      const res = await deps.send({
        url: route.url,
        method: 'POST',
        ...(row.tenant_id ? { tenantId: row.tenant_id } : {}),
        headers: {
          'content-type': 'application/json',
          'webhook-id': alert.id,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': new Webhook(secret).sign(alert.id, now, body),
        },
        body,
        mode: 'deliver',
        // A tenant's admins set its webhook: only OUTBOUND_TENANT_ALLOW_PRIVATE admits a private address.
        chosenBy: row.tenant_id === null ? 'operator' : 'tenant',
      });
      return res.status >= 200 && res.status < 300 ? null : `HTTP ${res.status}`;
    } catch (error) {
      return (error as Error).message.slice(0, 300) || 'send failed';
    }
  }

  /** Schedules the next attempt after the backoff, but not after the deadline: the last try is on time. */
  const retryLater = (tx: Tx, row: Claimed, error: string, now: Date, deadline: number) => {
    const next = new Date(Math.min(now.getTime() + backoffSeconds(row.attempts) * 1000, deadline));
    return sql`UPDATE audit_alert_deliveries SET next_attempt_at = ${next}, last_error = ${error}
      WHERE ${whereRow(row)}`.execute(tx);
  };

  return {
    async deliverDue(): Promise<{ delivered: number; failed: number; gaveUp: number; dropped: number }> {
      const now = deps.clock.now();
      const claimed = await claim(now);
      if (claimed.length === 0) return { delivered: 0, failed: 0, gaveUp: 0, dropped: 0 };
      const channels = await currentChannels(
        deps.db,
        claimed.map((row) => row.tenant_id),
      );
      const routed = claimed.map((row) => ({ row, route: routeOf(channels, row) }));
      const outcomes = await Promise.all(
        routed.flatMap(({ row, route }) =>
          route ? [deliver(row, route, now).then((error) => ({ row, route, error }))] : [],
        ),
      );
      const expired: { row: Claimed; route: Route; error: string }[] = [];
      await deps.db.withSystem(async (tx: Tx) => {
        for (const { row, route, error } of outcomes) {
          const deadline = new Date(row.enqueued_at).getTime() + maxAgeMs;
          if (error === null) {
            await sql`DELETE FROM audit_alert_deliveries WHERE ${whereRow(row)}`.execute(tx);
          } else if (now.getTime() >= deadline) {
            expired.push({ row, route, error });
          } else {
            await retryLater(tx, row, error, now, deadline);
          }
        }
      });
      let gaveUp = 0;
      for (const { row, route, error } of expired) if (await giveUp(row, route, error, now)) gaveUp += 1;
      let dropped = 0;
      for (const { row, route } of routed) if (!route && (await drop(row))) dropped += 1;
      const delivered = outcomes.filter((o) => o.error === null).length;
      return { delivered, failed: outcomes.length - delivered, gaveUp, dropped };
    },
  };
}

export type AlertDelivery = ReturnType<typeof createAlertDelivery>;
