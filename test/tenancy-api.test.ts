import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, engineUnderTest, seedTenant, type TestApp } from './helpers.ts';
import { rowHolder } from './race-helpers.ts';

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

  // Review: the status was read unlocked, so two suspends sent together both ran: two audited changes,
  // and the second's reason written over the first's.
  it('runs one of two suspends sent together; the other is refused (409) and changes nothing', async () => {
    const tenant = await seedTenant(t, 'twin-suspend');
    const suspend = (reason: string) =>
      t.app.inject({
        method: 'POST',
        url: '/api/v1/tenants/twin-suspend/suspend',
        headers: t.asOperator,
        payload: { reason },
      });
    let answers: Awaited<ReturnType<typeof suspend>>[];
    if (engineUnderTest === 'postgres') {
      // Both requests queue behind a held lock on the row, then run one after the other.
      const lock = await rowHolder(t);
      try {
        await lock.hold('SELECT 1 FROM tenants WHERE slug = $1 FOR UPDATE', ['twin-suspend']);
        const pending = [suspend('first reason'), suspend('second reason')];
        await lock.waiting(2);
        await lock.release();
        answers = await Promise.all(pending);
      } finally {
        await lock.close();
      }
    } else {
      answers = await Promise.all([suspend('first reason'), suspend('second reason')]);
    }
    expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 409]);
    const winner = answers.find((a) => a.statusCode === 200)?.json();
    const now = await t.app.inject({ url: '/api/v1/tenants/twin-suspend', headers: t.asOperator });
    expect(now.json().suspendedReason).toBe(winner.suspendedReason);
    const events = await t.db.withSystem((tx) =>
      tx
        .selectFrom('audit_events' as never)
        .select('action' as never)
        .where('action' as never, '=', 'tenancy.tenant.suspended' as never)
        .where('target_id' as never, '=', tenant.id as never)
        .execute(),
    );
    expect(events).toHaveLength(1);
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
