/**
 * Alert deliveries go to the chain's channels at send time. They used to keep the destination they were
 * queued with: a mail address taken out of the settings (someone who left) or a webhook URL found
 * compromised kept receiving alert contents for up to 72 hours of retries, and alerts queued while a
 * webhook URL was wrong kept retrying the wrong one until given up, never reaching the corrected URL.
 * Now a delivery whose channel was removed is dropped unsent (audited `audit.alert.delivery_dropped`),
 * and a webhook goes to the URL set now, signed with its secret. A chain with no settings row has the
 * defaults, which name no channel: its queued deliveries are dropped too.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAlertDelivery } from '../src/audit/alert-delivery.ts';
import {
  type AlertSettingsView,
  createAlertEngine,
  createAlertService,
  recordAuditEvent,
} from '../src/audit/index.ts';
import { inChain } from '../src/audit/store.ts';
import { systemContext } from '../src/platform/context.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { createTestDatabase, engineUnderTest, fakeClock, type TestDatabase } from './helpers.ts';

const box = createSecretBox(deriveKey(Buffer.from('audit-alert-channels-test-root-key'), 'audit-alerts'));
// Near the real time: the receiver's signature check refuses a timestamp minutes off.
const clock = fakeClock(new Date());
const admin = systemContext('test-admin');
let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

const service = () =>
  createAlertService({ db: t.db, clock, box, normaliseEmail: (raw) => raw.trim().toLowerCase() });

/** Saves the chain's channels as `PUT alert-settings` does; returns the webhook secret when a new one was made. */
async function setChannels(tenantId: string, channels: AlertSettingsView['channels']) {
  const current = await service().getSettings(tenantId);
  const saved = await service().updateSettings(tenantId, admin, { ...current, channels });
  return 'webhookSecret' in saved ? (saved.webhookSecret as string) : null;
}

/** Raises a `protect.incident` alert in the chain through the real engine: its deliveries are queued. */
async function raiseAlert(tenantId: string): Promise<string> {
  await inChain(t.db, tenantId, (tx) =>
    recordAuditEvent(tx, clock, systemContext('protect'), {
      tenantId,
      action: 'protect.outbound.refused',
      outcome: 'failure',
      details: { purpose: 'alerts', host: `h-${randomUUID()}.example.test`, reason: 'address_private' },
    }),
  );
  const engine = createAlertEngine({ db: t.db, clock, isStaff: async () => false });
  const [alert] = await engine.evaluateChain(tenantId);
  if (!alert) throw new Error('no alert raised');
  return alert.id;
}

/** A receiver that records every webhook and mail and accepts them all. */
function channels() {
  const webhooks: { url: string; headers: Record<string, string>; body: string }[] = [];
  const mails: string[] = [];
  return {
    webhooks,
    mails,
    delivery: createAlertDelivery({
      db: t.db,
      clock,
      box,
      send: async (request) => {
        webhooks.push(request);
        return { status: 204 };
      },
      sendMail: async (mail) => {
        mails.push(mail.to);
      },
    }),
  };
}

const queued = (alertId: string) =>
  t.engine.asOwner((o) =>
    o.query<{ channel: string }>('SELECT channel FROM audit_alert_deliveries WHERE alert_id = $1', [alertId]),
  );
const droppedEvents = (alertId: string) =>
  t.engine.asOwner((o) =>
    o.query<{ tenant_id: string; actor_id: string; details: Record<string, unknown> }>(
      `SELECT tenant_id, actor_id, details FROM audit_events
       WHERE action = 'audit.alert.delivery_dropped' AND target_id = $1 ORDER BY details->>'channel'`,
      [alertId],
    ),
  );

describe(`alert deliveries follow the chain's current channels (${engineUnderTest})`, () => {
  it('drop a delivery whose mail address or webhook was removed from the settings: nothing is sent, it is audited', async () => {
    const tenantId = randomUUID();
    await setChannels(tenantId, {
      emails: ['soc@acme.test', 'leaver@acme.test'],
      webhookUrl: 'https://hooks.acme.test/compromised',
    });
    const alertId = await raiseAlert(tenantId);
    expect(await queued(alertId)).toHaveLength(3);
    // The leaver is taken out and the compromised webhook removed before the job sends anything.
    await setChannels(tenantId, { emails: ['soc@acme.test'], webhookUrl: null });

    const sent = channels();
    const result = await sent.delivery.deliverDue();
    expect(sent.mails).toEqual(['soc@acme.test']);
    expect(sent.webhooks).toEqual([]);
    expect(result).toEqual({ delivered: 1, failed: 0, gaveUp: 0, dropped: 2 });
    expect(await queued(alertId)).toEqual([]);
    const events = await droppedEvents(alertId);
    expect(events).toMatchObject([
      { tenant_id: tenantId, actor_id: 'audit-alerts', details: { channel: 'email', webhookUrl: null } },
      {
        tenant_id: tenantId,
        actor_id: 'audit-alerts',
        details: { channel: 'webhook', webhookUrl: 'https://hooks.acme.test/compromised' },
      },
    ]);
    // Mail addresses are never named in the trail, as in the settings' own event.
    expect(JSON.stringify(events)).not.toContain('leaver@');
  });

  it('send a webhook queued for a wrong URL to the corrected one, signed with its new secret', async () => {
    const tenantId = randomUUID();
    await setChannels(tenantId, { emails: [], webhookUrl: 'https://hooks.acme.test/typo' });
    const alertId = await raiseAlert(tenantId);

    // The wrong URL fails once and the delivery is retried later ...
    const down = createAlertDelivery({
      db: t.db,
      clock,
      box,
      send: async () => ({ status: 404 }),
      sendMail: async () => {},
    });
    expect(await down.deliverDue()).toMatchObject({ delivered: 0, failed: 1 });
    // ... by when the admin has corrected it: a new URL gets a new secret.
    const secret = await setChannels(tenantId, { emails: [], webhookUrl: 'https://hooks.acme.test/alerts' });
    expect(secret).toMatch(/^whsec_/);

    clock.advance(60_000);
    const sent = channels();
    const result = await sent.delivery.deliverDue();
    expect(sent.webhooks.map((w) => w.url)).toEqual(['https://hooks.acme.test/alerts']);
    expect(result).toEqual({ delivered: 1, failed: 0, gaveUp: 0, dropped: 0 });
    const [hook] = sent.webhooks;
    // Made for the tenant: the egress guard reports a refusal of it per tenant (protect.outbound.refused).
    expect(hook).toMatchObject({ tenantId });
    const verified = new Webhook(secret as string).verify(hook?.body ?? '', hook?.headers ?? {}) as {
      data: { id: string };
    };
    expect(verified.data.id).toBe(alertId);
    expect(await queued(alertId)).toEqual([]);
  });

  it('drop deliveries of a chain with no settings row (the defaults name no channel)', async () => {
    const tenantId = randomUUID();
    const alertId = randomUUID();
    await inChain(t.db, tenantId, async (tx) => {
      await sql`INSERT INTO audit_alerts (id, tenant_id, rule, severity, keys, summary, status, occurrences,
          first_event_id, last_event_id, raised_at, last_seen_at)
        VALUES (${alertId}, ${tenantId}, 'signin.failures', 'medium', ARRAY['chain'], 'test', 'open', 1,
          ${randomUUID()}, ${randomUUID()}, ${clock.now()}, ${clock.now()})`.execute(tx);
      await sql`INSERT INTO audit_alert_deliveries (alert_id, channel, destination, tenant_id,
          payload, enqueued_at, next_attempt_at)
        VALUES (${alertId}, 'webhook', 'https://hooks.example.test/old', ${tenantId},
            '{}'::jsonb, ${clock.now()}, ${clock.now()})`.execute(tx);
    });
    const sent = channels();
    const result = await sent.delivery.deliverDue();
    expect(sent.webhooks).toEqual([]);
    expect(result).toEqual({ delivered: 0, failed: 0, gaveUp: 0, dropped: 1 });
    expect(await droppedEvents(alertId)).toHaveLength(1);
  });
});
