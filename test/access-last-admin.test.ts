/**
 * A tenant is never left without an active administrator. Removing the tenant-admin role used to go
 * through for the only active administrator (someone else's removal, or one's own), leaving nobody able
 * to assign roles; it is refused now (409 `last_tenant_admin`, nothing changes), and it takes the same
 * locks as disabling a user, so two removals, or a removal and a disable, racing each other cannot both
 * go through.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { databaseState, member, type Person, tenantAdmin, withSecondFactor } from './access-helpers.ts';
import { buildTestApp, engineUnderTest, seedTenant, type TestApp } from './helpers.ts';

let t: TestApp;
afterAll(async () => {
  await t?.close();
});
beforeAll(async () => {
  t = await buildTestApp();
});

/** A tenant of its own per test, with its first administrator. */
async function freshTenant(slug: string) {
  const tenantId = (await seedTenant(t, slug)).id;
  const admin = await tenantAdmin(t, slug);
  const api = (path: string) => `/api/v1/t/${slug}${path}`;
  const roleUrl = (userId: string, role: string) => api(`/access/users/${userId}/roles/${role}`);
  return {
    slug,
    tenantId,
    admin,
    api,
    grant: (by: Person, userId: string, role: string) =>
      t.app.inject({ method: 'PUT', url: roleUrl(userId, role), headers: by.headers }),
    revoke: (by: Person, userId: string, role = 'tenant-admin') =>
      t.app.inject({ method: 'DELETE', url: roleUrl(userId, role), headers: by.headers }),
    disable: (by: Person, userId: string) =>
      t.app.inject({ method: 'POST', url: api(`/users/${userId}/disable`), headers: by.headers }),
    rolesOf: async (userId: string) =>
      (await t.app.inject({ url: api(`/access/users/${userId}/roles`), headers: admin.headers })).json()
        .roles as string[],
    activeAdmins: () =>
      t.db.withTenant<TenantIdentityTables, string[]>(asTenantId(tenantId), async (tx) =>
        (
          await tx
            .selectFrom('users')
            .select('id')
            .where('role', '=', 'tenant-admin')
            .where('status', '=', 'active')
            .execute()
        ).map((r) => r.id),
      ),
    removals: () =>
      t.db.withTenant<AuditTables, unknown[]>(asTenantId(tenantId), async (tx) =>
        (
          await tx
            .selectFrom('audit_events')
            .select('details')
            .where('action', '=', 'access.role.removed')
            .execute()
        ).map((r) => r.details),
      ),
  };
}

describe(`removing tenant-admin (${engineUnderTest})`, () => {
  it('is refused for the only active administrator, by themself or by anyone else, and changes nothing', async () => {
    const c = await freshTenant('last-admin-co');
    // Someone else who may assign roles without being an administrator.
    const plain = await member(t, c.slug, c.admin, 'pat@last-admin-co.test');
    const role = await t.app.inject({
      method: 'POST',
      url: c.api('/access/roles'),
      headers: c.admin.headers,
      payload: { key: 'role-desk', name: 'Role desk', permissions: ['roles:read', 'roles:assign'] },
    });
    expect(role.statusCode, role.body).toBe(201);
    // roles:assign is an administrator power: granting it over HTTP needs a second administrator's
    // approval (docs/access.md, "Four-eyes"), and this tenant has one administrator. The platform grants it.
    await t.app.services.access.roles.assign(c.tenantId, systemContext('test'), plain.userId, 'role-desk');
    expect(await c.rolesOf(plain.userId)).toEqual(['member', 'role-desk']);
    // A role beyond member makes pat staff, and staff need a second factor (the default policy).
    const pat = await withSecondFactor(t, c.slug, plain);
    const before = await databaseState(t);
    const removalsBefore = await c.removals();

    for (const by of [c.admin, pat]) {
      const res = await c.revoke(by, c.admin.userId);
      expect(res.statusCode, res.body).toBe(409);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(res.json()).toMatchObject({
        code: 'last_tenant_admin',
        detail: expect.stringMatching(/only active administrator.*grant tenant-admin to another user/),
      });
    }
    expect(await c.rolesOf(c.admin.userId)).toEqual(['tenant-admin']);
    expect(await c.activeAdmins()).toEqual([c.admin.userId]);
    // Not written: the refusal rolled back with everything else (see docs/access.md).
    expect(await c.removals()).toEqual(removalsBefore);
    expect((await databaseState(t)).tables).toEqual(before.tables);
    // The administrator can still do what only they could.
    expect((await c.revoke(c.admin, pat.userId, 'role-desk')).statusCode).toBe(200);
  });

  it('goes through while another active administrator remains, and the remaining one is then the last', async () => {
    const c = await freshTenant('two-admins-co');
    const second = await tenantAdmin(t, c.slug, 'second@two-admins-co.test');
    const res = await c.revoke(second, c.admin.userId);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().roles).toEqual([]);
    expect(await c.activeAdmins()).toEqual([second.userId]);
    expect(await c.removals()).toEqual([{ role: 'tenant-admin' }]);
    // Removing one's own role as the one remaining administrator is refused.
    expect((await c.revoke(second, second.userId)).json().code).toBe('last_tenant_admin');
    expect(await c.activeAdmins()).toEqual([second.userId]);
  });

  it('counts only active administrators: a disabled one can lose the role, and does not count as another', async () => {
    const c = await freshTenant('disabled-admin-co');
    const gone = await tenantAdmin(t, c.slug, 'gone@disabled-admin-co.test');
    expect((await c.disable(c.admin, gone.userId)).statusCode).toBe(200);
    // gone still holds tenant-admin but is disabled: c.admin is the only active administrator.
    expect((await c.revoke(c.admin, c.admin.userId)).json().code).toBe('last_tenant_admin');
    const res = await c.revoke(c.admin, gone.userId);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().roles).toEqual([]);
    expect(await c.activeAdmins()).toEqual([c.admin.userId]);
  });
});

describe(`racing changes to the last two administrators (${engineUnderTest})`, () => {
  /** Each round adds a new administrator beside the survivor, so that exactly two are active. */
  async function rounds(
    slug: string,
    race: (c: Awaited<ReturnType<typeof freshTenant>>, a: Person, b: Person) => Promise<number[]>,
  ) {
    const c = await freshTenant(slug);
    const people = new Map<string, Person>([[c.admin.userId, c.admin]]);
    for (let round = 0; round < 4; round++) {
      const [survivor] = await c.activeAdmins();
      const a = people.get(survivor ?? '') as Person;
      const b = await tenantAdmin(t, slug, `admin-${round}@${slug}.test`);
      people.set(b.userId, b);
      expect((await c.activeAdmins()).sort()).toEqual([a.userId, b.userId].sort());

      const codes = (await race(c, a, b)).sort();
      // The loser is refused as the last administrator, or no longer holds the permission or a session.
      expect(codes[0], `round ${round}`).toBe(200);
      expect([401, 403, 409], `round ${round}`).toContain(codes[1]);
      expect(await c.activeAdmins(), `round ${round}`).toHaveLength(1);
    }
  }

  it('two administrators removing each other’s tenant-admin: exactly one succeeds', async () => {
    await rounds('remove-race-co', async (c, a, b) => {
      const results = await Promise.all([c.revoke(a, b.userId), c.revoke(b, a.userId)]);
      return results.map((r) => r.statusCode);
    });
  });

  it('one disabling the other while that one removes their tenant-admin: exactly one succeeds', async () => {
    await rounds('mixed-race-co', async (c, a, b) => {
      const results = await Promise.all([c.disable(a, b.userId), c.revoke(b, a.userId)]);
      return results.map((r) => r.statusCode);
    });
  });
});
