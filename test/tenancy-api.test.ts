import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
});
afterAll(async () => {
  await t?.close();
});

describe('tenants API', () => {
  it('creates, lists, suspends and resumes a tenant, auditing each change', async () => {
    const tenant = await seedTenant(t, 'acme-bank');
    expect(tenant.slug).toBe('acme-bank');
    const list = await t.app.inject({ url: '/api/v1/tenants', headers: t.asOperator });
    expect(list.json().items.map((x: { slug: string }) => x.slug)).toContain('acme-bank');

    const suspended = await t.app.inject({
      method: 'POST',
      url: '/api/v1/tenants/acme-bank/suspend',
      headers: t.asOperator,
      payload: { reason: 'unpaid invoices' },
    });
    expect(suspended.statusCode).toBe(200);
    expect(suspended.json()).toMatchObject({ status: 'suspended', suspendedReason: 'unpaid invoices' });
    await expect(t.app.services.tenancy.requireActive('acme-bank')).rejects.toMatchObject({
      code: 'tenant_suspended',
    });

    const resumed = await t.app.inject({
      method: 'POST',
      url: '/api/v1/tenants/acme-bank/resume',
      headers: t.asOperator,
    });
    expect(resumed.json()).toMatchObject({ status: 'active', suspendedReason: null });

    const actions = await t.db.withSystem(async (tx) =>
      (
        await tx
          .selectFrom('audit_events' as never)
          .select('action' as never)
          .execute()
      ).map((r) => (r as { action: string }).action),
    );
    expect(actions).toEqual(
      expect.arrayContaining([
        'tenancy.tenant.created',
        'tenancy.tenant.suspended',
        'tenancy.tenant.resumed',
      ]),
    );
  });

  it('pages through tenants with an opaque cursor', async () => {
    for (const slug of ['page-a', 'page-b', 'page-c']) await seedTenant(t, slug);
    const seen: string[] = [];
    let cursor: string | null = null;
    do {
      const url: string = `/api/v1/tenants?limit=2${cursor ? `&cursor=${cursor}` : ''}`;
      const res = await t.app.inject({ url, headers: t.asOperator });
      expect(res.statusCode).toBe(200);
      const body = res.json();
      seen.push(...body.items.map((x: { slug: string }) => x.slug));
      cursor = body.nextCursor;
    } while (cursor);
    expect(seen).toEqual([...seen].sort());
    expect(seen).toEqual(expect.arrayContaining(['page-a', 'page-b', 'page-c']));
  });

  it('refuses a second tenant with the same slug', async () => {
    await seedTenant(t, 'dupe-co');
    const res = await t.app.inject({
      method: 'POST',
      url: '/api/v1/tenants',
      headers: t.asOperator,
      payload: { slug: 'dupe-co', displayName: 'Again', region: 'eu-de' },
    });
    expect(res.statusCode).toBe(409);
    expect(res.json().code).toBe('slug_taken');
  });

  it('refuses callers without a valid operator token', async () => {
    for (const authorization of [undefined, 'Bearer rmp_op_not-a-real-token-at-all', 'Basic Zm9vOmJhcg==']) {
      const res = await t.app.inject({
        url: '/api/v1/tenants',
        headers: authorization ? { authorization } : {},
      });
      expect(res.statusCode).toBe(401);
      expect(res.headers['content-type']).toContain('application/problem+json');
    }
  });
});
