/**
 * SIEM forwarding through the durable outbox: a local webhook receiver goes down while events are
 * produced; when it is back, every event arrives, signed (Standard Webhooks), de-duplicable by id.
 */
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { createForwarder, type Forwarder } from '../src/audit/index.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { type AddedSink, addSinkApproved } from './sink-helpers.ts';
import { webhookReceiver } from './webhook-receiver.ts';

const SECRET_KEY = 'c2VjcmV0LWtleS1mb3ItdGhlLWF1ZGl0LWZvcndhcmQtdGVzdC0wMTIzNDU2';
const clock = fakeClock(new Date());
let t: TestApp;
let forwarder: Forwarder;

const receiver = webhookReceiver<{ type: string; data: { id: string; action: string } }>();
const { received } = receiver;

beforeAll(async () => {
  // The app's periodic jobs stay still: this test runs the passes (on the fake clock).
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  t = await buildTestApp({ clock, env: { SECRET_KEY, OUTBOUND_ALLOW_PRIVATE: '127.0.0.1/32' } });
  forwarder = createForwarder({
    db: t.db,
    clock,
    box: createSecretBox(deriveKey(Buffer.from(SECRET_KEY, 'utf8'), 'audit-sinks')),
    send: (r) => t.app.services.outbound.request('siem', r.url, r),
  });
  await receiver.start();
});
afterAll(async () => {
  await receiver.stop();
  await t?.close();
  vi.useRealTimers();
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

/** The events the approved run wrote: the sink's creation and the approval's execution. */
async function runEventIds(sink: AddedSink): Promise<string[]> {
  const rows = await t.database.engine.asOwner((o) =>
    o.query<{ id: string }>(
      `SELECT id::text FROM audit_events WHERE (action = 'audit.sink.created' AND target_id = $1)
        OR (action = 'access.approval.executed' AND target_id = $2)`,
      [sink.id, sink.approvalId],
    ),
  );
  return rows.map((r) => r.id);
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
  // Added through four-eyes (two operators); the sink receives what its run wrote from its insert on
  // (audit.sink.created, access.approval.executed) and everything after.
  const created = await addSinkApproved(t, clock, {
    kind: 'webhook',
    url: `http://127.0.0.1:${receiver.port}/hook`,
  });
  const secret = created.secret ?? '';
  expect(secret).toMatch(/^whsec_/);
  receiver.trust(secret);
  const ofTheRun = await runEventIds(created);
  expect(ofTheRun).toHaveLength(2);
  clock.advance(1);
  const since = clock.now();

  await seedTenant(t, 'first-co');
  await drain(1);
  expect(new Set(received.map((r) => r.id)).size).toBeGreaterThanOrEqual(2);

  await receiver.stop();
  for (const slug of ['second-co', 'third-co', 'fourth-co']) await seedTenant(t, slug);
  const failedPass = await forwarder.deliverDue();
  expect(failedPass.delivered).toBe(0);
  const backlog = await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator });
  expect(backlog.json()[0].pending).toBeGreaterThanOrEqual(3);

  await receiver.start();
  await drain(6);
  const ids = [...new Set(received.map((r) => r.id))].sort();
  expect(ids).toEqual([...ofTheRun, ...(await eventIdsSince(since))].sort());
  for (const r of received) {
    expect(r.body.type).toBe('audit.event');
    expect(r.body.data.id).toBe(r.id);
  }
  expect(received.some((r) => r.body.data.action === 'tenancy.tenant.created')).toBe(true);
  const after = await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator });
  expect(after.json()[0]).toMatchObject({ pending: 0, oldestPendingAt: null });
});

it('disabling a sink drains it (the notice included), then stops it; audited', async () => {
  const [sink] = (await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator })).json();
  const res = await t.app.inject({
    method: 'DELETE',
    url: `/api/v1/audit/sinks/${sink.id}`,
    headers: t.asOperator,
  });
  expect(res.statusCode).toBe(202);
  expect((await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator })).json()).toMatchObject([
    { id: sink.id, state: 'draining' },
  ]);
  await drain(1);
  expect(received.at(-1)?.body.data.action).toBe('audit.sink.disabled');
  expect((await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator })).json()).toEqual([]);
  const events = await t.app.inject({ url: '/api/v1/audit/events?action=audit.sink', headers: t.asOperator });
  expect(events.json().items.map((e: { action: string }) => e.action)).toEqual([
    'audit.sink.stopped',
    'audit.sink.disabled',
    'audit.sink.created',
  ]);
});
