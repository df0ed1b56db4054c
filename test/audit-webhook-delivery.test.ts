/**
 * What a webhook receiver may answer, and where a tenant's webhook may go (security review of outbound
 * deliveries). Regressions pinned here:
 * - a SIEM webhook answered 302 was followed as a GET, whose 2xx counted as delivered: the event left
 *   the outbox without ever being received; a 307 re-posted the signed event to a URL nobody approved;
 * - a delivery's answer was read whole (up to OUTBOUND_MAX_BYTES, 32 MiB, per event and concurrently);
 * - a tenant admin's alert webhook reached what OUTBOUND_ALLOW_PRIVATE opens for the operators' SIEM.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { createAlertDelivery, createForwarder, type Forwarder } from '../src/audit/index.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { tenantAdmin } from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { addSinkApproved } from './sink-helpers.ts';

const SECRET_KEY = 'c2VjcmV0LWtleS1mb3ItdGhlLXdlYmhvb2stZGVsaXZlcnktdGVzdC0wMTIz';
const clock = fakeClock(new Date());
let t: TestApp;
let forwarder: Forwarder;

/** How the receiver answers a POST to /hook; every request it gets is recorded. */
let answer: 'ok' | '302' | '307' | 'long' = 'ok';
const requests: string[] = [];
const server = http.createServer((req, res) => {
  requests.push(`${req.method} ${req.url}`);
  req.resume();
  req.on('end', () => {
    if (req.url === '/hook' && answer === '302') return res.writeHead(302, { location: '/elsewhere' }).end();
    if (req.url === '/hook' && answer === '307') return res.writeHead(307, { location: '/elsewhere' }).end();
    // Longer than OUTBOUND_MAX_BYTES below: a delivery needs the status, never the body.
    if (req.url === '/hook' && answer === 'long') return res.writeHead(200).end('x'.repeat(16 * 1024));
    res.writeHead(204).end();
  });
});
let port = 0;

beforeAll(async () => {
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  t = await buildTestApp({
    clock,
    // Loopback stands in for the operators' internal SIEM; tenants get no private address.
    env: {
      SECRET_KEY,
      OUTBOUND_ALLOW_PRIVATE: '127.0.0.1/32',
      OUTBOUND_MAX_BYTES: '4096',
      // The burst below must reach the password check, not the per-address throttle in front of it.
      RATE_LIMITS: 'signin.ip=1000/60,signin.account=1000/60,failures.ip=1000/300',
    },
  });
  forwarder = createForwarder({
    db: t.db,
    clock,
    box: createSecretBox(deriveKey(Buffer.from(SECRET_KEY, 'utf8'), 'audit-sinks')),
    send: (r) => t.app.services.outbound.request('siem', r.url, r),
  });
});
afterAll(async () => {
  await t?.close();
  server.close();
  server.closeAllConnections();
  vi.useRealTimers();
});

async function pass() {
  clock.advance(2 * 3_600_000); // past any backoff
  return forwarder.deliverDue();
}

const pending = async () =>
  (await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator })).json()[0].pending as number;

describe('SIEM webhook deliveries', () => {
  it('count a redirect as a failure and never follow it (302: the event stays queued)', async () => {
    await addSinkApproved(t, clock, { kind: 'webhook', url: `http://127.0.0.1:${port}/hook` });
    await pass(); // what the sink's own creation queued
    answer = '302';
    requests.length = 0;
    await seedTenant(t, 'redirected-co');
    const result = await pass();
    expect(result.delivered).toBe(0);
    expect(result.failed).toBeGreaterThan(0);
    expect(requests.every((r) => r === 'POST /hook')).toBe(true);
    expect(await pending()).toBeGreaterThan(0);
    const [sink] = (await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator })).json();
    expect(sink.lastErrorClass).toBe('http_redirect');
  });

  it('do not re-post the signed event where a 307 points', async () => {
    answer = '307';
    requests.length = 0;
    const result = await pass();
    expect(result.delivered).toBe(0);
    expect(requests).not.toContain('POST /elsewhere');
    expect(await pending()).toBeGreaterThan(0);
  });

  it('take a 2xx as delivered without reading a long answer', async () => {
    answer = 'long';
    await seedTenant(t, 'long-answer-co');
    for (let i = 0; i < 5 && (await pending()) > 0; i++) await pass();
    expect(await pending()).toBe(0);
    expect(requests).not.toContain('GET /elsewhere');
  });
});

describe("a tenant's alert webhook", () => {
  it('is refused a private address that OUTBOUND_ALLOW_PRIVATE opens only to operators', async () => {
    const { id: tenantId } = await seedTenant(t, 'alerting-co');
    const admin = await tenantAdmin(t, 'alerting-co', 'admin@alerting.test', clock);
    const url = '/api/v1/t/alerting-co/audit/alert-settings';
    const current = (await t.app.inject({ url, headers: admin.headers })).json();
    const put = (webhookUrl: string) =>
      t.app.inject({
        method: 'PUT',
        url,
        headers: admin.headers,
        payload: { ...current, channels: { emails: [], webhookUrl } },
      });
    // An address literal is refused when it is set (400), before anything is stored.
    for (const literal of [
      `http://127.0.0.1:${port}/tenant-alerts`,
      'https://169.254.169.254/latest/meta-data/',
      'https://[::ffff:10.0.0.1]/hook',
    ]) {
      const refused = await put(literal);
      expect(refused.statusCode, literal).toBe(400);
      expect(refused.json().code).toBe('bad_alert_settings');
    }
    expect((await t.app.inject({ url, headers: admin.headers })).json()).toEqual(current);
    // A name is judged when it is resolved, at delivery: localhost is loopback.
    const saved = await put(`http://localhost:${port}/tenant-alerts`);
    expect(saved.statusCode, saved.body).toBe(200);
    for (let i = 0; i < 25; i++) {
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/t/alerting-co/auth/signin',
        remoteAddress: '198.51.100.7',
        payload: { email: 'nobody@alerting.test', password: 'not-the-password-1' },
      });
    }
    const delivery = createAlertDelivery({
      db: t.db,
      clock,
      box: createSecretBox(deriveKey(Buffer.from(SECRET_KEY, 'utf8'), 'audit-alerts')),
      send: (r) => t.app.services.outbound.request('alerts', r.url, r),
      sendMail: async () => {},
    });
    expect(await t.app.services.alerts.evaluateChain(tenantId)).not.toEqual([]);
    requests.length = 0;
    const result = await delivery.deliverDue();
    expect(result.failed).toBeGreaterThan(0);
    expect(requests).toEqual([]);
    const rows = await t.database.engine.asOwner((o) =>
      o.query<{ last_error: string }>(
        `SELECT last_error FROM audit_alert_deliveries WHERE tenant_id = $1 AND channel = 'webhook'`,
        [tenantId],
      ),
    );
    expect(rows.map((r) => r.last_error)).toEqual([expect.stringContaining('address_loopback')]);
  });
});
