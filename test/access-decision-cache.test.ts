/**
 * The decision API under made-up ids (security review, MEDIUM-LOW: every check of a random tenant id made
 * a permission-cache entry that nothing removed, cost two database transactions, and unknown tenants
 * were never cached, so looping random uuids grew memory and database load). Now: unknown or suspended
 * tenants make no entry, the cache is bounded, unknown tenant ids are remembered briefly (until a tenant
 * with that id is created), and checks that arrive together read the database once. Both engines.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccessService } from '../src/access/index.ts';
import { type TenantRef, toTenantRef } from '../src/identity/index.ts';
import { createInProcessBus } from '../src/platform/bus/index.ts';
import { systemContext } from '../src/platform/context.ts';
import type { Database } from '../src/platform/db/index.ts';
import { createTenancyService } from '../src/tenancy/index.ts';
import { TENANT_IDS_TOPIC } from '../src/tenancy/service.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const ctx = systemContext('test');
let t: TestApp;
let tenant: TenantRef;
let adminId: string;
let memberId: string;

beforeAll(async () => {
  t = await buildTestApp();
  tenant = toTenantRef(await seedTenant(t, 'cache-co'));
  const invite = (email: string, role: 'tenant-admin' | 'member') =>
    t.app.services.identity.accounts.invite(tenant, ctx, { email, displayName: 'Someone', role });
  adminId = (await invite('admin@cache-co.test', 'tenant-admin')).id;
  memberId = (await invite('member@cache-co.test', 'member')).id;
});
afterAll(async () => {
  await t?.close();
});

/** The database with its transactions counted (the real database underneath). */
function counted(db: Database) {
  const n = { tenant: 0, system: 0 };
  const wrapped: Database = {
    ...db,
    withTenant: (tenantId, fn) => {
      n.tenant += 1;
      return db.withTenant(tenantId, fn);
    },
    withSystem: (fn) => {
      n.system += 1;
      return db.withSystem(fn);
    },
  };
  return { db: wrapped, n };
}

const randomChecks = (count: number, tenantId?: string) =>
  Array.from({ length: count }, () => ({
    tenantId: tenantId ?? randomUUID(),
    userId: randomUUID(),
    permission: 'users:read',
  }));

describe('decision API with made-up ids', () => {
  it('answers false for random tenants and users, makes no cache entry, and still knows its users', async () => {
    const { cache } = t.app.services.access;
    const decide = (checks: object[]) =>
      t.app.inject({
        method: 'POST',
        url: '/api/v1/access/decisions',
        headers: t.asOperator,
        payload: { checks },
      });
    const known = [
      { tenantId: tenant.id, userId: adminId, permission: 'users:write' },
      { tenantId: tenant.id, userId: memberId, permission: 'users:read' },
    ];
    expect((await decide(known)).json().allowed).toEqual([true, false]);
    const before = cache.size;
    expect(before).toEqual({ tenants: 1, users: 2 });
    for (let round = 0; round < 5; round++) {
      const res = await decide(randomChecks(100));
      expect(res.statusCode, res.body).toBe(200);
      expect(res.json().allowed).toEqual(Array(100).fill(false));
    }
    expect(cache.size).toEqual(before);
    expect((await decide(known)).json().allowed).toEqual([true, false]);
  });

  it('a suspended tenant makes no entry either', async () => {
    const other = await seedTenant(t, 'cache-off');
    const suspended = await t.app.inject({
      method: 'POST',
      url: '/api/v1/tenants/cache-off/suspend',
      headers: t.asOperator,
      payload: { reason: 'cache test' },
    });
    expect(suspended.statusCode).toBe(200);
    const before = t.app.services.access.cache.size;
    expect(await t.app.services.access.decide(other.id, randomUUID(), 'users:read')).toBe(false);
    expect(t.app.services.access.cache.size).toEqual(before);
  });
});

describe('the permission cache', () => {
  function service(db: Database, clock = fakeClock(new Date())) {
    const bus = createInProcessBus();
    const tenancy = createTenancyService({ db, clock, bus });
    const access = createAccessService({
      db,
      clock,
      bus,
      elevationMaxMinutes: 60,
      userExists: async () => true,
      lockActiveTenantAdmins: async () => [],
      lockUsers: async () => {},
      tenantActive: (id) => tenancy.activeById(id),
      cacheLimits: { tenants: 2, users: 10 },
    });
    return { access, tenancy, bus, clock };
  }

  it('stays within its bounds for many random users, and answers known users right', async () => {
    const { access } = service(t.db);
    try {
      const others = [await seedTenant(t, 'cache-two'), await seedTenant(t, 'cache-three')];
      for (let round = 0; round < 10; round++) {
        const answers = await Promise.all(access.decideAll(randomChecks(20, tenant.id)));
        expect(answers).toEqual(Array(20).fill(false));
        for (const other of others)
          expect(await access.decide(other.id, randomUUID(), 'users:read')).toBe(false);
        expect(access.cache.size.tenants).toBeLessThanOrEqual(2);
        expect(access.cache.size.users).toBeLessThanOrEqual(10);
        expect(await access.decide(tenant.id, adminId, 'roles:write')).toBe(true);
        expect(await access.decide(tenant.id, memberId, 'users:read')).toBe(false);
      }
      expect(access.cache.size.users).toBeGreaterThan(0);
    } finally {
      access.close();
    }
  });

  it('an unknown tenant costs one read, then none; checks that arrive together read once', async () => {
    const { db, n } = counted(t.db);
    const { access } = service(db);
    try {
      const unknownTenant = randomUUID();
      const batch = randomChecks(100, unknownTenant);
      expect(await Promise.all(access.decideAll(batch))).toEqual(Array(100).fill(false));
      expect(n).toEqual({ tenant: 0, system: 1 });
      expect(await Promise.all(access.decideAll(randomChecks(100, unknownTenant)))).toEqual(
        Array(100).fill(false),
      );
      expect(n).toEqual({ tenant: 0, system: 1 });

      // One user, many permissions and repeats: one tenant read, one permission read.
      const userId = randomUUID();
      const checks = ['users:read', 'users:write', 'roles:read', 'users:read'].map((permission) => ({
        tenantId: tenant.id,
        userId,
        permission,
      }));
      expect(await Promise.all(access.decideAll(checks))).toEqual([false, false, false, false]);
      expect(n).toEqual({ tenant: 1, system: 2 });
      expect(await Promise.all(access.decideAll(checks))).toEqual([false, false, false, false]);
      expect(n).toEqual({ tenant: 1, system: 2 });
    } finally {
      access.close();
    }
  });

  it('forgets an unknown tenant id after a while, or at once when a tenant with that id is created', async () => {
    const { tenancy, bus, clock } = service(t.db);
    const insert = (id: string, slug: string) =>
      t.database.engine.asOwner((o) =>
        o.query(`INSERT INTO tenants (id, slug, display_name, region) VALUES ($1, $2, 'Direct', 'eu-de')`, [
          id,
          slug,
        ]),
      );
    // Written behind the service's back (no announcement): the cached "no" stands until its TTL.
    const quiet = randomUUID();
    expect(await tenancy.activeById(quiet)).toBe(false);
    await insert(quiet, 'cache-quiet');
    expect(await tenancy.activeById(quiet)).toBe(false);
    clock.advance(10_001);
    expect(await tenancy.activeById(quiet)).toBe(true);

    const announced = randomUUID();
    expect(await tenancy.activeById(announced)).toBe(false);
    await insert(announced, 'cache-announced');
    await bus.publish(TENANT_IDS_TOPIC, announced);
    expect(await tenancy.activeById(announced)).toBe(true);

    // Creating a tenant announces its id.
    const heard: string[] = [];
    const stop = bus.subscribe(TENANT_IDS_TOPIC, (id) => heard.push(id));
    const created = await tenancy.create(ctx, { slug: 'cache-new', displayName: 'New', region: 'eu-de' });
    stop();
    expect(heard).toEqual([created.id]);
  });
});
