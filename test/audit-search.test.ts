/** Search and export of the audit trail over HTTP: filters, cursor pages, access, bad input. */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { defineAuditActions, recordAuditEvent } from '../src/audit/index.ts';
import { timeRange } from '../src/audit/search.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { toAppError } from '../src/platform/http/error-handler.ts';
import { member, type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

interface View {
  id: string;
  seq: number;
  occurredAt: string;
  actor: { type: string; id: string | null; elevationId: string | null };
  action: string;
  target: { type: string | null; id: string | null } | null;
  outcome: string;
  ip: string | null;
}

// An action whose name has `_` where a prefix filter could treat it as a LIKE wildcard: the filter
// `access.role_x` must not match `access.role.*` (no real action is shaped so yet).
defineAuditActions('access', { 'access.role_x.created': 'test fixture' });

let t: TestApp;
let admin: Person;
const base = Date.now() - 3 * 3600_000;
const from = new Date(base - 60_000).toISOString();
const ips = ['203.0.113.1', '203.0.113.2', '203.0.113.9', '2001:db8::7'];

beforeAll(async () => {
  t = await buildTestApp();
  const tenant = await seedTenant(t, 'acme');
  admin = await tenantAdmin(t, 'acme');
  for (let i = 0; i < 60; i++) {
    const clock = { now: () => new Date(base + i * 60_000) };
    const ctx = {
      actor: { type: 'user' as const, id: `u${i % 3}` },
      ip: ips[i % 4] ?? null,
      userAgent: 'test',
      requestId: `r${i}`,
    };
    await t.db.withTenant(asTenantId(tenant.id), (tx) =>
      recordAuditEvent(tx, clock, ctx, {
        tenantId: tenant.id,
        action: i % 2 ? 'identity.signin.password' : 'access.role_x.created',
        outcome: i % 5 === 0 ? 'failure' : 'success',
        target: { type: i % 2 ? 'user' : 'role', id: `t${i % 6}` },
        details: { n: i },
      }),
    );
  }
});
afterAll(async () => {
  await t?.close();
});

async function all(query: string, headers = admin.headers, limit = 7): Promise<View[]> {
  const items: View[] = [];
  let cursor: string | null = null;
  for (let pages = 0; pages < 100; pages++) {
    const url = `/api/v1/t/acme/audit/events?from=${encodeURIComponent(from)}&limit=${limit}${query}${cursor ? `&cursor=${cursor}` : ''}`;
    const res = await t.app.inject({ url, headers });
    expect(res.statusCode, res.body).toBe(200);
    const page = res.json() as { items: View[]; nextCursor: string | null };
    expect(page.items.length).toBeLessThanOrEqual(limit);
    items.push(...page.items);
    cursor = page.nextCursor;
    if (!cursor) return items;
  }
  throw new Error('too many pages');
}

describe('search', () => {
  it('pages newest first with a stable order, no event twice or missed', async () => {
    const paged = await all('');
    const whole = await all('', admin.headers, 500);
    expect(paged.map((e) => e.id)).toEqual(whole.map((e) => e.id));
    expect(new Set(paged.map((e) => e.id)).size).toBe(paged.length);
    for (let i = 1; i < paged.length; i++) {
      const [a, b] = [paged[i - 1] as View, paged[i] as View];
      expect(a.occurredAt > b.occurredAt || (a.occurredAt === b.occurredAt && a.seq > b.seq)).toBe(true);
    }
    expect(paged.filter((e) => /^u\d$/.test(e.actor.id ?? ''))).toHaveLength(60);
  });

  it.each([
    ['&actor=u1', (e: View) => e.actor.id === 'u1'],
    ['&actorType=user', (e: View) => e.actor.type === 'user'],
    ['&action=access.', (e: View) => e.action.startsWith('access.')],
    ['&action=identity.signin.password', (e: View) => e.action === 'identity.signin.password'],
    ['&action=access.role_x', (e: View) => e.action.startsWith('access.role_x')],
    ['&targetType=role&targetId=t2', (e: View) => e.target?.type === 'role' && e.target.id === 't2'],
    ['&outcome=failure', (e: View) => e.outcome === 'failure'],
    ['&ip=203.0.113.0/30', (e: View) => e.ip === '203.0.113.1' || e.ip === '203.0.113.2'],
    ['&ip=2001:db8::7', (e: View) => e.ip === '2001:db8::7'],
    // Blocks are searched as an inet range (ipCondition in search.ts): edges, both families.
    ['&ip=203.0.113.2', (e: View) => e.ip === '203.0.113.2'],
    ['&ip=203.0.113.8/29', (e: View) => e.ip === '203.0.113.9'],
    ['&ip=203.0.113.9/32', (e: View) => e.ip === '203.0.113.9'],
    ['&ip=203.0.113.0/24', (e: View) => e.ip?.startsWith('203.0.113.') === true],
    ['&ip=0.0.0.0/0', (e: View) => e.ip?.includes('.') === true],
    ['&ip=2001:db8::/32', (e: View) => e.ip === '2001:db8::7'],
    ['&ip=2001:db8::6/127', (e: View) => e.ip === '2001:db8::7'],
    [
      '&actor=u2&outcome=failure&action=access.',
      (e: View) => e.actor.id === 'u2' && e.outcome === 'failure' && e.action.startsWith('access.'),
    ],
  ])('filter %s returns exactly the matching events', async (query, match) => {
    const everything = await all('', admin.headers, 500);
    const expected = everything.filter(match).map((e) => e.id);
    expect(expected.length).toBeGreaterThan(0);
    expect((await all(query)).map((e) => e.id)).toEqual(expected);
  });

  it('a time range keeps only events inside it', async () => {
    const lo = new Date(base + 10 * 60_000).toISOString();
    const hi = new Date(base + 20 * 60_000).toISOString();
    const res = await t.app.inject({
      url: `/api/v1/t/acme/audit/events?actor=u0&from=${encodeURIComponent(lo)}&to=${encodeURIComponent(hi)}&limit=500`,
      headers: admin.headers,
    });
    const items = (res.json() as { items: View[] }).items;
    // u0 acts at minutes 0, 3, 6, ...: 12, 15, 18 fall in [10, 20).
    expect(items.map((e) => e.occurredAt)).toEqual(
      [18, 15, 12].map((m) => new Date(base + m * 60_000).toISOString()),
    );
  });
});

describe('bad input is a 4xx problem and changes nothing', () => {
  it.each([
    ['cursor=not-a-cursor', 400, 'bad_cursor'],
    [`cursor=${Buffer.from('2026-01-01T00:00:00.000000Z|x').toString('base64url')}`, 400, 'bad_cursor'],
    ['unknown=1', 400, 'validation_failed'],
    ['limit=5000', 400, 'validation_failed'],
    ['from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z', 400, 'bad_filter'],
    ['from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', 400, 'range_too_large'],
    // Date.parse rolls these over or allows them; PostgreSQL refuses them (was a 500).
    [`cursor=${Buffer.from('2026-02-30T00:00:00.000000Z|1').toString('base64url')}`, 400, 'bad_cursor'],
    [`cursor=${Buffer.from('0000-01-01T00:00:00.000000Z|1').toString('base64url')}`, 400, 'bad_cursor'],
    ['ip=fe80::1%25eth0', 400, 'bad_filter'],
    ['ip=not-an-ip', 400, 'bad_filter'],
    ['ip=10.0.0.0/99', 400, 'bad_filter'],
    ['action=Bad%25', 400, 'validation_failed'],
    ['outcome=maybe', 400, 'validation_failed'],
  ])('%s -> %i %s', async (query, status, code) => {
    const res = await t.app.inject({ url: `/api/v1/t/acme/audit/events?${query}`, headers: admin.headers });
    expect(res.statusCode).toBe(status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json().code).toBe(code);
  });

  // The date-time format admits a leap second, which Date cannot hold (was a 500; review).
  it.each([
    ['to=2026-06-30T23:59:60Z', 400, 'validation_failed'],
    ['from=2026-06-30T23:59:60Z&to=2026-07-01T00:00:00Z', 400, 'validation_failed'],
  ])('search and export: %s -> %i %s', async (query, status, code) => {
    for (const path of ['events', 'export']) {
      const res = await t.app.inject({
        url: `/api/v1/t/acme/audit/${path}?${query}`,
        headers: admin.headers,
      });
      expect(res.statusCode, path).toBe(status);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      expect(res.json().code).toBe(code);
    }
  });

  it('takes the offset forms Date reads (+01:00, +0100, z), refuses +01 as invalid input', async () => {
    const hoursOnly = await t.app.inject({
      url: '/api/v1/t/acme/audit/events?from=2026-06-01T00:00:00%2B01',
      headers: admin.headers,
    });
    expect(hoursOnly.statusCode).toBe(400);
    expect(hoursOnly.json().code).toBe('validation_failed');
    for (const offset of ['%2B01:00', '%2B0100', 'z']) {
      const res = await t.app.inject({
        url: `/api/v1/t/acme/audit/events?from=2026-06-01T00:00:00${offset}`,
        headers: admin.headers,
      });
      expect(res.statusCode, `${offset}: ${res.body}`).toBe(200);
    }
  });

  it('a time Date cannot hold is refused by the range check too (approved exports run with stored filters)', () => {
    expect(() => timeRange({ to: '2026-06-30T23:59:60Z' }, new Date())).toThrow(/leap second/);
    expect(() => timeRange({ from: '2026-06-30T23:59:60Z' }, new Date())).toThrow(/leap second/);
  });
});

describe('a value the database refuses', () => {
  it('is a 400 problem naming what to check, not a 500 (the backstop behind the checks above)', async () => {
    const error = await t.db
      .withSystem((tx) => sql`SELECT '2026-02-30'::timestamptz`.execute(tx))
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(error).not.toBeNull();
    const problem = toAppError(error as Error);
    expect(problem.spec.status).toBe(400);
    expect(problem.code).toBe('value_not_accepted');
    // Anything else from the database stays a 500.
    const other = await t.db
      .withSystem((tx) => sql`SELECT * FROM no_such_table`.execute(tx))
      .then(
        () => null,
        (e: unknown) => e,
      );
    expect(toAppError(other as Error).spec.status).toBe(500);
  });
});

describe('access', () => {
  it('refuses anonymous callers and members without audit:read', async () => {
    expect((await t.app.inject({ url: '/api/v1/t/acme/audit/events' })).statusCode).toBe(401);
    const plain = await member(t, 'acme', admin, 'member@acme.test');
    expect(
      (await t.app.inject({ url: '/api/v1/t/acme/audit/events', headers: plain.headers })).statusCode,
    ).toBe(403);
    expect(
      (await t.app.inject({ url: '/api/v1/t/acme/audit/export', headers: plain.headers })).statusCode,
    ).toBe(403);
  });

  it('operators search platform events only; tenant events stay invisible to them', async () => {
    const res = await t.app.inject({ url: '/api/v1/audit/events?limit=500', headers: t.asOperator });
    expect(res.statusCode).toBe(200);
    const items = (res.json() as { items: (View & { tenantId?: string })[] }).items;
    expect(items.some((e) => e.action === 'tenancy.tenant.created')).toBe(true);
    expect(items.some((e) => /^u\d$/.test(e.actor.id ?? ''))).toBe(false);
    // A tenant route is closed to an operator without an elevation.
    expect(
      (await t.app.inject({ url: '/api/v1/t/acme/audit/events', headers: t.asOperator })).statusCode,
    ).toBe(403);
  });
});

describe('export', () => {
  const filters = { actor: 'u1', from };
  const query = `actor=u1&from=${encodeURIComponent(from)}`;
  const download = (who: Person, q: string, method: 'GET' | 'HEAD' = 'GET') =>
    t.app.inject({ method, url: `/api/v1/t/acme/audit/export?${q}`, headers: who.headers });
  const askFor = (who: Person, payload: object) =>
    t.app.inject({
      method: 'POST',
      url: '/api/v1/t/acme/audit/export-requests',
      headers: who.headers,
      payload,
    });
  const approvals = (id: string, what: string, who: Person, payload?: object) =>
    t.app.inject({
      method: 'POST',
      url: `/api/v1/t/acme/access/approvals/${id}/${what}`,
      headers: who.headers,
      ...(payload ? { payload } : {}),
    });
  let bea: Person;
  beforeAll(async () => {
    bea = await tenantAdmin(t, 'acme', 'bea@acme.test');
  });

  it('needs a second person by default: asked, approved, then one download with exactly those filters', async () => {
    const direct = await download(admin, query);
    expect(direct.statusCode).toBe(403);
    expect(direct.json().code).toBe('approval_required');
    expect(direct.json().detail).toMatch(/POST \/api\/v1\/t\/\{tenant\}\/audit\/export-requests/);

    // Filters no export could run with are refused, not put up for approval.
    const bad = await askFor(admin, { from, to: from });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().code).toBe('bad_filter');

    const asked = await askFor(admin, filters);
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    expect(approval).toMatchObject({ action: 'audit.export', params: filters, status: 'pending' });
    const use = `${query}&approval=${approval.id}`;
    expect((await download(admin, use)).json().code).toBe('approval_not_approved');
    expect((await approvals(approval.id, 'approve', admin)).json().code).toBe('self_approval');
    expect((await approvals(approval.id, 'approve', bea)).statusCode).toBe(200);

    // It runs by downloading only; nobody else may use it; other filters and HEAD do not use it up.
    const run = await approvals(approval.id, 'execute', admin, { params: filters });
    expect(run.statusCode).toBe(409);
    expect(run.json().code).toBe('runs_on_route');
    expect((await download(bea, use)).json().code).toBe('not_requester');
    const other = await download(admin, `actor=u2&from=${encodeURIComponent(from)}&approval=${approval.id}`);
    expect(other.statusCode).toBe(409);
    expect(other.json().code).toBe('params_changed');
    expect((await download(admin, use, 'HEAD')).statusCode).toBe(403);

    const res = await download(admin, use);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toMatch(/^application\/x-ndjson/);
    const lines = res.body
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as View);
    expect(lines).toHaveLength(20);
    expect(lines.every((e) => e.actor.id === 'u1')).toBe(true);
    const audited = await all('&action=audit.trail.exported');
    expect(audited).toHaveLength(1);
    expect(audited[0]?.actor.id).toBe(admin.userId);

    // Used up: the same approval serves no second download.
    const again = await download(admin, use);
    expect(again.statusCode).toBe(409);
    expect(again.json().code).toBe('approval_not_approved');
    expect(await all('&action=access.approval.executed')).toHaveLength(1);
    expect(await all('&action=access.approval.params_refused')).toHaveLength(1);
    expect(await all('&action=audit.trail.exported')).toHaveLength(1);
  });

  it('a tenant without exports on its four-eyes list downloads directly', async () => {
    const { access } = t.app.services;
    const tenantId = (await t.app.services.tenancy.get('acme')).id;
    const current = await access.settings.get(tenantId);
    const ctx = {
      actor: { type: 'system' as const, id: 'test' },
      ip: null,
      userAgent: null,
      requestId: null,
    };
    await access.settings.update(tenantId, ctx, {
      ...current,
      fourEyesActions: current.fourEyesActions.filter((a) => a !== 'audit.export'),
    });
    try {
      const asked = await askFor(admin, filters);
      expect(asked.statusCode).toBe(200);
      expect(asked.json().status).toBe('not_required');
      const res = await download(admin, query);
      expect(res.statusCode, res.body).toBe(200);
      expect(res.body.trimEnd().split('\n')).toHaveLength(20);
    } finally {
      await access.settings.update(tenantId, ctx, current);
    }
  });

  it('the platform export is for operators', async () => {
    const res = await t.app.inject({ url: '/api/v1/audit/export', headers: t.asOperator });
    expect(res.statusCode).toBe(200);
    expect(res.body.trimEnd().split('\n').length).toBeGreaterThan(0);
    expect((await t.app.inject({ url: '/api/v1/audit/export', headers: admin.headers })).statusCode).toBe(
      401,
    );
  });
});
