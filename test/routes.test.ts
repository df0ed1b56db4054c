/**
 * Cross-cutting HTTP behaviour of the whole app: every route declares who may call it and answers no
 * client-chosen path parameter with a 5xx, the OpenAPI document describes the API, responses are
 * filtered by schema, metrics are guarded, health endpoints answer, and request ids are echoed safely.
 */
import { Type } from '@sinclair/typebox';
import type { RouteOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

// Observe every route as it is registered: each Fastify instance the app builds gets one extra onRoute
// hook before any plugin runs. Fastify itself is not replaced.
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

const METRICS_TOKEN = 'metrics-token-0123456789-abcdefghijklmnop';
const uuid = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

let t: TestApp;
/** The routes of the first app, as registered (later tests add probe routes to the second app). */
let appRoutes: RouteOptions[] = [];
/** A second app whose /metrics needs METRICS_TOKEN; it is also the one routes are added to. */
let guarded: TestApp;

beforeAll(async () => {
  t = await buildTestApp();
  appRoutes = [...registered];
  guarded = await buildTestApp({ env: { METRICS_TOKEN } });
  await seedTenant(t, 'route-co');
});
afterAll(async () => {
  await t?.close();
  await guarded?.app.close();
});

describe('rate-limit classes', () => {
  // Review: the hosted reset, invitation and enrolment-confirm forms fell into the `public` class
  // (600 a minute per address, no per-account limit) where the API's own forms were `signin`.
  it('every POST whose body carries a password, a code or a link token is limited like a sign-in', () => {
    const secretFields = ['password', 'currentPassword', 'newPassword', 'code', 'token'];
    const takesSecret = (route: RouteOptions) => {
      const body = (route.schema as { body?: { properties?: Record<string, unknown> } } | undefined)?.body;
      return secretFields.some((field) => body?.properties?.[field] !== undefined);
    };
    const posts = appRoutes.filter((r) => r.method === 'POST' && takesSecret(r));
    expect(posts.map((r) => r.url)).toEqual(
      expect.arrayContaining(['/api/v1/t/:tenant/auth/signin', '/t/:tenant/reset', '/t/:tenant/invite']),
    );
    const other = posts
      .filter((r) => (r.config as { rateLimit?: unknown } | undefined)?.rateLimit !== 'signin')
      .map((r) => `${r.url}: ${String((r.config as { rateLimit?: unknown }).rateLimit)}`);
    expect(other).toEqual([]);
  });
});

describe('access rules', () => {
  it('every registered route declares config.access', () => {
    const routes = appRoutes.filter((r) => r.method !== 'HEAD');
    expect(routes.map((r) => r.url)).toEqual(
      expect.arrayContaining(['/healthz', '/readyz', '/metrics', '/openapi.json', '/api/v1/tenants']),
    );
    const missing = routes.filter((r) => !r.config?.access).map((r) => `${r.method} ${r.url}`);
    expect(missing).toEqual([]);
  });

  it('refuses, at registration, a route that declares no access rule', () => {
    expect(() => guarded.app.get('/naked', async () => 'reachable by anyone')).toThrow(
      /GET \/naked declares no access rule/,
    );
  });

  it('every non-public route refuses an anonymous caller', async () => {
    const routes = appRoutes.filter(
      (r) => r.method !== 'HEAD' && r.config?.access !== 'public' && r.config?.access !== 'metrics',
    );
    expect(routes.length).toBeGreaterThan(0);
    for (const route of routes) {
      const method = (Array.isArray(route.method) ? route.method[0] : route.method) as 'GET';
      const url = route.url.replace(/:([a-zA-Z]+)/g, 'route-co');
      const res = await t.app.inject({ method, url, remoteAddress: '203.0.113.7' });
      // Fastify validates params, query and body before the access hook runs, so a malformed anonymous
      // request may hear 400 or 415 first; hosted HTML pages send the browser to sign in instead. Never served.
      if (res.statusCode >= 300 && res.statusCode < 400) {
        expect(res.headers.location, `${method} ${url} redirects to sign-in`).toMatch(/signin/);
        continue;
      }
      expect(res.statusCode, `${method} ${url}`).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, `${method} ${url}`).toBeLessThan(500);
      // The API answers problem+json; hosted pages answer HTML for people.
      if (url.startsWith('/api/')) expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    }
  });
});

describe('responses are shaped by their schemas', () => {
  it('drops fields a handler returns but the schema does not declare', async () => {
    const app = guarded.app;
    const Reply = Type.Object({ id: Type.String(), name: Type.String() }, { additionalProperties: false });
    app.get(
      '/test/leak-probe',
      { config: { access: 'public' }, schema: { hide: true, response: { 200: Reply } } },
      async () => ({ id: 'x1', name: 'probe', passwordHash: '$argon2id$v=19$...', token: 'rmp_op_secret' }),
    );
    const res = await app.inject({ url: '/test/leak-probe' });
    expect(res.json()).toEqual({ id: 'x1', name: 'probe' });
    expect(res.body).not.toMatch(/argon2id|rmp_op_secret/);
  });

  it('answers a tenant with exactly the declared fields', async () => {
    const res = await t.app.inject({ url: '/api/v1/tenants/route-co', headers: t.asOperator });
    expect(Object.keys(res.json()).sort()).toEqual(
      ['createdAt', 'displayName', 'id', 'region', 'slug', 'status', 'suspendedAt', 'suspendedReason'].sort(),
    );
  });
});

describe('/openapi.json', () => {
  it('is an OpenAPI 3.1 document listing the tenants API with resolvable references', async () => {
    const res = await t.app.inject({ url: '/openapi.json' });
    expect(res.statusCode).toBe(200);
    const doc = res.json();
    expect(doc.openapi).toBe('3.1.0');
    expect(Object.keys(doc.paths)).toEqual(
      expect.arrayContaining([
        '/api/v1/tenants',
        '/api/v1/tenants/{slug}',
        '/api/v1/tenants/{slug}/suspend',
        '/api/v1/tenants/{slug}/resume',
        '/healthz',
        '/readyz',
      ]),
    );
    expect(doc.paths['/metrics']).toBeUndefined();
    expect(Object.keys(doc.paths['/api/v1/tenants'])).toEqual(expect.arrayContaining(['get', 'post']));
    for (const ref of collectRefs(doc)) {
      expect(ref, 'only local component references').toMatch(/^#\/components\/schemas\//);
      const name = ref.slice('#/components/schemas/'.length);
      expect(doc.components.schemas[name], `${ref} resolves`).toBeDefined();
    }
  });

  it('documents a success response schema for every operation', async () => {
    const doc = (await t.app.inject({ url: '/openapi.json' })).json();
    for (const [path, operations] of Object.entries(doc.paths as Record<string, Record<string, Operation>>)) {
      for (const [method, operation] of Object.entries(operations)) {
        const success = Object.entries(operation.responses ?? {}).filter(([status]) => /^2/.test(status));
        expect(success.length, `${method.toUpperCase()} ${path} declares a 2xx response`).toBeGreaterThan(0);
      }
    }
  });

  it('lists every visible registered route', async () => {
    const doc = (await t.app.inject({ url: '/openapi.json' })).json();
    const documented = new Set(
      Object.entries(doc.paths as Record<string, object>).flatMap(([path, ops]) =>
        Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`),
      ),
    );
    const visible = appRoutes.filter(
      (r) => r.method !== 'HEAD' && !(r.schema as { hide?: boolean } | undefined)?.hide,
    );
    for (const route of visible) {
      const path = route.url.replace(/:([a-zA-Z]+)/g, '{$1}');
      const methods = Array.isArray(route.method) ? route.method : [route.method];
      for (const method of methods) expect(documented, `${method} ${path}`).toContain(`${method} ${path}`);
    }
  });
});

interface Operation {
  responses?: Record<string, unknown>;
}

function collectRefs(value: unknown, into: string[] = []): string[] {
  if (Array.isArray(value)) for (const item of value) collectRefs(item, into);
  else if (value && typeof value === 'object') {
    for (const [key, inner] of Object.entries(value)) {
      if (key === '$ref' && typeof inner === 'string') into.push(inner);
      else collectRefs(inner, into);
    }
  }
  return into;
}

describe('/metrics', () => {
  it('reports request latency by route template and the database pool', async () => {
    await t.app.inject({ url: '/api/v1/tenants', headers: t.asOperator });
    const res = await t.app.inject({ url: '/metrics' }); // inject's default peer is 127.0.0.1
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/^text\/plain/);
    expect(res.body).toMatch(
      /rampart_http_request_duration_seconds_bucket\{[^}]*route="\/api\/v1\/tenants"[^}]*status="200"/,
    );
    expect(res.body).toMatch(
      new RegExp(`rampart_db_pool_connections\\{engine="${t.db.engine.kind}",state="total"\\} \\d+`),
    );
    expect(res.body).toContain('rampart_process_resident_memory_bytes');
  });

  it('labels unmatched paths as one series, not by raw URL', async () => {
    await t.app.inject({ url: '/no/such/path/8d1f' });
    const res = await t.app.inject({ url: '/metrics' });
    expect(res.body).not.toContain('8d1f');
  });

  it('refuses a non-loopback caller when no METRICS_TOKEN is set, even with a forged X-Forwarded-For', async () => {
    for (const headers of [{}, { 'x-forwarded-for': '127.0.0.1' }]) {
      const res = await t.app.inject({ url: '/metrics', remoteAddress: '203.0.113.9', headers });
      expect(res.statusCode).toBe(401);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.body).not.toContain('rampart_');
    }
  });

  it('with METRICS_TOKEN set, accepts the token and nothing else (not even loopback)', async () => {
    const ok = await guarded.app.inject({
      url: '/metrics',
      remoteAddress: '203.0.113.9',
      headers: { authorization: `Bearer ${METRICS_TOKEN}` },
    });
    expect(ok.statusCode).toBe(200);
    expect(ok.body).toContain('rampart_http_request_duration_seconds');
    for (const [remoteAddress, authorization] of [
      ['203.0.113.9', `Bearer ${METRICS_TOKEN}x`],
      ['203.0.113.9', `Bearer ${METRICS_TOKEN.slice(0, -1)}`],
      ['127.0.0.1', undefined],
    ] as const) {
      const res = await guarded.app.inject({
        url: '/metrics',
        remoteAddress,
        headers: authorization ? { authorization } : {},
      });
      expect(res.statusCode, `${remoteAddress} ${authorization}`).toBe(401);
    }
  });
});

describe('/healthz and /readyz', () => {
  it('answers alive and ready', async () => {
    const health = await t.app.inject({ url: '/healthz' });
    expect(health.statusCode).toBe(200);
    expect(health.json()).toEqual({ status: 'ok' });
    const ready = await t.app.inject({ url: '/readyz' });
    expect(ready.statusCode).toBe(200);
    expect(ready.json()).toEqual({ status: 'ready', engine: t.db.engine.kind });
  });

  it('readyz answers 503 with Retry-After once the database is gone, revealing no internals', async () => {
    await guarded.database.close();
    const res = await guarded.app.inject({ url: '/readyz' });
    expect(res.statusCode).toBe(503);
    expect(res.headers['retry-after']).toBe('5');
    expect(res.json()).toMatchObject({ code: 'unavailable' });
    expect(res.body).not.toMatch(/postgres|pglite|ECONN|closed/i);
    expect((await guarded.app.inject({ url: '/healthz' })).statusCode).toBe(200);
  });
});

describe('X-Request-Id', () => {
  it('keeps a safe incoming id, on success and in problems', async () => {
    const id = 'trace-4f2a9c1e:span.01';
    const ok = await t.app.inject({ url: '/healthz', headers: { 'x-request-id': id } });
    expect(ok.headers['x-request-id']).toBe(id);
    const problem = await t.app.inject({ url: '/api/v1/tenants', headers: { 'x-request-id': id } });
    expect(problem.headers['x-request-id']).toBe(id);
    expect(problem.json().requestId).toBe(id);
  });

  it.each([
    ['too short', 'abc'],
    ['too long', 'x'.repeat(65)],
    ['spaces', 'has spaces 12345'],
    ['markup', '<script>alert(1)</script>'],
    ['a log-line forgery', 'ok-12345678"}\n{"level":60'],
  ])('replaces an unsafe one (%s) with a fresh UUID', async (_what, id) => {
    const res = await t.app.inject({ url: '/healthz', headers: { 'x-request-id': id } });
    expect(res.headers['x-request-id']).toMatch(uuid);
  });

  it('gives every request its own id when none is sent', async () => {
    const a = await t.app.inject({ url: '/healthz' });
    const b = await t.app.inject({ url: '/healthz' });
    expect(a.headers['x-request-id']).toMatch(uuid);
    expect(a.headers['x-request-id']).not.toBe(b.headers['x-request-id']);
  });
});

/** Every string schema in a route's params, query and body, with where it sits. */
function stringSchemas(
  node: unknown,
  at: string,
  out: Array<{ at: string; schema: Record<string, unknown> }>,
) {
  if (!node || typeof node !== 'object') return out;
  const schema = node as Record<string, unknown>;
  if (schema.type === 'string') out.push({ at, schema });
  for (const [key, value] of Object.entries(schema)) {
    if (key === 'properties' && value && typeof value === 'object') {
      for (const [name, sub] of Object.entries(value)) stringSchemas(sub, `${at}/${name}`, out);
    } else if (Array.isArray(value)) {
      for (const [i, sub] of value.entries()) stringSchemas(sub, `${at}[${i}]`, out);
    } else if (value && typeof value === 'object') stringSchemas(value, at, out);
  }
  return out;
}

describe('ids a client sends', () => {
  // Access review (HIGH): an id pattern of the access routes took upper case; the checks around the
  // queries compare text, so the same user in upper case got past "not yourself" and "keep an admin".
  const upperUuid = '0B7C4F6E-9F1A-4C2B-8D3E-5A6F7B8C9D0E';
  /** A pattern for ids (it refuses plain text) that takes one in upper case. */
  const idPattern = (pattern: string) =>
    new RegExp(pattern).test(upperUuid) && !new RegExp(pattern).test('x');
  it('are never taken in upper case by a pattern of their own (the uuid format is lower case only)', () => {
    const own: string[] = [];
    for (const route of appRoutes) {
      const schema = (route.schema ?? {}) as Record<string, unknown>;
      for (const part of ['params', 'querystring', 'body'])
        for (const { at, schema: s } of stringSchemas(schema[part], `${route.url} ${part}`, []))
          if (typeof s.pattern === 'string' && idPattern(s.pattern)) own.push(`${at}: ${s.pattern}`);
    }
    expect(own).toEqual([]);
  });

  it('in upper case are refused by the uuid format with a message saying the form', async () => {
    const res = await t.app.inject({
      method: 'POST',
      url: `/api/v1/operators/${upperUuid}/revoke-tokens`,
      headers: t.asOperator,
    });
    expect(res.statusCode, res.body).toBe(400);
    expect(res.json().errors[0].message).toMatch(/lower case/);
  });
});

const sweepSlug = 'sweep-co';
const odd = [
  'urn:uuid:0b7c4f6e-9f1a-4c2b-8d3e-5a6f7b8c9d0e',
  '0B7C4F6E-9F1A-4C2B-8D3E-5A6F7B8C9D0E',
  '..',
  '%E0%A4%A',
  '%C3%A9t%C3%A9',
  '0',
];

/** The route's URL with `:tenant` as the seeded tenant (or `tenant`) and every other parameter as `value`. */
const fill = (url: string, value: string, tenant = sweepSlug) =>
  url.replace(/:([a-zA-Z]+)/g, (_, name: string) => (name === 'tenant' ? tenant : value));

/**
 * No client-chosen path parameter produces a 5xx: every route, as an operator and as a tenant
 * administrator, with each path parameter replaced by values a schema's `uuid` format or a lenient parser
 * may let through (an `urn:uuid:` or upper-case UUID, dot segments, broken percent-encoding, non-ASCII).
 */
describe('path parameters a client chose', () => {
  // An app of its own, limits out of the way: a 429 would hide what the route itself answers.
  let sweep: TestApp;
  let admin: Person;
  let routes: { method: string; url: string }[] = [];
  beforeAll(async () => {
    sweep = await buildTestApp({ env: { RATE_LIMIT_ENABLED: 'false' } });
    routes = appRoutes
      .flatMap((r) =>
        (Array.isArray(r.method) ? r.method : [r.method]).map((m) => ({ method: m, url: r.url })),
      )
      .filter((r) => r.method !== 'HEAD' && r.url.includes(':'));
    await seedTenant(sweep, sweepSlug);
    admin = await tenantAdmin(sweep, sweepSlug);
  });
  afterAll(async () => {
    await sweep?.close();
  });

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
        for (const headers of [sweep.asOperator, admin.headers]) {
          const res = await sweep.app.inject({
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
