/**
 * Anomaly rules and alerts: a burst of failed sign-ins raises one alert, not one per attempt, delivered
 * (signed) to a local webhook receiver that was down at first, and by mail; acknowledgement, de-duplication
 * after it, tenant isolation and bad input on the alert API.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AlertDelivery, createAlertDelivery } from '../src/audit/index.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { webhookReceiver } from './webhook-receiver.ts';

const SECRET_KEY = 'c2VjcmV0LWtleS1mb3ItdGhlLWF1ZGl0LWFsZXJ0cy10ZXN0LTAxMjM0NTY3';
const clock = fakeClock(new Date());
let t: TestApp;
let delivery: AlertDelivery;
let tenantId = '';
let admin: Person;

const receiver = webhookReceiver<{ type: string; data: { id: string; rule: string; summary: string } }>();
const { received } = receiver;

const api = (method: 'GET' | 'POST' | 'PUT', url: string, payload?: object, headers = admin.headers) =>
  t.app.inject({ method, url: `/api/v1/t/acme${url}`, headers, ...(payload ? { payload } : {}) });

async function settingsWith(channels: { emails: string[]; webhookUrl: string | null }) {
  const current = (await api('GET', '/audit/alert-settings')).json();
  return { ...current, channels };
}

const failSignIn = (email: string, remoteAddress = '198.51.100.7') =>
  t.app.inject({
    method: 'POST',
    url: '/api/v1/t/acme/auth/signin',
    remoteAddress,
    payload: { email, password: 'not-the-password-1' },
  });

async function ownerCount(query: string, params: unknown[] = []): Promise<number> {
  const rows = await t.database.engine.asOwner((o) => o.query<{ n: number }>(query, params));
  return Number(rows[0]?.n);
}

/** Moves time past each retry's backoff and delivers until nothing is queued. */
async function drainDeliveries() {
  for (let round = 0; round < 10; round++) {
    if ((await ownerCount('SELECT count(*)::int AS n FROM audit_alert_deliveries')) === 0) return;
    clock.advance(30_000);
    await delivery.deliverDue();
  }
  throw new Error('alert deliveries still queued after 10 rounds');
}

beforeAll(async () => {
  t = await buildTestApp({
    clock,
    env: {
      SECRET_KEY,
      // The receiver on loopback is the tenant admin's choice: admitted by the tenants' own list.
      OUTBOUND_TENANT_ALLOW_PRIVATE: '127.0.0.1/32',
      // The burst must reach the password check, not the per-address throttle in front of it.
      RATE_LIMITS: 'signin.ip=1000/60,signin.account=1000/60,failures.ip=1000/300',
    },
  });
  tenantId = (await seedTenant(t, 'acme')).id;
  await seedTenant(t, 'other');
  admin = await tenantAdmin(t, 'acme', 'admin@acme.test', clock);
  delivery = createAlertDelivery({
    db: t.db,
    clock,
    box: createSecretBox(deriveKey(Buffer.from(SECRET_KEY, 'utf8'), 'audit-alerts')),
    send: (r) => t.app.services.outbound.request('alerts', r.url, r),
    sendMail: (mail) => t.app.services.mailer.send(mail),
  });
  // Take the port, then leave the receiver down: the first delivery attempt must fail and be retried.
  await receiver.start();
  await receiver.stop();
});
afterAll(async () => {
  await receiver.stop();
  await t?.close();
});

describe('a burst of failed sign-ins', () => {
  it('raises one alert, delivered once by webhook (after an outage) and by mail', async () => {
    const saved = await api(
      'PUT',
      '/audit/alert-settings',
      await settingsWith({
        emails: ['SecOps@Acme.test'],
        webhookUrl: `http://127.0.0.1:${receiver.port}/alerts`,
      }),
    );
    expect(saved.statusCode, saved.body).toBe(200);
    const secret = saved.json().webhookSecret;
    expect(secret).toMatch(/^whsec_/);
    receiver.trust(secret);
    expect(saved.json().channels.emails).toEqual(['secops@acme.test']);

    // 100 attempts: an existing account (locked after 5) and four unknown ones, one address.
    const targets = ['admin@acme.test', 'a@acme.test', 'b@acme.test', 'c@acme.test', 'd@acme.test'];
    for (let i = 0; i < 100; i++) {
      expect((await failSignIn(targets[i % targets.length] as string)).statusCode).toBe(401);
    }
    await t.app.services.alerts.evaluateChain(tenantId);

    const alerts = (await api('GET', '/audit/alerts')).json().items;
    expect(alerts).toHaveLength(1);
    const [alert] = alerts;
    expect(alert.rule).toBe('signin.failures');
    expect(alert.status).toBe('open');
    expect(alert.keys).toEqual(expect.arrayContaining(['ip:198.51.100.7', 'chain']));
    expect(alert.occurrences).toBeGreaterThan(0);
    expect(alert.summary).toMatch(/failed sign-ins/);
    expect(
      await ownerCount(`SELECT count(*)::int AS n FROM audit_events WHERE action = 'audit.alert.raised'`),
    ).toBe(1);

    // Receiver down: the attempt fails and the delivery stays queued. The app's own delivery job may
    // make the attempt first and hold the row's lease while it does (our claim then skips the row):
    // either way the row records the failure, so wait for that.
    const failedWebhooks = () =>
      ownerCount(
        `SELECT count(*)::int AS n FROM audit_alert_deliveries WHERE channel = 'webhook' AND last_error IS NOT NULL`,
      );
    for (let round = 0; round < 200 && (await failedWebhooks()) === 0; round++) {
      await delivery.deliverDue();
      if ((await failedWebhooks()) === 0) await new Promise((resolve) => setTimeout(resolve, 25));
    }
    expect(received).toHaveLength(0);
    expect(await failedWebhooks()).toBe(1);
    await receiver.start();
    await drainDeliveries();
    expect(received.map((r) => r.id)).toEqual([alert.id]);
    expect(received[0]?.body.data.rule).toBe('signin.failures');
    const mail = (await t.app.services.mailer.outbox(20)).find((m) => m.to === 'secops@acme.test');
    expect(mail?.subject).toContain('signin.failures');
    expect(mail?.text).toContain(alert.id);

    // More of the same adds to the open alert: no second alert, nothing more delivered.
    for (let i = 0; i < 30; i++) await failSignIn('b@acme.test');
    await t.app.services.alerts.evaluateChain(tenantId);
    const after = (await api('GET', '/audit/alerts')).json().items;
    expect(after).toHaveLength(1);
    expect(after[0].occurrences).toBeGreaterThan(alert.occurrences);
    await drainDeliveries();
    expect(new Set(received.map((r) => r.id))).toEqual(new Set([alert.id]));
  });

  it('is acknowledged once, audited; matches soon after add to it, a later burst raises a new one', async () => {
    const [alert] = (await api('GET', '/audit/alerts?status=open')).json().items;
    const ack = await api('POST', `/audit/alerts/${alert.id}/acknowledge`, {
      note: 'password spraying, IP blocked',
    });
    expect(ack.statusCode, ack.body).toBe(200);
    expect(ack.json().status).toBe('acknowledged');
    expect(ack.json().acknowledgedBy).toBe(`user:${admin.userId}`);
    const again = await api('POST', `/audit/alerts/${alert.id}/acknowledge`, {});
    expect(again.statusCode).toBe(409);
    expect(
      await ownerCount(
        `SELECT count(*)::int AS n FROM audit_events WHERE action = 'audit.alert.acknowledged' AND target_id = $1`,
        [alert.id],
      ),
    ).toBe(1);

    for (let i = 0; i < 25; i++) await failSignIn('c@acme.test');
    await t.app.services.alerts.evaluateChain(tenantId);
    expect((await api('GET', '/audit/alerts')).json().items).toHaveLength(1);

    // Quiet for longer than the window and the acknowledged alert's quiet time: a new incident. (20 min:
    // the admin's session stays within its 30-minute idle timeout.)
    clock.advance(20 * 60_000);
    for (let i = 0; i < 25; i++) await failSignIn('d@acme.test', '198.51.100.99');
    await t.app.services.alerts.evaluateChain(tenantId);
    const items = (await api('GET', '/audit/alerts')).json().items;
    expect(items).toHaveLength(2);
    expect(items[0].status).toBe('open');
    expect(items[0].keys).toContain('ip:198.51.100.99');
  });
});

describe('the alert API', () => {
  it("shows a tenant only its own alerts, and the platform's only to operators", async () => {
    const other = await tenantAdmin(t, 'other', 'admin@other.test', clock);
    const list = await t.app.inject({ url: '/api/v1/t/other/audit/alerts', headers: other.headers });
    expect(list.statusCode).toBe(200);
    expect(list.json().items).toEqual([]);
    const [alert] = (await api('GET', '/audit/alerts')).json().items;
    const ack = await t.app.inject({
      method: 'POST',
      url: `/api/v1/t/other/audit/alerts/${alert.id}/acknowledge`,
      headers: other.headers,
      payload: {},
    });
    expect(ack.statusCode).toBe(404);
    const platform = await t.app.inject({ url: '/api/v1/audit/alerts', headers: t.asOperator });
    expect(platform.statusCode).toBe(200);
    expect(platform.json().items.every((a: { tenantId: string | null }) => a.tenantId === null)).toBe(true);
  });

  it('pages with a cursor and refuses bad input with a problem, changing nothing', async () => {
    const first = (await api('GET', '/audit/alerts?limit=1')).json();
    expect(first.items).toHaveLength(1);
    const second = (await api('GET', `/audit/alerts?limit=1&cursor=${first.nextCursor}`)).json();
    expect(second.items).toHaveLength(1);
    expect(second.items[0].id).not.toBe(first.items[0].id);

    const before = (await api('GET', '/audit/alert-settings')).json();
    const bad = [
      api('GET', '/audit/alerts?cursor=bm90LWEtY3Vyc29y'),
      api('GET', '/audit/alerts?status=closed'),
      api('GET', '/audit/alerts?rule=made.up'),
      api('POST', '/audit/alerts/not-a-uuid/acknowledge', {}),
      api('POST', '/audit/alerts/00000000-0000-4000-8000-000000000000/acknowledge', {}),
      api('PUT', '/audit/alert-settings', { ...before, extra: true }),
      api('PUT', '/audit/alert-settings', {
        ...before,
        rules: { ...before.rules, 'signin.failures': { ...before.rules['signin.failures'], perIp: 0 } },
      }),
      api('PUT', '/audit/alert-settings', {
        ...before,
        workingHours: { timeZone: 'Mars/Olympus', days: [1], start: '09:00', end: '17:00' },
      }),
      api('PUT', '/audit/alert-settings', {
        ...before,
        workingHours: { timeZone: 'Europe/Berlin', days: [8], start: '09:00', end: '25:00' },
      }),
      api('PUT', '/audit/alert-settings', {
        ...before,
        channels: { emails: ['not an email'], webhookUrl: null },
      }),
      api('PUT', '/audit/alert-settings', {
        ...before,
        channels: { emails: [], webhookUrl: 'http://alerts.example.com/hook' },
      }),
      // Regression: a NUL byte reached PostgreSQL (which refuses it in text) and gave a 500.
      api('PUT', '/audit/alert-settings', {
        ...before,
        channels: { emails: ['secops\u0000@acme.test'], webhookUrl: null },
      }),
      api('PUT', '/audit/alert-settings', {
        ...before,
        channels: { emails: [], webhookUrl: 'https://alerts.example.com/h\u0000ook' },
      }),
    ];
    for (const res of await Promise.all(bad)) {
      expect(res.statusCode, res.body).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, res.body).toBeLessThan(500);
      expect(res.headers['content-type']).toContain('application/problem+json');
    }
    expect((await api('GET', '/audit/alert-settings')).json()).toEqual(before);
  });
});
