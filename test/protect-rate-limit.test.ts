import { randomInt } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import type { AuditTables } from '../src/audit/index.ts';
import { openBreachedScreen } from '../src/runtime.ts';
import { buildTestApp, createTestDatabase, seedTenant, type TestDatabase, testConfig } from './helpers.ts';

const open: { close(): Promise<void> }[] = [];
afterAll(async () => {
  for (const item of open.reverse()) await item.close();
});

async function testApp(env: Record<string, string>) {
  const t = await buildTestApp({ env });
  open.push(t);
  return t;
}

/** A second app on an existing database: another node of the same deployment. */
async function node(database: TestDatabase, env: Record<string, string>) {
  const config = testConfig(env);
  const app = await buildApp({
    config,
    db: database.db,
    logger: false,
    breached: await openBreachedScreen(config),
  });
  open.push({ close: () => app.close() });
  return app;
}

const signIn = (remoteAddress: string, email = 'nobody@acme.test') => ({
  method: 'POST' as const,
  url: '/api/v1/t/acme/auth/signin',
  remoteAddress,
  payload: { email, password: 'not-the-password-1' },
});

describe('rate limits on one node (memory store)', () => {
  it('refuses the sign-in over the per-address limit with 429 problem+json, Retry-After and RateLimit headers', async () => {
    const t = await testApp({ RATE_LIMITS: 'signin.ip=3/60' });
    await seedTenant(t, 'acme');
    const codes: number[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await t.app.inject(signIn('192.0.2.10', `user${i}@acme.test`));
      codes.push(res.statusCode);
      expect(res.headers['ratelimit-policy']).toContain('"signin-ip";q=3;w=60');
    }
    expect(codes).toEqual([401, 401, 401]);
    const refused = await t.app.inject(signIn('192.0.2.10', 'other@acme.test'));
    expect(refused.statusCode).toBe(429);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.json()).toMatchObject({ code: 'rate_limited', status: 429 });
    expect(Number(refused.headers['retry-after'])).toBeGreaterThan(0);
    expect(refused.headers.ratelimit).toMatch(/^"signin-ip";r=0;t=\d+$/);
    // Another address is not affected, and reads are another class.
    expect((await t.app.inject(signIn('192.0.2.11'))).statusCode).toBe(401);
    expect(
      (await t.app.inject({ url: '/api/v1/tenants', headers: t.asOperator, remoteAddress: '192.0.2.10' }))
        .statusCode,
    ).toBe(200);
    const metrics = await t.app.inject({ url: '/metrics' });
    expect(metrics.body).toMatch(/rampart_rate_limited_total\{class="signin",scope="ip"\} 1/);
  });

  it('counts an IPv6 client by its /64: a fresh address per request from one network is one budget', async () => {
    const t = await testApp({ RATE_LIMITS: 'signin.ip=3/60' });
    await seedTenant(t, 'acme');
    // Three addresses of 2001:db8:1:2::/64, written three ways.
    for (const ip of ['2001:db8:1:2::1', '2001:db8:1:2:aaaa:bbbb:cccc:dddd', '2001:0db8:0001:0002::ffff'])
      expect((await t.app.inject(signIn(ip))).statusCode).toBe(401);
    const refused = await t.app.inject(signIn('2001:db8:1:2:1234::5'));
    expect(refused.statusCode).toBe(429);
    expect(refused.json().detail).toMatch(/your address/);
    // The neighbouring /64 is another client; an IPv4-mapped address counts as its IPv4 address.
    expect((await t.app.inject(signIn('2001:db8:1:3::1'))).statusCode).toBe(401);
    for (let i = 0; i < 3; i++)
      expect((await t.app.inject(signIn(i % 2 ? '::ffff:192.0.2.77' : '192.0.2.77'))).statusCode).toBe(401);
    expect((await t.app.inject(signIn('192.0.2.77'))).statusCode).toBe(429);
  });

  it('charges the failed sign-in budget of an IPv6 client to its /64', async () => {
    const t = await testApp({ RATE_LIMITS: 'failures.ip=3/300' });
    await seedTenant(t, 'acme');
    // Each failure from a fresh address of the same /64, each for another account.
    for (let i = 0; i < 3; i++) {
      const failed = await t.app.inject(signIn(`2001:db8:77:1::${i + 1}`, `user${i}@acme.test`));
      expect(failed.statusCode).toBe(401);
    }
    const throttled = await t.app.inject(signIn('2001:db8:77:1:ffff::9', 'someone@acme.test'));
    expect(throttled.statusCode).toBe(429);
    expect(throttled.json().code).toBe('throttled');
    expect((await t.app.inject(signIn('2001:db8:77:2::1', 'someone@acme.test'))).statusCode).toBe(401);
  });

  it('limits one account across addresses, and one tenant across addresses', async () => {
    const t = await testApp({ RATE_LIMITS: 'api.account=5/60,public.tenant=2/60' });
    // The operator's first two requests.
    await seedTenant(t, 'acme');
    await seedTenant(t, 'beta');
    const asOperator = (ip: string) =>
      t.app.inject({ url: '/api/v1/tenants', headers: t.asOperator, remoteAddress: ip });
    expect((await asOperator('192.0.2.1')).statusCode).toBe(200);
    expect((await asOperator('192.0.2.2')).statusCode).toBe(200);
    expect((await asOperator('192.0.2.2')).statusCode).toBe(200);
    const third = await asOperator('192.0.2.3');
    expect(third.statusCode).toBe(429);
    expect(third.json().detail).toMatch(/this account/);

    const page = (tenant: string, ip: string) =>
      t.app.inject({ url: `/t/${tenant}/signin`, remoteAddress: ip });
    expect((await page('acme', '192.0.2.4')).statusCode).toBe(200);
    expect((await page('acme', '192.0.2.5')).statusCode).toBe(200);
    expect((await page('acme', '192.0.2.6')).statusCode).toBe(429);
    expect((await page('beta', '192.0.2.6')).statusCode).toBe(200);
  });

  it('leaves health probes alone and can be switched off', async () => {
    const t = await testApp({ RATE_LIMITS: 'public.ip=1/60,api.ip=1/60' });
    for (let i = 0; i < 3; i++) expect((await t.app.inject({ url: '/healthz' })).statusCode).toBe(200);
    const off = await testApp({ RATE_LIMITS: 'api.ip=1/60', RATE_LIMIT_ENABLED: 'false' });
    for (let i = 0; i < 3; i++) {
      const res = await off.app.inject({ url: '/api/v1/tenants', headers: off.asOperator });
      expect(res.statusCode).toBe(200);
      expect(res.headers.ratelimit).toBeUndefined();
    }
  });

  it('refuses unknown classes in RATE_LIMITS at start', async () => {
    await expect(buildTestApp({ env: { RATE_LIMITS: 'nosuch.ip=1/60' } })).rejects.toThrow(
      /RATE_LIMITS: "nosuch.ip=1\/60"/,
    );
  });
});

describe('refusals reach the audit trail and the alerts', () => {
  it('counts 429s per minute into one event per source, and raises protect.blocks over the threshold', async () => {
    const t = await testApp({ RATE_LIMITS: 'signin.ip=3/60' });
    await seedTenant(t, 'acme');
    const settings = (
      await t.app.inject({ url: '/api/v1/audit/alert-settings', headers: t.asOperator })
    ).json();
    settings.rules['protect.blocks'].threshold = 5;
    const saved = await t.app.inject({
      method: 'PUT',
      url: '/api/v1/audit/alert-settings',
      headers: t.asOperator,
      payload: settings,
    });
    expect(saved.statusCode, saved.body).toBe(200);
    const codes: number[] = [];
    for (let i = 0; i < 10; i++)
      codes.push((await t.app.inject(signIn('192.0.2.30', `u${i}@acme.test`))).statusCode);
    expect(codes.filter((c) => c === 429)).toHaveLength(7);
    await t.app.services.protection.flushBlockCounts();
    const counted = await t.db.withSystem<AuditTables, { details: unknown }[]>((tx) =>
      tx
        .selectFrom('audit_events')
        .select('details')
        .where('action', '=', 'protect.blocks.counted')
        .execute(),
    );
    expect(counted.map((e) => (typeof e.details === 'string' ? JSON.parse(e.details) : e.details))).toEqual([
      { kind: 'ratelimit', source: 'signin.ip', count: 7 },
    ]);
    await t.app.services.alerts.evaluateChain(null);
    const alerts = (await t.app.inject({ url: '/api/v1/audit/alerts', headers: t.asOperator })).json().items;
    expect(alerts).toEqual([expect.objectContaining({ rule: 'protect.blocks', keys: ['chain'] })]);
  });
});

describe('WAF event intake', () => {
  it("counts an upstream WAF's blocks with Rampart's own, samples them, and refuses bad reports", async () => {
    const t = await testApp({});
    const report = (payload: object) =>
      t.app.inject({ method: 'POST', url: '/api/v1/protect/waf-events', headers: t.asOperator, payload });
    const at = new Date().toISOString();
    const ok = await report({
      source: 'edge-modsecurity',
      events: [
        { at, clientIp: '203.0.113.66', action: 'blocked', ruleId: '942100' },
        { at, clientIp: '203.0.113.66', action: 'blocked', ruleId: '942100' },
        { at, clientIp: '2001:db8::66', action: 'blocked', ruleId: '941100' },
        { at, clientIp: '203.0.113.67', action: 'detected', ruleId: '920350' },
      ],
    });
    expect(ok.statusCode, ok.body).toBe(202);
    expect(ok.json()).toEqual({ accepted: 4, blocked: 3 });
    for (const bad of [
      { source: 'edge', events: [{ at, clientIp: 'not-an-ip', action: 'blocked', ruleId: '1' }] },
      { source: 'edge', events: [] },
      { source: 'Edge WAF', events: [{ at, clientIp: '192.0.2.1', action: 'blocked', ruleId: '1' }] },
      { source: 'edge', events: [{ at, clientIp: '192.0.2.1', action: 'dropped', ruleId: '1' }] },
      { source: 'edge', events: [{ at, clientIp: '192.0.2.1', action: 'blocked', ruleId: '1', extra: 1 }] },
      {
        source: 'edge',
        events: Array.from({ length: 1001 }, () => ({
          at,
          clientIp: '192.0.2.1',
          action: 'blocked',
          ruleId: '1',
        })),
      },
    ]) {
      const res = await report(bad);
      expect(res.statusCode, res.body).toBe(400);
      expect(res.headers['content-type']).toContain('application/problem+json');
    }
    await t.app.services.protection.flushBlockCounts();
    const rows = await t.db.withSystem<AuditTables, { action: string; details: unknown }[]>((tx) =>
      tx
        .selectFrom('audit_events')
        .select(['action', 'details'])
        .where('action', 'in', ['protect.blocks.counted', 'protect.waf.blocked'])
        .orderBy('chain_seq')
        .execute(),
    );
    const seen = rows.map((r) => ({
      action: r.action,
      ...(typeof r.details === 'string' ? JSON.parse(r.details) : r.details),
    }));
    expect(seen).toEqual([
      {
        action: 'protect.waf.blocked',
        address: '203.0.113.66',
        source: 'edge-modsecurity',
        ruleId: '942100',
      },
      {
        action: 'protect.waf.blocked',
        address: '2001:db8::66',
        source: 'edge-modsecurity',
        ruleId: '941100',
      },
      { action: 'protect.blocks.counted', kind: 'waf', source: 'edge-modsecurity', count: 3 },
    ]);
  });
});

describe('when the shared store is unreachable', () => {
  it('fails closed for sign-in (503), open for reads, and writes it to the audit trail', async () => {
    // Nothing listens on port 1: every Redis command fails at once.
    const t = await testApp({ REDIS_URL: 'redis://127.0.0.1:1', RATE_LIMIT_STORE: 'redis' });
    await seedTenant(t, 'acme');
    const refused = await t.app.inject(signIn('192.0.2.20'));
    expect(refused.statusCode).toBe(503);
    expect(refused.json()).toMatchObject({ code: 'unavailable' });
    expect((await t.app.inject({ url: '/api/v1/tenants', headers: t.asOperator })).statusCode).toBe(200);
    expect((await t.app.inject({ url: '/t/acme/signin' })).statusCode).toBe(200);
    const events = await t.db.withSystem<AuditTables, { action: string; details: unknown }[]>((tx) =>
      tx
        .selectFrom('audit_events')
        .select(['action', 'details'])
        .where('action', '=', 'protect.ratelimit.store_unavailable')
        .execute(),
    );
    const details = events.map((e) => (typeof e.details === 'string' ? JSON.parse(e.details) : e.details));
    expect(details).toEqual(
      expect.arrayContaining([
        { store: 'redis', routeClass: 'signin', mode: 'closed' },
        { store: 'redis', routeClass: 'api', mode: 'open' },
      ]),
    );
    // And it is alerted: one platform alert for the store, however many classes failed.
    await t.app.services.alerts.evaluateChain(null);
    const alerts = await t.app.inject({ url: '/api/v1/audit/alerts', headers: t.asOperator });
    expect(alerts.json().items).toEqual([
      expect.objectContaining({ rule: 'protect.incident', keys: ['store:redis'], severity: 'high' }),
    ]);
  });

  it('RATE_LIMIT_FAIL_CLOSED decides which classes are refused', async () => {
    const t = await testApp({
      REDIS_URL: 'redis://127.0.0.1:1',
      RATE_LIMIT_STORE: 'redis',
      RATE_LIMIT_FAIL_CLOSED: 'public',
    });
    await seedTenant(t, 'acme');
    expect((await t.app.inject(signIn('192.0.2.21'))).statusCode).toBe(401);
    expect((await t.app.inject({ url: '/t/acme/signin' })).statusCode).toBe(503);
  });
});

describe('shared between nodes', () => {
  it('PostgreSQL store: after the limit is used up on node A, node B refuses the next request', async () => {
    const env = { RATE_LIMIT_STORE: 'postgres', RATE_LIMITS: 'signin.ip=3/60' };
    const a = await testApp(env);
    await seedTenant(a, 'acme');
    const b = await node(a.database, env);
    for (let i = 0; i < 3; i++)
      expect((await a.app.inject(signIn('192.0.2.30', `u${i}@acme.test`))).statusCode).toBe(401);
    expect((await b.inject(signIn('192.0.2.30'))).statusCode).toBe(429);
    expect((await b.inject(signIn('192.0.2.31'))).statusCode).toBe(401);
  });

  it.skipIf(!process.env.REDIS_URL)(
    'Redis store: after the limit is used up on node A, node B refuses the next request',
    async () => {
      // A fresh address per run: the Redis on 127.0.0.1 outlives the test and is shared with other runs.
      const ip = `198.18.${randomInt(256)}.${randomInt(1, 255)}`;
      const env = {
        RATE_LIMIT_STORE: 'redis',
        REDIS_URL: process.env.REDIS_URL ?? '',
        RATE_LIMITS: 'signin.ip=3/60',
      };
      const database = await createTestDatabase();
      open.push(database);
      const a = await node(database, env);
      const b = await node(database, env);
      // Fresh database: create the tenant through node A's services.
      await a.services.tenancy.create(
        { actor: { type: 'system', id: 'test' }, ip: null, userAgent: null, requestId: null },
        { slug: 'acme', displayName: 'Acme', region: 'eu-de' },
      );
      for (let i = 0; i < 3; i++)
        expect((await a.inject(signIn(ip, `u${i}@acme.test`))).statusCode).toBe(401);
      const refused = await b.inject(signIn(ip));
      expect(refused.statusCode).toBe(429);
      expect(refused.headers.ratelimit).toMatch(/^"signin-ip";r=0;/);
    },
  );
});
