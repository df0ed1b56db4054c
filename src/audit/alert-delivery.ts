import { sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import type { Clock } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import type { AlertView } from './alert-engine.ts';
import { backoffSeconds, type SendHttp } from './forward.ts';
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
}

interface Claimed {
  alert_id: string;
  channel: 'webhook' | 'email';
  destination: string;
  tenant_id: string | null;
  secret_sealed: string | null;
  payload: string;
  attempts: number;
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
 * Delivers raised alerts to their channels, at least once: a claim leases the rows and commits before
 * any network call; a failure is retried with the SIEM forwarder's backoff. A webhook carries the alert
 * id as `webhook-id` (Standard Webhooks), so a receiver drops a repeat.
 */
export function createAlertDelivery(deps: AlertDeliveryDeps) {
  const batch = deps.batch ?? 50;
  const leaseMs = deps.leaseMs ?? 60_000;

  const claim = (now: Date) =>
    deps.db.withSystem(async (tx: Tx) => {
      const { rows } = await sql<Claimed>`
        UPDATE audit_alert_deliveries d SET next_attempt_at = ${new Date(now.getTime() + leaseMs)},
          attempts = d.attempts + 1
        FROM (SELECT alert_id, channel, destination FROM audit_alert_deliveries
              WHERE next_attempt_at <= ${now} ORDER BY next_attempt_at LIMIT ${batch}
              FOR UPDATE SKIP LOCKED) due
        WHERE d.alert_id = due.alert_id AND d.channel = due.channel AND d.destination = due.destination
        RETURNING d.alert_id, d.channel, d.destination, d.tenant_id, d.secret_sealed, d.payload::text AS payload,
          d.attempts`.execute(tx);
      return rows;
    });

  async function deliver(row: Claimed, now: Date): Promise<string | null> {
    const alert = JSON.parse(row.payload) as AlertView;
    try {
      if (row.channel === 'email') {
        await deps.sendMail({ to: row.destination, ...mailOf(alert) });
        return null;
      }
      if (!row.secret_sealed) return 'no signing secret';
      const secret = deps.box.open(row.secret_sealed, alertSecretPurpose(row.tenant_id));
      const body = JSON.stringify({ type: 'audit.alert.raised', timestamp: now.toISOString(), data: alert });
      const res = await deps.send({
        url: row.destination,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'webhook-id': alert.id,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': new Webhook(secret).sign(alert.id, now, body),
        },
        body,
      });
      return res.status >= 200 && res.status < 300 ? null : `HTTP ${res.status}`;
    } catch (error) {
      return (error as Error).message.slice(0, 300) || 'send failed';
    }
  }

  return {
    async deliverDue(): Promise<{ delivered: number; failed: number }> {
      const now = deps.clock.now();
      const claimed = await claim(now);
      if (claimed.length === 0) return { delivered: 0, failed: 0 };
      const outcomes = await Promise.all(
        claimed.map(async (row) => ({ row, error: await deliver(row, now) })),
      );
      await deps.db.withSystem(async (tx: Tx) => {
        for (const { row, error } of outcomes) {
          const where = sql`alert_id = ${row.alert_id} AND channel = ${row.channel} AND destination = ${row.destination}`;
          if (error === null) {
            await sql`DELETE FROM audit_alert_deliveries WHERE ${where}`.execute(tx);
          } else {
            const next = new Date(now.getTime() + backoffSeconds(row.attempts) * 1000);
            await sql`UPDATE audit_alert_deliveries SET next_attempt_at = ${next}, last_error = ${error}
              WHERE ${where}`.execute(tx);
          }
        }
      });
      const delivered = outcomes.filter((o) => o.error === null).length;
      return { delivered, failed: outcomes.length - delivered };
    },
  };
}

export type AlertDelivery = ReturnType<typeof createAlertDelivery>;
