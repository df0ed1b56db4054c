/**
 * Two Rampart nodes on one PostgreSQL database, each with its own invalidation bus (LISTEN/NOTIFY, or
 * Redis when REDIS_URL is set): a role removed through node A is refused on node B at its next request
 * once the notification arrived, although B had the permission cached.
 */
import type { FastifyInstance } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { allMigrations } from '../src/migrations.ts';
import type { InvalidationBus } from '../src/platform/bus/index.ts';
import { createInProcessBus, openInvalidationBus } from '../src/platform/bus/index.ts';
import type { Database } from '../src/platform/db/index.ts';
import { openDatabase, openPostgresEngine } from '../src/platform/db/index.ts';
import { openBreachedScreen } from '../src/runtime.ts';
import { member, type Person, tenantAdmin, withSecondFactor } from './access-helpers.ts';
import { buildTestApp, engineUnderTest, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const slug = 'nodes-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;

describe.skipIf(engineUnderTest !== 'postgres')('two nodes on one PostgreSQL', () => {
  let a: TestApp;
  let b: { app: FastifyInstance; db: Database; bus: InvalidationBus };
  let busA: InvalidationBus;
  let admin: Person;
  let pat: Person;
  let tenantId: string;

  beforeAll(async () => {
    const urls = { redisUrl: process.env.REDIS_URL, channel: `t_${Date.now()}` };
    a = await buildTestApp();
    const appUrl = a.database.urls?.app ?? '';
    // Node A runs on the test harness's app; give it a real bus by rebuilding with one.
    busA = await openInvalidationBus({ ...urls, databaseUrl: appUrl });
    await a.app.close();
    a.app = await buildApp({
      config: a.config,
      db: a.db,
      logger: false,
      bus: busA,
      breached: await openBreachedScreen(a.config),
    });
    const engine = await openPostgresEngine({ url: appUrl, poolMax: 5 });
    const dbB = await openDatabase(engine, { migrations: allMigrations, migrate: false });
    const busB = await openInvalidationBus({ ...urls, databaseUrl: appUrl });
    b = {
      db: dbB,
      bus: busB,
      app: await buildApp({
        config: a.config,
        db: dbB,
        logger: false,
        bus: busB,
        breached: await openBreachedScreen(a.config),
      }),
    };
    tenantId = (await seedTenant(a, slug)).id;
    admin = await tenantAdmin(a, slug);
    pat = await withSecondFactor(a, slug, await member(a, slug, admin, 'pat@nodes-co.test'));
  });
  afterAll(async () => {
    await b?.app.close();
    await b?.bus.close();
    await b?.db.close();
    await a?.close();
    await busA?.close();
  });

  it('a role removed through node A is refused on node B at the next request', async () => {
    const grant = await a.app.inject({
      method: 'PUT',
      url: api(`/access/users/${pat.userId}/roles/staff`),
      headers: admin.headers,
    });
    expect(grant.statusCode).toBe(200);
    // B caches the permission.
    expect((await b.app.inject({ url: api('/users'), headers: pat.headers })).statusCode).toBe(200);
    expect((await b.app.inject({ url: api('/users'), headers: pat.headers })).statusCode).toBe(200);

    const delivered = new Promise<void>((resolve) => {
      const stop = b.bus.subscribe('access', (key) => {
        if (key === tenantId) {
          stop();
          resolve();
        }
      });
    });
    const removed = await a.app.inject({
      method: 'DELETE',
      url: api(`/access/users/${pat.userId}/roles/staff`),
      headers: admin.headers,
    });
    expect(removed.statusCode).toBe(200);
    await delivered;
    const refused = await b.app.inject({ url: api('/users'), headers: pat.headers });
    expect(refused.statusCode).toBe(403);
    expect(refused.json().code).toBe('forbidden');
  });

  it('a user disabled through node A holds nothing and is signed out on node B', async () => {
    const sam = await withSecondFactor(a, slug, await member(a, slug, admin, 'sam@nodes-co.test'));
    const grant = await a.app.inject({
      method: 'PUT',
      url: api(`/access/users/${sam.userId}/roles/staff`),
      headers: admin.headers,
    });
    expect(grant.statusCode).toBe(200);
    const decide = async () => {
      const res = await b.app.inject({
        method: 'POST',
        url: '/api/v1/access/decisions',
        headers: a.asOperator,
        payload: { checks: [{ tenantId, userId: sam.userId, permission: 'users:read' }] },
      });
      return res.json().allowed[0] as boolean;
    };
    // B caches both the permission and the session.
    expect(await decide()).toBe(true);
    expect((await b.app.inject({ url: api('/users'), headers: sam.headers })).statusCode).toBe(200);

    const heard = (topic: string, key: string) =>
      new Promise<void>((resolve) => {
        const stop = b.bus.subscribe(topic, (k) => {
          if (k === key) {
            stop();
            resolve();
          }
        });
      });
    const delivered = Promise.all([
      heard('access', tenantId),
      heard('identity.sessions', `user:${sam.userId}`),
    ]);
    const disabled = await a.app.inject({
      method: 'POST',
      url: api(`/users/${sam.userId}/disable`),
      headers: admin.headers,
      payload: { reason: 'offboarding' },
    });
    expect(disabled.statusCode, disabled.body).toBe(200);
    await delivered;
    expect(await decide()).toBe(false);
    expect((await b.app.inject({ url: api('/users'), headers: sam.headers })).statusCode).toBe(401);
  });
});

describe('a node that missed the invalidation', () => {
  it('stops serving the old permission once the safety TTL passed (both engines)', async () => {
    const clock = fakeClock(new Date());
    const a = await buildTestApp({ clock });
    // Node B shares the database but not the bus: it never hears of A's change (a lost message).
    const b = await buildApp({
      config: a.config,
      db: a.db,
      clock,
      logger: false,
      bus: createInProcessBus(),
      breached: await openBreachedScreen(a.config),
    });
    try {
      await seedTenant(a, 'lost-co');
      const admin = await tenantAdmin(a, 'lost-co', undefined, clock);
      const pat = await withSecondFactor(
        a,
        'lost-co',
        await member(a, 'lost-co', admin, 'pat@lost-co.test'),
        clock,
      );
      const url = `/api/v1/t/lost-co/access/users/${pat.userId}/roles/staff`;
      expect((await a.app.inject({ method: 'PUT', url, headers: admin.headers })).statusCode).toBe(200);
      expect((await b.inject({ url: '/api/v1/t/lost-co/users', headers: pat.headers })).statusCode).toBe(200);
      expect((await a.app.inject({ method: 'DELETE', url, headers: admin.headers })).statusCode).toBe(200);
      // A refuses at once; B, which heard nothing, until its entry's safety TTL (30 s) runs out.
      expect((await a.app.inject({ url: '/api/v1/t/lost-co/users', headers: pat.headers })).statusCode).toBe(
        403,
      );
      expect((await b.inject({ url: '/api/v1/t/lost-co/users', headers: pat.headers })).statusCode).toBe(200);
      clock.advance(30_001);
      expect((await b.inject({ url: '/api/v1/t/lost-co/users', headers: pat.headers })).statusCode).toBe(403);
    } finally {
      await b.close();
      await a.close();
    }
    // Two apps, a tenant, an admin and a member: seconds when quiet, much more on a loaded machine.
  }, 120_000);
});
