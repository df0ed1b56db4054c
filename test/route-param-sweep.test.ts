/**
 * No client-chosen path parameter produces a 5xx: every registered route is called, as an operator and
 * as a tenant administrator, with each path parameter replaced by values a schema's `uuid` format or a
 * lenient parser may let through (an `urn:uuid:` or upper-case UUID, dot segments, broken
 * percent-encoding, non-ASCII). Generated from the routes as registered, so a new route is swept too.
 */
import type { RouteOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

// Observe every route as it is registered (as routes.test.ts does); Fastify itself is not replaced.
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

const slug = 'sweep-co';
const odd = [
  'urn:uuid:0b7c4f6e-9f1a-4c2b-8d3e-5a6f7b8c9d0e',
  '0B7C4F6E-9F1A-4C2B-8D3E-5A6F7B8C9D0E',
  '..',
  '%E0%A4%A',
  '%C3%A9t%C3%A9',
  '0',
];

let t: TestApp;
let admin: Person;
let routes: { method: string; url: string }[] = [];

beforeAll(async () => {
  // Limits out of the way: a 429 would hide what the route itself answers.
  t = await buildTestApp({ env: { RATE_LIMIT_ENABLED: 'false' } });
  routes = registered
    .flatMap((r) => (Array.isArray(r.method) ? r.method : [r.method]).map((m) => ({ method: m, url: r.url })))
    .filter((r) => r.method !== 'HEAD' && r.url.includes(':'));
  await seedTenant(t, slug);
  admin = await tenantAdmin(t, slug);
});
afterAll(async () => {
  await t?.close();
});

/** The route's URL with `:tenant` as the seeded tenant (or `tenant`) and every other parameter as `value`. */
const fill = (url: string, value: string, tenant = slug) =>
  url.replace(/:([a-zA-Z]+)/g, (_, name: string) => (name === 'tenant' ? tenant : value));

describe('path parameters a client chose', () => {
  it('never produce a 5xx, for an operator or a tenant administrator', async () => {
    expect(routes.length).toBeGreaterThan(20);
    const failures: string[] = [];
    for (const route of routes) {
      const values = route.url.replace(/:tenant\b/g, '').includes(':') ? odd : [];
      const urls = [
        ...values.map((v) => fill(route.url, v)),
        ...odd.slice(0, 3).map((v) => fill(route.url, 'x', v)),
      ];
      for (const url of urls) {
        for (const headers of [t.asOperator, admin.headers]) {
          const res = await t.app.inject({
            method: route.method as 'GET',
            url,
            headers: {
              ...headers,
              ...(route.method === 'GET' ? {} : { 'content-type': 'application/json' }),
            },
            ...(route.method === 'GET' || route.method === 'DELETE' ? {} : { payload: '{}' }),
          });
          if (res.statusCode >= 500)
            failures.push(`${route.method} ${url} → ${res.statusCode} ${res.body.slice(0, 120)}`);
        }
      }
    }
    expect(failures).toEqual([]);
  });
});
