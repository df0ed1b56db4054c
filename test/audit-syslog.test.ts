/**
 * Syslog sinks (RFC 5424 over TLS, octet-counting framing) through the durable outbox: a local TLS
 * receiver goes down while events are produced; once it is back every event arrives, each message
 * conforms to RFC 5424 and carries the event id in its structured data, so copies can be dropped.
 */
import net, { type AddressInfo } from 'node:net';
import tls from 'node:tls';
import { afterAll, beforeAll, expect, it, vi } from 'vitest';
import {
  createForwarder,
  createSyslogTransport,
  type Forwarder,
  formatSyslog,
  type SendSyslog,
  sdIdFor,
} from '../src/audit/index.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { makeDevCert } from '../src/protect/dev-cert.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { addSinkApproved } from './sink-helpers.ts';

const SECRET_KEY = 'c2VjcmV0LWtleS1mb3ItdGhlLWF1ZGl0LXN5c2xvZy10ZXN0LTAxMjM0NTY3';
const clock = fakeClock(new Date());
let t: TestApp;
let forwarder: Forwarder;
let sendSyslog: SendSyslog;
let cert = { cert: '', key: '' };

/** RFC 5424 section 6, strictly: HEADER SP STRUCTURED-DATA [SP MSG]. */
const RFC5424 = new RegExp(
  [
    '^<(?<pri>\\d{1,3})>1',
    ' (?<ts>\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(?:\\.\\d{1,6})?(?:Z|[+-]\\d\\d:\\d\\d))',
    ' (?<host>[\\x21-\\x7e]{1,255}) (?<app>[\\x21-\\x7e]{1,48}) (?<proc>[\\x21-\\x7e]{1,128}) (?<msgid>[\\x21-\\x7e]{1,32})',
    ' (?<sd>-|(?:\\[[^\\s="\\]]{1,32}(?: [^\\s="\\]]{1,32}="(?:[^"\\\\\\]]|\\\\["\\\\\\]])*")*\\])+)',
    '(?: (?<msg>.*))?$',
  ].join(''),
  's',
);

interface Parsed {
  pri: number;
  ts: string;
  msgid: string;
  sdId: string;
  params: Record<string, string>;
  msg: string;
}

function parse5424(message: string): Parsed {
  const m = RFC5424.exec(message);
  if (!m?.groups) throw new Error(`not RFC 5424: ${message.slice(0, 200)}`);
  const g = m.groups as Record<string, string>;
  const element = /^\[([^\s\]]+)((?: [^=]+="(?:[^"\\\]]|\\["\\\]])*")*)\]$/.exec(g.sd ?? '');
  if (!element) throw new Error(`expected one SD element: ${g.sd}`);
  const params: Record<string, string> = {};
  for (const p of (element[2] ?? '').matchAll(/ ([^=]+)="((?:[^"\\\]]|\\["\\\]])*)"/g)) {
    params[p[1] as string] = (p[2] as string).replace(/\\(["\\\]])/g, '$1');
  }
  return {
    pri: Number(g.pri),
    ts: g.ts as string,
    msgid: g.msgid as string,
    sdId: element[1] as string,
    params,
    msg: g.msg ?? '',
  };
}

/** A TLS syslog receiver: splits octet-counted frames, closes its side when the sender ends. */
const received: string[] = [];
let receiver: tls.Server | null = null;
let port = 0;

function startReceiver(): Promise<void> {
  receiver = tls.createServer({ key: cert.key, cert: cert.cert }, (socket) => {
    let buffer = Buffer.alloc(0);
    socket.on('data', (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      for (;;) {
        const space = buffer.indexOf(0x20);
        if (space < 0) return;
        const length = Number(buffer.subarray(0, space).toString('ascii'));
        if (!Number.isInteger(length) || length <= 0) throw new Error('bad frame');
        if (buffer.length < space + 1 + length) return;
        received.push(buffer.subarray(space + 1, space + 1 + length).toString('utf8'));
        buffer = buffer.subarray(space + 1 + length);
      }
    });
    socket.on('end', () => socket.end());
  });
  return new Promise((resolve) => receiver?.listen(port, '127.0.0.1', () => resolve()));
}

const stopReceiver = () => new Promise<void>((resolve) => receiver?.close(() => resolve()));

beforeAll(async () => {
  cert = await makeDevCert({ hosts: ['127.0.0.1'], keyType: 'ec', days: 2 });
  // The app's periodic jobs stay still (its forwarder would race this one on the fake clock, whose
  // jumps expire a sink's lease mid-delivery); the operator's own enterprise number is set all the same.
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  t = await buildTestApp({
    clock,
    env: { SECRET_KEY, OUTBOUND_ALLOW_PRIVATE: '127.0.0.1/32', SYSLOG_ENTERPRISE_NUMBER: '64999' },
  });
  sendSyslog = createSyslogTransport({
    guard: (host) => t.app.services.outbound.socketGuard('siem', host),
    timeoutMs: 5000,
  });
  forwarder = createForwarder({
    db: t.db,
    clock,
    box: createSecretBox(deriveKey(Buffer.from(SECRET_KEY, 'utf8'), 'audit-sinks')),
    send: (r) => t.app.services.outbound.request('siem', r.url, r),
    sendSyslog,
    syslogEnterpriseNumber: t.config.syslogEnterpriseNumber,
  });
  await startReceiver();
  port = (receiver?.address() as AddressInfo | undefined)?.port ?? 0;
});
afterAll(async () => {
  await stopReceiver();
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

/** Asks for a sink (refused input is a 400; valid input a 202 waiting for another operator). */
const askSink = (payload: object) =>
  t.app.inject({ method: 'POST', url: '/api/v1/audit/sinks', headers: t.asOperator, payload });

it('formats RFC 5424 with escaped structured data and the event JSON as MSG', () => {
  const event = {
    id: '0b7c3c1e-0000-4000-8000-000000000001',
    seq: 7,
    occurredAt: '2026-01-01T00:00:00.005Z',
    action: 'identity.user.updated',
    outcome: 'denied',
    tenantId: null,
  };
  const json = JSON.stringify({ ...event, details: { note: 'a "quoted" ] \\ value, ünïcode' } });
  const parsed = parse5424(formatSyslog({ ...event, action: 'x.y"]\\z' }, json, 'host name\u00e9'));
  expect(parsed).toMatchObject({
    pri: 13 * 8 + 4,
    ts: event.occurredAt,
    msgid: 'audit',
    sdId: sdIdFor(32473),
  });
  expect(parsed.params).toEqual({
    eventId: event.id,
    chain: 'platform',
    seq: '7',
    action: 'x.y"]\\z',
    outcome: 'denied',
  });
  expect(JSON.parse(parsed.msg)).toEqual(JSON.parse(json));
});

it('refuses plain TCP off loopback, bad CAs, and what the egress guard forbids', async () => {
  for (const payload of [
    { kind: 'syslog', url: 'syslog+tcp://siem.example.com:514' },
    { kind: 'syslog', url: 'https://siem.example.com/hook' },
    { kind: 'syslog', url: 'syslog+tls://siem.example.com:6514/path' },
    { kind: 'syslog', url: 'syslog+tls://siem.example.com:6514', caPem: 'not a certificate' },
    { kind: 'webhook', url: 'https://siem.example.com/hook', caPem: cert.cert },
  ]) {
    const res = await askSink(payload);
    expect(res.statusCode, JSON.stringify(payload)).toBe(400);
    expect(res.json().code).toBe('bad_sink');
  }
  // Plain TCP is fine on loopback (a local relay).
  const local = await addSinkApproved(t, clock, { kind: 'syslog', url: 'syslog+tcp://127.0.0.1:1514' });
  // Nothing listens there: stop it at once rather than let it drain (its backlog is dropped, counted).
  const gone = await t.app.inject({
    method: 'DELETE',
    url: `/api/v1/audit/sinks/${local.id}?now=true`,
    headers: t.asOperator,
  });
  expect(gone.statusCode).toBe(200);
  expect(gone.json()).toMatchObject({ state: 'stopped' });
  // The cloud metadata address and a private address not allowed: refused before any connection.
  for (const host of ['169.254.169.254', '10.1.2.3']) {
    await expect(sendSyslog({ url: `syslog+tls://${host}:6514`, ca: null }, ['x'])).rejects.toThrow(
      /refused/,
    );
  }
  // Each refusal is audited in the background: let those land before the next test counts events.
  for (let i = 0; i < 200; i++) {
    const [row] = await t.database.engine.asOwner((o) =>
      o.query<{ n: number }>(
        `SELECT count(*)::int AS n FROM audit_events WHERE action = 'protect.outbound.refused'`,
      ),
    );
    if ((row?.n ?? 0) >= 2) break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  // TLS verification is on: our receiver's self-signed certificate is not trusted without its CA.
  await expect(sendSyslog({ url: `syslog+tls://127.0.0.1:${port}`, ca: null }, ['x'])).rejects.toThrow(
    /self.signed|certificate/i,
  );
});

it('a syslog sink that is down loses nothing: every event arrives once it is back', async () => {
  // Added through four-eyes (two operators); the sink receives what its run wrote from its insert on
  // (audit.sink.created, access.approval.executed) and everything after.
  const created = await addSinkApproved(t, clock, {
    kind: 'syslog',
    url: `syslog+tls://127.0.0.1:${port}`,
    caPem: cert.cert,
  });
  expect(created).toEqual({
    id: expect.any(String),
    kind: 'syslog',
    url: `syslog+tls://127.0.0.1:${port}`,
    approvalId: expect.any(String),
  });
  const ofTheRun = await t.database.engine.asOwner((o) =>
    o.query<{ id: string }>(
      `SELECT id::text FROM audit_events WHERE (action = 'audit.sink.created' AND target_id = $1)
        OR (action = 'access.approval.executed' AND target_id = $2)`,
      [created.id, created.approvalId],
    ),
  );
  expect(ofTheRun).toHaveLength(2);
  clock.advance(1);
  const since = clock.now();

  await seedTenant(t, 'first-co');
  await drain(1);
  expect(received.length).toBeGreaterThanOrEqual(2);

  await stopReceiver();
  for (const slug of ['second-co', 'third-co']) await seedTenant(t, slug);
  const failed = await forwarder.deliverDue();
  expect(failed.delivered).toBe(0);
  expect(failed.failed).toBeGreaterThanOrEqual(2);
  const backlog = await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator });
  expect(backlog.json()[0]).toMatchObject({ kind: 'syslog' });
  expect(backlog.json()[0].pending).toBeGreaterThanOrEqual(2);

  await startReceiver();
  await drain(6);
  const messages = received.map(parse5424);
  const ids = [...new Set(messages.map((m) => m.params.eventId))].sort();
  expect(ids).toEqual([...ofTheRun.map((r) => r.id), ...(await eventIdsSince(since))].sort());
  for (const m of messages) {
    const event = JSON.parse(m.msg);
    expect(event.id).toBe(m.params.eventId);
    expect(m.ts).toBe(event.occurredAt);
    expect(m.params.seq).toBe(String(event.seq));
    expect(m.params.chain).toBe(event.tenantId ?? 'platform');
    expect(m.sdId).toBe('rampart@64999');
  }
  expect(messages.some((m) => m.params.action === 'tenancy.tenant.created')).toBe(true);
  const after = await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator });
  expect(after.json()[0]).toMatchObject({ pending: 0, oldestPendingAt: null });

  const removed = await t.app.inject({
    method: 'DELETE',
    url: `/api/v1/audit/sinks/${created.id}`,
    headers: t.asOperator,
  });
  expect(removed.statusCode).toBe(202);
  expect(removed.json()).toEqual({ state: 'draining', dropped: 0 });
});

// Regression: the transport's time limit was an idle timeout, which every byte from the receiver reset:
// a receiver trickling bytes back and never closing held the delivery (and the whole pass) for good.
it('gives up on a receiver that trickles bytes and never closes, within the time limit', {
  timeout: 20_000,
}, async () => {
  const trickle = net.createServer((socket) => {
    // setTimeout, not setInterval: this suite fakes intervals.
    let timer: NodeJS.Timeout;
    const drip = () => {
      if (socket.destroyed) return;
      socket.write('.');
      timer = setTimeout(drip, 100);
    };
    drip();
    socket.on('close', () => clearTimeout(timer));
    socket.on('error', () => clearTimeout(timer));
  });
  await new Promise<void>((resolve) => trickle.listen(0, '127.0.0.1', resolve));
  try {
    const send = createSyslogTransport({
      guard: (host) => t.app.services.outbound.socketGuard('siem', host),
      timeoutMs: 1000,
    });
    const { port: trickling } = trickle.address() as AddressInfo;
    await expect(send({ url: `syslog+tcp://127.0.0.1:${trickling}`, ca: null }, ['x'])).rejects.toThrow(
      /timed out/,
    );
  } finally {
    trickle.close();
  }
});
