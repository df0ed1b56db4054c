import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { systemClock } from '../src/platform/context.ts';
import { createProtection, type Protection } from '../src/protect/index.ts';
import { OutboundRefusedError, type ResolvedAddress } from '../src/protect/outbound/client.ts';
import { openBreachedScreen } from '../src/runtime.ts';
import { createTestDatabase, type TestDatabase, testConfig } from './helpers.ts';

/** A listener that counts every TCP connection it accepts: the proof that nothing was sent. */
async function listener(
  host: string,
  handler: Parameters<typeof createServer>[1] = (_q, s) => s.end('hello'),
) {
  const server = createServer(handler);
  let connections = 0;
  server.on('connection', () => {
    connections += 1;
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, resolve);
  });
  return { server, port: (server.address() as AddressInfo).port, connections: () => connections };
}

const names: Record<string, ResolvedAddress[]> = {
  'loopback.test': [{ address: '127.0.0.1', family: 4 }],
  'rebind.test': [
    { address: '93.184.216.34', family: 4 },
    { address: '127.0.0.1', family: 4 },
  ],
  'mapped.test': [{ address: '::ffff:127.0.0.1', family: 6 }],
  'allowed.test': [{ address: '127.0.0.2', family: 4 }],
};
const resolve = async (hostname: string) => names[hostname] ?? [];

let database: TestDatabase;
let protection: Protection;
let target: Awaited<ReturnType<typeof listener>>;
let target6: Awaited<ReturnType<typeof listener>> | null = null;
let redirector: Awaited<ReturnType<typeof listener>>;
const servers: Server[] = [];

beforeAll(async () => {
  database = await createTestDatabase();
  protection = createProtection({
    // 127.0.0.2 stands in for a reachable public host; everything else on loopback must stay unreached.
    config: testConfig({
      OUTBOUND_ALLOW_PRIVATE: '127.0.0.2/32',
      OUTBOUND_MAX_BYTES: '2048',
      OUTBOUND_MAX_REDIRECTS: '2',
    }),
    db: database.db,
    clock: systemClock,
    log: pino({ level: 'silent' }),
    resolve,
  });
  target = await listener('127.0.0.1');
  target6 = await listener('::1').catch(() => null);
  redirector = await listener('127.0.0.2', (request, response) => {
    const to = new URL(request.url ?? '/', 'http://x').searchParams.get('to');
    if (request.url?.startsWith('/big')) return response.end('x'.repeat(4096));
    if (to) {
      response.writeHead(302, { location: to });
      return response.end();
    }
    response.end('fine');
  });
  servers.push(target.server, redirector.server, ...(target6 ? [target6.server] : []));
});
afterAll(async () => {
  await protection?.close();
  for (const server of servers) server.close();
  await database?.close();
});

async function refusal(url: string) {
  const error = await protection.outbound.request('test', url).then(
    () => null,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(OutboundRefusedError);
  return (error as OutboundRefusedError).refusal;
}

async function auditedRefusals() {
  const rows = await database.db.withSystem<AuditTables, { details: unknown }[]>((tx) =>
    tx
      .selectFrom('audit_events')
      .select('details')
      .where('action', '=', 'protect.outbound.refused')
      .execute(),
  );
  return rows.map(
    (r) => (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, string>,
  );
}

describe('outbound guard', () => {
  it('refuses loopback, private, link-local (cloud metadata) and mapped addresses, sending nothing', async () => {
    expect(await refusal(`http://127.0.0.1:${target.port}/`)).toMatchObject({ reason: 'address_loopback' });
    if (target6)
      expect(await refusal(`http://[::1]:${target6.port}/`)).toMatchObject({ reason: 'address_loopback' });
    else expect(await refusal('http://[::1]:9/')).toMatchObject({ reason: 'address_loopback' });
    expect(await refusal('http://169.254.169.254/latest/meta-data/')).toMatchObject({
      reason: 'address_linkLocal',
    });
    expect(await refusal('http://10.0.0.1/')).toMatchObject({ reason: 'address_private' });
    expect(await refusal(`http://[::ffff:127.0.0.1]:${target.port}/`)).toMatchObject({
      reason: 'address_loopback',
    });
    // Regression: the deprecated IPv4-compatible form (::127.0.0.1) was judged global unicast.
    expect(await refusal(`http://[::127.0.0.1]:${target.port}/`)).toMatchObject({
      reason: 'address_ipv4Compatible',
    });
    expect(target.connections()).toBe(0);
    expect(target6?.connections() ?? 0).toBe(0);
  });

  it('refuses a name that resolves to loopback, after resolution, including one answer among public ones', async () => {
    expect(await refusal(`http://loopback.test:${target.port}/`)).toMatchObject({
      reason: 'address_loopback',
      host: 'loopback.test',
      address: '127.0.0.1',
    });
    expect(await refusal(`http://rebind.test:${target.port}/`)).toMatchObject({ address: '127.0.0.1' });
    expect(await refusal(`http://mapped.test:${target.port}/`)).toMatchObject({ reason: 'address_loopback' });
    expect(target.connections()).toBe(0);
  });

  it('refuses `localhost` through the system resolver', async () => {
    const system = createProtection({
      config: testConfig(),
      db: database.db,
      clock: systemClock,
      log: pino({ level: 'silent' }),
    });
    const error = await system.outbound
      .request('test', `http://localhost:${target.port}/`)
      .catch((e: unknown) => e);
    await system.close();
    expect((error as OutboundRefusedError).refusal).toMatchObject({
      reason: 'address_loopback',
      host: 'localhost',
    });
    expect(target.connections()).toBe(0);
  });

  it('checks every redirect hop: a redirect to loopback is refused and never followed', async () => {
    const before = redirector.connections();
    const hop = `http://allowed.test:${redirector.port}/?to=${encodeURIComponent(`http://127.0.0.1:${target.port}/`)}`;
    expect(await refusal(hop)).toMatchObject({ reason: 'address_loopback', host: '127.0.0.1' });
    expect(redirector.connections()).toBeGreaterThan(before);
    expect(target.connections()).toBe(0);
  });

  it('reaches an allowed address, caps redirects and response size, and refuses other schemes', async () => {
    const ok = await protection.outbound.request('test', `http://allowed.test:${redirector.port}/`);
    expect({ status: ok.status, body: await ok.text() }).toEqual({ status: 200, body: 'fine' });
    const self = `http://allowed.test:${redirector.port}/`;
    const loop = `${self}?to=${encodeURIComponent(`${self}?to=${encodeURIComponent(`${self}?to=${encodeURIComponent(self)}`)}`)}`;
    expect(await refusal(loop)).toMatchObject({ reason: 'too_many_redirects' });
    expect(await refusal(`http://allowed.test:${redirector.port}/big`)).toMatchObject({
      reason: 'response_too_large',
    });
    expect(await refusal('file:///etc/passwd')).toMatchObject({ reason: 'scheme_not_allowed' });
  });

  it('writes each refusal to the audit trail', async () => {
    await vi.waitFor(async () => {
      const audited = await auditedRefusals();
      expect(audited).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ purpose: 'test', host: '127.0.0.1', reason: 'address_loopback' }),
          expect.objectContaining({ host: '::1', reason: 'address_loopback' }),
          expect.objectContaining({ host: '169.254.169.254', reason: 'address_linkLocal' }),
          expect.objectContaining({ host: '10.0.0.1', reason: 'address_private' }),
          expect.objectContaining({ host: 'loopback.test', address: '127.0.0.1' }),
          expect.objectContaining({ host: 'localhost', reason: 'address_loopback' }),
          expect.objectContaining({ reason: 'too_many_redirects' }),
          expect.objectContaining({ reason: 'response_too_large' }),
        ]),
      );
    });
  });
});

describe('outbound host allowlist', () => {
  it('refuses hosts outside OUTBOUND_ALLOW_HOSTS before resolving them', async () => {
    const lookups: string[] = [];
    const narrow = createProtection({
      config: testConfig({ OUTBOUND_ALLOW_HOSTS: 'api.pwnedpasswords.com,*.siem.example' }),
      db: database.db,
      clock: systemClock,
      log: pino({ level: 'silent' }),
      resolve: async (host) => {
        lookups.push(host);
        return [];
      },
    });
    const error = await narrow.outbound.request('test', 'https://evil.example/').catch((e: unknown) => e);
    await narrow.close();
    expect((error as OutboundRefusedError).refusal).toMatchObject({
      reason: 'host_not_allowed',
      host: 'evil.example',
    });
    expect(lookups).toEqual([]);
  });
});

describe('the breached-password range client goes through the guard', () => {
  it('reaches an allowed range API, and a range API on a forbidden address is refused (fail mode) and audited', async () => {
    const password = 'correct horse battery staple 42';
    const sha1 = createHash('sha1').update(password).digest('hex').toUpperCase();
    const range = await listener('127.0.0.2', (request, response) => {
      response.end(request.url?.endsWith(sha1.slice(0, 5)) ? `${sha1.slice(5)}:12\r\n` : '');
    });
    servers.push(range.server);
    const allowedConfig = testConfig({
      BREACHED_ONLINE: 'fail-open',
      BREACHED_RANGE_URL: `http://allowed.test:${range.port}/range/`,
    });
    const screen = await openBreachedScreen(allowedConfig, protection.outbound);
    expect(await screen.check(password)).toMatchObject({ breached: true });
    expect(range.connections()).toBeGreaterThan(0);

    const forbidden = await openBreachedScreen(
      testConfig({
        BREACHED_ONLINE: 'fail-closed',
        BREACHED_RANGE_URL: `http://127.0.0.1:${target.port}/range/`,
      }),
      protection.outbound,
    );
    expect(await forbidden.check(password)).toMatchObject({ breached: true, onlineUnavailable: true });
    expect(target.connections()).toBe(0);
    await vi.waitFor(async () =>
      expect(await auditedRefusals()).toEqual(
        expect.arrayContaining([expect.objectContaining({ purpose: 'breached-range', host: '127.0.0.1' })]),
      ),
    );
  });
});

describe('who chose the destination', () => {
  // Regression: OUTBOUND_ALLOW_PRIVATE (an internal SIEM) admitted tenant admins' webhooks too.
  it("judges a destination a tenant chose against OUTBOUND_TENANT_ALLOW_PRIVATE, not the operators' list", async () => {
    const url = `http://allowed.test:${redirector.port}/`;
    const error = await protection.outbound.request('test', url, { chosenBy: 'tenant' }).catch((e) => e);
    expect((error as OutboundRefusedError).refusal).toMatchObject({ reason: 'address_loopback' });
    expect((await protection.outbound.request('test', url, { chosenBy: 'operator' })).status).toBe(200);
  });
});
