/**
 * SIEM sinks as a whole: backoff per sink (a dead sink is probed with one event, the others keep their
 * share of each pass), a bounded backlog (the oldest events dropped, counted, audited and alerted), and
 * disabling that drains the backlog and the disable notice before the sink stops. The clock is fake;
 * a sink that "drops connections" is an injected send that fails, the live ones are local receivers.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import { createForwarder, recordAuditEvent } from '../src/audit/index.ts';
import { systemContext } from '../src/platform/context.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { buildTestApp, type TestApp } from './helpers.ts';
import { addSinkApproved } from './sink-helpers.ts';
import { webhookReceiver } from './webhook-receiver.ts';

const SECRET_KEY = 'c2VjcmV0LWtleS1mb3ItdGhlLXNpbmstbGlmZWN5Y2xlLXRlc3QtMDEyMzQ1Ng';
const MAX_BACKLOG = 1000;
const HOUR = 3_600_000;
/**
 * The wall clock moved by hand (backoff, an hour at a time): live receivers check the Standard Webhooks
 * timestamp against their own clock (5 minutes' tolerance), so a test that uses them starts from now.
 */
let offset = 0;
const clock = {
  now: () => new Date(Date.now() + offset),
  advance(ms: number) {
    offset += ms;
  },
};
let t: TestApp;

type Body = { type: string; data: { id: string; action: string; details: Record<string, unknown> } };
const live = webhookReceiver<Body>();
const other = webhookReceiver<Body>();

/** The dead sink: every call is counted (webhook-id), and fails as a silently dropped connection would. */
const dead = { up: false, calls: [] as string[], delivered: [] as string[] };

beforeAll(async () => {
  // The app's own periodic jobs (forwarding every second) stay still: these tests run the passes.
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  t = await buildTestApp({
    clock,
    env: { SECRET_KEY, OUTBOUND_ALLOW_PRIVATE: '127.0.0.1/32', AUDIT_SINK_MAX_BACKLOG: String(MAX_BACKLOG) },
  });
  await live.start();
  await other.start();
});
afterAll(async () => {
  await live.stop();
  await other.stop();
  await t?.close();
  vi.useRealTimers();
});

const forwarder = (batch = 10) =>
  createForwarder({
    db: t.db,
    clock,
    box: createSecretBox(deriveKey(Buffer.from(SECRET_KEY, 'utf8'), 'audit-sinks')),
    batch,
    maxBacklog: MAX_BACKLOG,
    send: async (r) => {
      if (!r.url.endsWith('/dead')) return t.app.services.outbound.request('siem', r.url, r);
      const id = r.headers['webhook-id'] ?? '';
      dead.calls.push(id);
      if (!dead.up) throw new Error('request to the SIEM timed out');
      dead.delivered.push(id);
      return { status: 204 };
    },
  });

/** A webhook sink, added through four-eyes (one operator asks, another approves, the first runs it). */
async function addSink(url: string, receiver?: typeof live): Promise<string> {
  const sink = await addSinkApproved(t, clock, { kind: 'webhook', url });
  receiver?.trust(sink.secret ?? '');
  return sink.id;
}

/** n platform events, 1 ms apart (so each sink's backlog has one oldest-first order); their ids. */
async function produce(n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    clock.advance(1);
    ids.push(
      await t.db.withSystem((tx) =>
        recordAuditEvent(tx, clock, systemContext('test'), {
          tenantId: null,
          action: 'audit.trail.exported',
          outcome: 'success',
          target: { type: 'audit_chain', id: randomUUID() },
        }),
      ),
    );
  }
  return ids;
}

const sinks = async () =>
  (await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator })).json() as {
    id: string;
    state: string;
    pending: number;
    failures: number;
    nextAttemptAt: string | null;
    lastErrorClass: string | null;
    overflowingSince: string | null;
    dropped: number;
  }[];
const sink = async (id: string) => (await sinks()).find((s) => s.id === id);

const eventsOf = async (action: string) =>
  t.database.engine.asOwner((o) =>
    o.query<{ target_id: string; details: Record<string, unknown> }>(
      'SELECT target_id, details FROM audit_events WHERE action = $1 ORDER BY chain_seq',
      [action],
    ),
  );

/** Passes until no sink has a full share left (what the job does). */
async function drain(f: ReturnType<typeof forwarder>) {
  for (let i = 0; i < 50; i++) if (!(await f.deliverDue()).more) return;
  throw new Error('still more after 50 passes');
}

async function stopAll() {
  for (const s of await sinks()) {
    const res = await t.app.inject({
      method: 'DELETE',
      url: `/api/v1/audit/sinks/${s.id}?now=true`,
      headers: t.asOperator,
    });
    expect(res.statusCode, res.body).toBe(200);
  }
}

it('backs off a dead sink as a whole, probes it with one event, and keeps the share of the others', async () => {
  const f = forwarder(10);
  const deadId = await addSink('http://127.0.0.1:9/dead');
  const older = await produce(20); // only the dead sink has these: the oldest rows of the queue
  const liveId = await addSink(`http://127.0.0.1:${live.port}/hook`, live);
  const newer = await produce(10);

  // One pass of 10: each sink claims its share (5), so the oldest rows (all the dead sink's) cannot
  // take the whole batch.
  await f.deliverDue();
  expect(dead.calls.length).toBe(5);
  expect(new Set(live.received.map((r) => r.id)).size).toBe(5);
  expect(await sink(deadId)).toMatchObject({ failures: 1, lastErrorClass: 'timeout', state: 'active' });

  // While it backs off (5 s), the dead sink is not tried at all; the live one gets everything.
  dead.calls.length = 0;
  await drain(f);
  expect(dead.calls).toEqual([]);
  const liveIds = new Set(live.received.map((r) => r.id));
  for (const id of newer) expect(liveIds.has(id)).toBe(true);
  expect(await sink(liveId)).toMatchObject({ failures: 0, pending: 0 });

  // Then one probe per attempt, backing off to an hour: no retry storm, whatever the backlog.
  for (let round = 0; round < 12; round++) {
    clock.advance(HOUR);
    await drain(f);
  }
  expect(dead.calls.length).toBe(12);
  const down = await sink(deadId);
  expect(down?.failures).toBe(13);
  expect(down?.pending).toBeGreaterThanOrEqual(30);
  expect(Date.parse(down?.nextAttemptAt ?? '')).toBeGreaterThan(clock.now().getTime());

  // Back up: the probe is acknowledged and the whole backlog flows, oldest first.
  dead.up = true;
  clock.advance(HOUR);
  await drain(f);
  expect(await sink(deadId)).toMatchObject({
    failures: 0,
    pending: 0,
    lastErrorClass: null,
    nextAttemptAt: null,
  });
  const order = dead.delivered.filter((id) => older.includes(id) || newer.includes(id));
  expect(order).toEqual([...older, ...newer]);
  await stopAll();
});

it('bounds a dead sink backlog: the oldest are dropped, counted, audited and alerted; counts stay bounded', async () => {
  const f = forwarder(10);
  dead.up = false;
  const deadId = await addSink('http://127.0.0.1:9/dead');
  const first = await produce(3);
  // A long outage, quickly: 1,200 more queued rows behind the first events.
  await t.database.engine.asOwner((o) =>
    o.query(
      `INSERT INTO audit_outbox (sink_id, event_id, tenant_id, payload, enqueued_at, next_attempt_at)
       SELECT $1, gen_random_uuid(), NULL, '{"filler":true}'::jsonb, $2::timestamptz + make_interval(secs => g),
         $2::timestamptz + make_interval(secs => g)
       FROM generate_series(1, 1200) g`,
      [deadId, clock.now()],
    ),
  );
  // Listing and metrics count at most the maximum + 1.
  expect((await sink(deadId))?.pending).toBe(MAX_BACKLOG + 1);
  const metrics = (await t.app.inject({ url: '/metrics' })).body;
  expect(metrics).toContain(`rampart_audit_sink_pending{sink="${deadId}"} ${MAX_BACKLOG + 1}`);

  // Queued for it besides: its own creation and the approval's execution (access.approval.executed).
  const overflowed = await f.enforceBacklog();
  expect(overflowed).toEqual([{ sink: deadId, dropped: 1203 + 2 - MAX_BACKLOG }]);
  const after = await sink(deadId);
  expect(after?.dropped).toBe(1205 - MAX_BACKLOG);
  expect(after?.overflowingSince).not.toBeNull();
  const events = await eventsOf('audit.sink.overflowed');
  expect(events).toHaveLength(1);
  expect(events[0]).toMatchObject({ target_id: deadId, details: { dropped: 205, maxBacklog: MAX_BACKLOG } });
  // The oldest went: the first real events are no longer queued for it.
  const queued = await t.database.engine.asOwner((o) =>
    o.query<{ n: number }>(
      'SELECT count(*)::int AS n FROM audit_outbox WHERE sink_id = $1 AND event_id = ANY($2::uuid[])',
      [deadId, first],
    ),
  );
  expect(queued[0]?.n).toBe(0);

  // Still overflowing: more drops are counted, not audited again.
  await produce(5);
  const again = await f.enforceBacklog();
  expect(again.find((o) => o.sink === deadId)?.dropped).toBeGreaterThan(0);
  expect(await eventsOf('audit.sink.overflowed')).toHaveLength(1);

  // A platform alert from it (the protect.incident rule), keyed by the sink.
  await t.app.services.alerts.evaluateChain(null);
  const alerts = (await t.app.inject({ url: '/api/v1/audit/alerts', headers: t.asOperator })).json()
    .items as {
    rule: string;
    keys: string[];
  }[];
  expect(alerts.some((a) => a.rule === 'protect.incident' && a.keys.includes(`sink:${deadId}`))).toBe(true);

  // Recovered: it is told how many events it lost.
  dead.up = true;
  clock.advance(HOUR);
  await drain(forwarder(500));
  const recovered = await eventsOf('audit.sink.recovered');
  expect(recovered.at(-1)).toMatchObject({ target_id: deadId });
  expect(Number(recovered.at(-1)?.details.dropped)).toBe((await sink(deadId))?.dropped);
  expect(await sink(deadId)).toMatchObject({ overflowingSince: null, pending: 0 });
  await stopAll();
});

it('disabling drains the backlog and the disable notice to the sink, then stops it; the others are told', async () => {
  offset = 0;
  const f = forwarder(10);
  const liveId = await addSink(`http://127.0.0.1:${live.port}/hook`, live);
  const otherId = await addSink(`http://127.0.0.1:${other.port}/hook`, other);
  await live.stop();
  const backlog = await produce(4);
  await f.deliverDue(); // the live sink is down now: it fails and backs off
  expect((await sink(liveId))?.failures).toBe(1);
  live.received.length = 0;
  other.received.length = 0;

  const res = await t.app.inject({
    method: 'DELETE',
    url: `/api/v1/audit/sinks/${liveId}`,
    headers: t.asOperator,
  });
  expect(res.statusCode, res.body).toBe(202);
  expect(res.json()).toEqual({ state: 'draining', dropped: 0 });
  expect(await sink(liveId)).toMatchObject({ state: 'draining' });
  const again = await t.app.inject({
    method: 'DELETE',
    url: `/api/v1/audit/sinks/${liveId}`,
    headers: t.asOperator,
  });
  expect(again.statusCode).toBe(409);
  expect(again.json().code).toBe('sink_draining');
  const [disabled] = (await eventsOf('audit.sink.disabled')).filter((e) => e.target_id === liveId);
  expect(disabled).toBeDefined();
  const later = await produce(2); // after the disable: not for the draining sink

  await live.start();
  clock.advance(10_000); // past its backoff (5 s)
  await drain(f);
  const got = [...new Set(live.received.map((r) => r.id))];
  for (const id of backlog) expect(got).toContain(id);
  for (const id of later) expect(got).not.toContain(id);
  // The disable notice is the last event it received.
  expect(live.received.at(-1)?.body.data.action).toBe('audit.sink.disabled');
  expect(live.received.at(-1)?.body.data.details).toMatchObject({ immediate: false });

  // Drained: stopped, gone from the list, and the other sink heard both.
  expect(await sink(liveId)).toBeUndefined();
  const stopped = (await eventsOf('audit.sink.stopped')).filter((e) => e.target_id === liveId);
  expect(stopped).toEqual([{ target_id: liveId, details: { drained: true, dropped: 0 } }]);
  await drain(f);
  const told = other.received.filter(
    (r) => r.body.data.details && r.body.data.action.startsWith('audit.sink.'),
  );
  expect(told.map((r) => r.body.data.action)).toEqual(['audit.sink.disabled', 'audit.sink.stopped']);
  expect(
    (await t.app.inject({ method: 'DELETE', url: `/api/v1/audit/sinks/${liveId}`, headers: t.asOperator }))
      .statusCode,
  ).toBe(404);

  // `?now=true` stops at once: what it held is dropped, counted and audited.
  await other.stop();
  await produce(3);
  const now = await t.app.inject({
    method: 'DELETE',
    url: `/api/v1/audit/sinks/${otherId}?now=true`,
    headers: t.asOperator,
  });
  expect(now.statusCode, now.body).toBe(200);
  expect(now.json().state).toBe('stopped');
  expect(now.json().dropped).toBeGreaterThanOrEqual(4);
  const forced = (await eventsOf('audit.sink.stopped')).filter((e) => e.target_id === otherId);
  expect(forced).toEqual([{ target_id: otherId, details: { drained: false, dropped: now.json().dropped } }]);
  expect(await sinks()).toEqual([]);
  await other.start();
});
