/**
 * SIEM forwarding through the durable outbox: a local webhook receiver goes down while events are
 * produced; when it is back, every event arrives, signed (Standard Webhooks), de-duplicable by id.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Webhook } from 'standardwebhooks';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createForwarder, type Forwarder } from '../src/audit/index.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const SECRET_KEY = 'c2VjcmV0LWtleS1mb3ItdGhlLWF1ZGl0LWZvcndhcmQtdGVzdC0wMTIzNDU2';
const clock = fakeClock(new Date());
let t: TestApp;
let forwarder: Forwarder;

interface Received {
  id: string;
  body: { type: string; data: { id: string; action: string } };
}
const received: Received[] = [];
let secret = '';
let receiver: http.Server | null = null;
let port = 0;

function startReceiver(): Promise<void> {
  receiver = http.createServer((req, res) => {
    let body = '';
    req.on('data', (chunk) => {
      body += String(chunk);
    });
    req.on('end', () => {
      // A forged or altered message would throw here and be answered 400 (and retried).
      try {
        new Webhook(secret).verify(body, req.headers as Record<string, string>);
      } catch {
        res.writeHead(400).end();
        return;
      }
      received.push({ id: String(req.headers['webhook-id']), body: JSON.parse(body) });
      res.writeHead(204).end();
    });
  });
  return new Promise((resolve) => receiver?.listen(port, '127.0.0.1', () => resolve()));
}

const stopReceiver = () =>
  new Promise<void>((resolve) => {
    receiver?.close(() => resolve());
    receiver?.closeAllConnections();
  });

beforeAll(async () => {
  t = await buildTestApp({ clock, env: { SECRET_KEY, OUTBOUND_ALLOW_PRIVATE: '127.0.0.1/32' } });
  forwarder = createForwarder({
    db: t.db,
    clock,
    box: createSecretBox(deriveKey(Buffer.from(SECRET_KEY, 'utf8'), 'audit-sinks')),
    send: (r) => t.app.services.outbound.request('siem', r.url, r),
  });
  await startReceiver();
  port = (receiver ? (receiver.address() as AddressInfo) : { port: 0 }).port;
});
afterAll(async () => {
  await stopReceiver();
  await t?.close();
});

async function drain(rounds: number) {
  for (let i = 0; i < rounds; i++) {
    clock.advance(20_000);
    await forwarder.deliverDue();
  }
}

async function eventIdsSince(since: Date): Promise<string[]> {
  const rows = await t.database.engine.asOwner((o) =>
    o.query<{ id: string }>('SELECT id::text FROM audit_events WHERE occurred_at >= $1', [since]),
  );
  return rows.map((r) => r.id).sort();
}

it('refuses a sink that is not https (http only on loopback)', async () => {
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/v1/audit/sinks',
    headers: t.asOperator,
    payload: { kind: 'webhook', url: 'http://siem.example.com/hook' },
  });
  expect(res.statusCode).toBe(400);
  expect(res.json().code).toBe('bad_sink');
});

it('a sink that is down loses nothing: every event arrives once it is back, signed, de-duplicable', async () => {
  clock.advance(1); // after the bootstrap operator's event, which predates the sink
  const since = clock.now();
  const created = await t.app.inject({
    method: 'POST',
    url: '/api/v1/audit/sinks',
    headers: t.asOperator,
    payload: { kind: 'webhook', url: `http://127.0.0.1:${port}/hook` },
  });
  expect(created.statusCode, created.body).toBe(201);
  secret = created.json().secret;
  expect(secret).toMatch(/^whsec_/);

  await seedTenant(t, 'first-co');
  await drain(1);
  expect(new Set(received.map((r) => r.id)).size).toBeGreaterThanOrEqual(2);

  await stopReceiver();
  for (const slug of ['second-co', 'third-co', 'fourth-co']) await seedTenant(t, slug);
  const failedPass = await forwarder.deliverDue();
  expect(failedPass.delivered).toBe(0);
  const backlog = await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator });
  expect(backlog.json()[0].pending).toBeGreaterThanOrEqual(3);

  await startReceiver();
  await drain(6);
  const ids = [...new Set(received.map((r) => r.id))].sort();
  expect(ids).toEqual(await eventIdsSince(since));
  for (const r of received) {
    expect(r.body.type).toBe('audit.event');
    expect(r.body.data.id).toBe(r.id);
  }
  expect(received.some((r) => r.body.data.action === 'tenancy.tenant.created')).toBe(true);
  const after = await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator });
  expect(after.json()[0]).toMatchObject({ pending: 0, oldestPendingAt: null });
});

it('disabling a sink stops forwarding and is audited', async () => {
  const [sink] = (await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator })).json();
  const res = await t.app.inject({
    method: 'DELETE',
    url: `/api/v1/audit/sinks/${sink.id}`,
    headers: t.asOperator,
  });
  expect(res.statusCode).toBe(204);
  expect((await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator })).json()).toEqual([]);
  const events = await t.app.inject({ url: '/api/v1/audit/events?action=audit.sink', headers: t.asOperator });
  expect(events.json().items.map((e: { action: string }) => e.action)).toEqual([
    'audit.sink.disabled',
    'audit.sink.created',
  ]);
});
