/**
 * Generated over every registered route: each declares who may call it and the permission it needs,
 * and a caller who lacks that permission gets 403 problem+json while nothing in the database changes.
 */
import type { RouteOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isKnownPermission, permissionDef } from '../src/access/index.ts';
import { routeAccessProblem } from '../src/platform/http/access.ts';
import { databaseState, member, operatorSession, type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const registered = vi.hoisted(() => [] as RouteOptions[]);
vi.mock('fastify', async (importOriginal) => {
  const real = await importOriginal<typeof import('fastify')>();
  const build = real.default as unknown as (...args: unknown[]) => import('fastify').FastifyInstance;
  const observed = ((...args: unknown[]) => {
    const app = build(...args);
    app.addHook('onRoute', (route) => {
      registered.push(route);
    });
    return app;
  }) as unknown as typeof real.default;
  return { ...real, default: observed, fastify: observed };
});

const slug = 'perm-co';
const clock = fakeClock(new Date());
let t: TestApp;
let routes: RouteOptions[];
let plain: Person;
let operator: { operatorId: string; headers: { authorization: string } };

beforeAll(async () => {
  t = await buildTestApp({ clock });
  routes = registered.filter((r) => r.method !== 'HEAD');
  await seedTenant(t, slug);
  const admin = await tenantAdmin(t, slug);
  plain = await member(t, slug, admin, 'plain@perm-co.test');
  operator = await operatorSession(t, 'ops2@ops.test', clock);
});
afterAll(async () => {
  await t?.close();
});

const methodOf = (r: RouteOptions) => (Array.isArray(r.method) ? r.method[0] : r.method) as 'GET';
const fill = (url: string) =>
  url
    .replace(':tenant', slug)
    .replace(':slug', slug)
    .replace(':role', 'staff')
    .replace(/:[a-zA-Z]+/g, '0b7c4f6e-9f1a-4c2b-8d3e-5a6f7b8c9d0e');

describe('every route declares its permission', () => {
  it('names a catalogue permission on every operator, user and tenant route (public and metrics are explicit)', () => {
    expect(routes.length).toBeGreaterThan(40);
    const problems = routes
      .map((r) => {
        const problem = routeAccessProblem(r.config, {
          permissionScope: (p) => permissionDef(p)?.scope,
          isKnownGate: (g) => t.app.services.access.critical.isKnownGate(g),
        });
        return [r, problem] as const;
      })
      .filter(([, problem]) => problem !== null)
      .map(([r, problem]) => `${methodOf(r)} ${r.url} ${problem}`);
    expect(problems).toEqual([]);
    const declared = routes.map((r) => r.config?.permission).filter((p) => p !== undefined && p !== 'self');
    for (const p of declared) expect(isKnownPermission(p as string), String(p)).toBe(true);
  });

  it('refuses, at registration, a route without a permission, with an unknown one or of the wrong scope', async () => {
    const probe = await buildTestApp();
    try {
      const h = async () => 'reachable';
      expect(() => probe.app.get('/t1', { config: { access: 'user' } }, h)).toThrow(/declares no permission/);
      expect(() =>
        probe.app.get('/t2', { config: { access: 'tenant', permission: 'users:fly' } }, h),
      ).toThrow(/unknown permission "users:fly"/);
      expect(() =>
        probe.app.get('/t3', { config: { access: 'operator', permission: 'users:read' } }, h),
      ).toThrow(/operator but declares the tenant permission/);
      expect(() => probe.app.get('/t4', { config: { access: 'tenant', permission: 'self' } }, h)).toThrow(
        /self/,
      );
      expect(() =>
        probe.app.get('/t5', { config: { access: 'public', permission: 'users:read' } }, h),
      ).toThrow(/must not declare a permission/);
    } finally {
      await probe.close();
    }
  });
});

describe('a caller without the declared permission', () => {
  it('gets 403 problem+json on every tenant-permission route, and nothing changes', async () => {
    const guarded = routes.filter(
      (r) => (r.config?.access === 'tenant' || r.config?.access === 'user') && r.config.permission !== 'self',
    );
    expect(guarded.length).toBeGreaterThan(15);
    const before = await databaseState(t);
    for (const route of guarded) {
      for (const [who, headers] of [
        ['member', plain.headers],
        // Operators have no standing access to tenant data: without an elevation, refused too.
        ['operator', operator.headers],
      ] as const) {
        if (who === 'operator' && route.config?.access !== 'tenant') continue;
        const res = await t.app.inject({
          method: methodOf(route),
          url: fill(route.url),
          headers,
          payload: {},
        });
        const label = `${who} ${methodOf(route)} ${route.url}`;
        expect(res.statusCode, `${label}: ${res.body}`).toBe(403);
        expect(res.headers['content-type'], label).toMatch(/^application\/problem\+json/);
        expect(res.json().code, label).toBe('forbidden');
        expect(res.json().detail, label).toContain(route.config?.permission);
      }
    }
    const after = await databaseState(t);
    expect(after.tables).toEqual(before.tables);
    // The only new rows anywhere are the audit trail's records of the refusals.
    const added = [...after.audit];
    for (const action of before.audit) added.splice(added.indexOf(action), 1);
    expect(added.length).toBe(guarded.length + guarded.filter((r) => r.config?.access === 'tenant').length);
    expect(new Set(added)).toEqual(new Set(['access.request.denied']));
  });

  it('cannot reach an operator route with a tenant session (401, nothing changes)', async () => {
    const operatorRoutes = routes.filter((r) => r.config?.access === 'operator');
    expect(operatorRoutes.length).toBeGreaterThan(5);
    const before = await databaseState(t);
    for (const route of operatorRoutes) {
      const res = await t.app.inject({
        method: methodOf(route),
        url: fill(route.url),
        headers: plain.headers,
        payload: {},
      });
      expect(res.statusCode, `${methodOf(route)} ${route.url}`).toBe(401);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    }
    expect(await databaseState(t)).toEqual(before);
  });
});
