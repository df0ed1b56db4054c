// Two nodes (buildApp twice) on one database: what one node revokes or suspends, the other refuses at
// its next request, although both answer authenticated requests from their caches.
import { randomBytes } from 'node:crypto';
import type { FastifyInstance } from 'fastify';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { createOperatorService, toTenantRef } from '../src/identity/index.ts';
import { SESSIONS_TOPIC } from '../src/identity/session-cache.ts';
import { createInProcessBus, type InvalidationBus, openInvalidationBus } from '../src/platform/bus/index.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { openBreachedScreen } from '../src/runtime.ts';
import { TENANTS_TOPIC } from '../src/tenancy/service.ts';
import {
  createTestDatabase,
  engineUnderTest,
  fakeClock,
  seedTenant,
  type TestApp,
  type TestDatabase,
  testConfig,
} from './helpers.ts';
import { adminSession, inviteAndAccept, strongPassword } from './identity-helpers.ts';

const clock = fakeClock(new Date());
const ctx = { actor: { type: 'system' as const, id: 'test' }, ip: null, userAgent: null, requestId: null };
const channel = `rampart_test_${randomBytes(6).toString('hex')}`;
let database: TestDatabase;
let a: TestApp;
let b: FastifyInstance;
let busA: InvalidationBus;
let busB: InvalidationBus;
const slug = 'two-nodes';
let admin: Awaited<ReturnType<typeof adminSession>>;

/**
 * One bus per node on PostgreSQL (LISTEN/NOTIFY, or Redis pub/sub when REDIS_URL is set); on PGlite the
 * two apps share this process, which is one node, and so one in-process bus.
 */
async function openBuses(): Promise<[InvalidationBus, InvalidationBus]> {
  if (!database.urls) {
    const shared = createInProcessBus();
    return [shared, shared];
  }
  const options = { databaseUrl: database.urls.app, redisUrl: process.env.REDIS_URL, channel };
  return [
    await openInvalidationBus({ ...options, name: `${channel}-a` }),
    await openInvalidationBus({ ...options, name: `${channel}-b` }),
  ];
}

async function node(bus: InvalidationBus) {
  const config = testConfig();
  return buildApp({
    config,
    db: database.db,
    clock,
    logger: false,
    bus,
    breached: await openBreachedScreen(config),
  });
}

/** Resolves when `bus` (node B's) has received the next message on `topic`. */
function arrival(bus: InvalidationBus, topic: string, wanted?: string): Promise<string> {
  return new Promise((resolve) => {
    const off = bus.subscribe(topic, (key) => {
      if (wanted !== undefined && key !== wanted) return;
      off();
      resolve(key);
    });
  });
}

beforeAll(async () => {
  database = await createTestDatabase();
  [busA, busB] = await openBuses();
  const appA = await node(busA);
  b = await node(busB);
  const issued = await createOperatorService({
    db: database.db,
    clock,
    tokenTtlDays: 30,
    publicUrl: 'http://localhost',
  }).bootstrap('ops@example.test');
  if (!issued) throw new Error('no operator');
  a = {
    app: appA,
    db: database.db,
    database,
    config: testConfig(),
    operatorToken: issued.token,
    asOperator: { authorization: `Bearer ${issued.token}` },
    close: async () => {},
  };
  await seedTenant(a, slug);
  admin = await adminSession(a, slug);
});

afterAll(async () => {
  await a?.app.close();
  await b?.close();
  await busA?.close();
  if (busB !== busA) await busB?.close();
  await database?.close();
});

async function memberToken(email: string): Promise<string> {
  const existing = await a.app.inject({
    method: 'POST',
    url: `/api/v1/t/${slug}/auth/signin`,
    payload: { email, password: strongPassword },
  });
  if (existing.statusCode === 200) return (existing.json() as { token: string }).token;
  await inviteAndAccept(a, slug, admin, email);
  const signIn = await a.app.inject({
    method: 'POST',
    url: `/api/v1/t/${slug}/auth/signin`,
    payload: { email, password: strongPassword },
  });
  expect(signIn.statusCode).toBe(200);
  return (signIn.json() as { token: string }).token;
}

const me = (app: FastifyInstance, token: string, kind: 'bearer' | 'cookie' = 'bearer') =>
  app.inject({
    method: 'GET',
    url: `/api/v1/t/${slug}/me/sessions`,
    headers:
      kind === 'bearer' ? { authorization: `Bearer ${token}` } : { cookie: `rampart_session=${token}` },
  });

describe(`two nodes on one ${engineUnderTest} database`, () => {
  it('GET /me/session describes the session a request is signed in with', async () => {
    const token = await memberToken('who@two-nodes.test');
    const res = await b.inject({
      method: 'GET',
      url: `/api/v1/t/${slug}/me/session`,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(res.statusCode).toBe(200);
    expect(res.json()).toMatchObject({
      email: 'who@two-nodes.test',
      role: 'member',
      kind: 'bearer',
      stage: 'active',
    });
    const listed = (await me(b, token)).json() as Array<{ id: string; current: boolean }>;
    expect(listed.find((s) => s.current)?.id).toBe(res.json().id);
    const anonymous = await b.inject({ method: 'GET', url: `/api/v1/t/${slug}/me/session` });
    expect(anonymous.statusCode).toBe(401);
  });

  it('a session signed out through A is refused through B at its next request', async () => {
    const token = await memberToken('out@two-nodes.test');
    expect((await me(b, token)).statusCode).toBe(200);
    expect((await me(a.app, token)).statusCode).toBe(200);
    const told = arrival(busB, SESSIONS_TOPIC);
    const out = await a.app.inject({
      method: 'POST',
      url: `/api/v1/t/${slug}/auth/signout`,
      headers: { authorization: `Bearer ${token}` },
    });
    expect(out.statusCode).toBeLessThan(300);
    await told;
    expect((await me(b, token)).statusCode).toBe(401);
    expect((await me(a.app, token)).statusCode).toBe(401);
  });

  it('a sign-out answers only once its message is published to the other nodes', async () => {
    // A third node whose bus holds session messages until released: the sign-out must wait for it.
    const inner = createInProcessBus();
    let release!: () => void;
    const held = new Promise<void>((resolve) => {
      release = resolve;
    });
    let published!: () => void;
    const publishing = new Promise<void>((resolve) => {
      published = resolve;
    });
    const gated: InvalidationBus = {
      ...inner,
      async publish(topic, key) {
        if (topic === SESSIONS_TOPIC) {
          published();
          await held;
        }
        return inner.publish(topic, key);
      },
    };
    const c = await node(gated);
    try {
      const token = await memberToken('held@two-nodes.test');
      const out = c.inject({
        method: 'POST',
        url: `/api/v1/t/${slug}/auth/signout`,
        headers: { authorization: `Bearer ${token}` },
      });
      await publishing;
      const waited = await Promise.race([
        out.then(() => 'answered'),
        new Promise((resolve) => setTimeout(() => resolve('still waiting'), 250)),
      ]);
      expect(waited).toBe('still waiting');
      release();
      expect((await out).statusCode).toBeLessThan(300);
      expect((await me(c, token)).statusCode).toBe(401);
    } finally {
      release();
      await c.close();
      await inner.close();
    }
  });

  it('an admin revoking all of a user’s sessions through A ends them on B', async () => {
    const email = 'all@two-nodes.test';
    const first = await memberToken(email);
    const second = await memberToken(email);
    expect((await me(b, first)).statusCode).toBe(200);
    expect((await me(b, second)).statusCode).toBe(200);
    const sessions = (await me(b, first)).json() as Array<{ id: string }>;
    expect(sessions).toHaveLength(2);
    const userId = await userIdOf(email);
    const told = arrival(busB, SESSIONS_TOPIC);
    const revoked = await a.app.inject({
      method: 'DELETE',
      url: `/api/v1/t/${slug}/users/${userId}/sessions`,
      headers: admin.headers,
    });
    expect(revoked.json()).toEqual({ revoked: 2 });
    expect(await told).toBe(`user:${userId}`);
    expect((await me(b, first)).statusCode).toBe(401);
    expect((await me(b, second)).statusCode).toBe(401);
  });

  it('a password change through A ends the user’s sessions on B; the current one goes on under its new token', async () => {
    const email = 'pw@two-nodes.test';
    const other = await memberToken(email);
    const { identity } = a.app.services;
    const tenant = toTenantRef(await a.app.services.tenancy.requireActive(slug));
    // Passwords change on the web only: the current session is a browser's (cookie) session.
    const web = await identity.signIn(tenant, email, strongPassword, 'cookie', ctx);
    const current = web.token;
    expect((await me(b, current, 'cookie')).statusCode).toBe(200);
    expect((await me(b, other)).statusCode).toBe(200);
    const session = await identity.sessions.validate(tenant, current);
    if (!session) throw new Error('current session not valid');
    const told = arrival(busB, SESSIONS_TOPIC, `user:${session.userId}`);
    const { token: renewed } = await identity.accounts.changePassword(
      tenant,
      { ...ctx, actor: { type: 'user', id: session.userId } },
      session,
      strongPassword,
      'Another-Strong-Passphrase-77',
    );
    expect(await told).toBe(`user:${session.userId}`);
    expect((await me(b, other)).statusCode).toBe(401);
    expect((await me(b, current, 'cookie')).statusCode).toBe(401);
    expect((await me(b, renewed, 'cookie')).statusCode).toBe(200);
  });

  it('a tenant suspended through A is refused by B at its next request, and served again once resumed', async () => {
    const token = await memberToken('suspend@two-nodes.test');
    expect((await me(b, token)).statusCode).toBe(200);
    let told = arrival(busB, TENANTS_TOPIC);
    const suspended = await a.app.inject({
      method: 'POST',
      url: `/api/v1/tenants/${slug}/suspend`,
      headers: a.asOperator,
      payload: { reason: 'unpaid invoices' },
    });
    expect(suspended.statusCode).toBe(200);
    expect(await told).toBe(slug);
    const refused = await me(b, token);
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ code: 'tenant_suspended' });
    told = arrival(busB, TENANTS_TOPIC);
    await a.app.inject({ method: 'POST', url: `/api/v1/tenants/${slug}/resume`, headers: a.asOperator });
    await told;
    expect((await me(b, token)).statusCode).toBe(200);
  });

  it('answers from its cache: a revocation written behind the bus’s back holds only until the safety TTL', async () => {
    const token = await memberToken('behind@two-nodes.test');
    expect((await me(b, token)).statusCode).toBe(200);
    const userId = await userIdOf('behind@two-nodes.test');
    await database.db.withTenant(asTenantId(await tenantId()), (tx) =>
      tx
        .updateTable('sessions' as never)
        .set({ revoked_at: clock.now() } as never)
        .where('user_id' as never, '=', userId as never)
        .execute(),
    );
    // No message: B still holds the session it validated a moment ago (proof that it did not ask the database).
    expect((await me(b, token)).statusCode).toBe(200);
    clock.advance(31_000);
    expect((await me(b, token)).statusCode).toBe(401);
  });

  it.skipIf(engineUnderTest === 'pglite')(
    'drops its caches when its bus connection is lost, so a missed revocation does not survive it',
    async () => {
      const token = await memberToken('reset@two-nodes.test');
      expect((await me(b, token)).statusCode).toBe(200);
      const userId = await userIdOf('reset@two-nodes.test');
      await database.db.withTenant(asTenantId(await tenantId()), (tx) =>
        tx
          .updateTable('sessions' as never)
          .set({ revoked_at: clock.now() } as never)
          .where('user_id' as never, '=', userId as never)
          .execute(),
      );
      expect((await me(b, token)).statusCode).toBe(200);
      const reset = new Promise<void>((resolve) => {
        const off = busB.onReset(() => {
          off();
          resolve();
        });
      });
      expect(await dropListener(`${channel}-b`)).toBe(1);
      await reset;
      expect((await me(b, token)).statusCode).toBe(401);
    },
  );
});

async function tenantId(): Promise<string> {
  return (await a.app.services.tenancy.requireActive(slug)).id;
}

async function userIdOf(email: string): Promise<string> {
  const list = await a.app.inject({ method: 'GET', url: `/api/v1/t/${slug}/users`, headers: admin.headers });
  const users = (list.json() as { items: Array<{ id: string; email: string }> }).items;
  const user = users.find((u) => u.email === email);
  if (!user) throw new Error(`no user ${email}`);
  return user.id;
}

/** Cuts node B's bus listener the way a network failure or a server restart would. */
async function dropListener(name: string): Promise<number> {
  const redisUrl = process.env.REDIS_URL;
  if (redisUrl) {
    const redis = new Redis(redisUrl);
    try {
      const ids = String(await redis.client('LIST'))
        .split('\n')
        .filter((line) => line.includes(` name=${name}-sub `))
        .map((line) => /id=(\d+)/.exec(line)?.[1] ?? '');
      for (const id of ids) await redis.client('KILL', 'ID', id);
      return ids.length;
    } finally {
      redis.disconnect();
    }
  }
  const admin = new pg.Client({ connectionString: process.env.DATABASE_URL });
  await admin.connect();
  try {
    const { rows } = await admin.query(
      `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1 AND query LIKE 'LISTEN%'`,
      [name],
    );
    return rows.length;
  } finally {
    await admin.end();
  }
}
