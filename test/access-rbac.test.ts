import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { member, type Person, tenantAdmin, withSecondFactor } from './access-helpers.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

const slug = 'rbac-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
let t: TestApp;
let tenantId: string;
let admin: Person;
let pat: Person;

beforeAll(async () => {
  t = await buildTestApp();
  tenantId = (await seedTenant(t, slug)).id;
  admin = await tenantAdmin(t, slug);
  pat = await withSecondFactor(t, slug, await member(t, slug, admin, 'pat@rbac-co.test'));
});
afterAll(async () => {
  await t?.close();
});

const rolesOf = async (userId: string) =>
  (await t.app.inject({ url: api(`/access/users/${userId}/roles`), headers: admin.headers })).json().roles;

async function auditActions() {
  const rows = await t.db.withTenant<AuditTables, { action: string }[]>(asTenantId(tenantId), (tx) =>
    tx.selectFrom('audit_events').select('action').execute(),
  );
  return rows.map((r) => r.action);
}

describe('roles', () => {
  it('moved the built-in tenant-admin onto roles: the invited admin and member hold their roles', async () => {
    expect(await rolesOf(admin.userId)).toEqual(['tenant-admin']);
    expect(await rolesOf(pat.userId)).toEqual(['member']);
    const roles = (await t.app.inject({ url: api('/access/roles'), headers: admin.headers })).json();
    expect(roles.map((r: { key: string }) => r.key)).toEqual(['tenant-admin', 'staff', 'member']);
    const adminRole = roles.find((r: { key: string }) => r.key === 'tenant-admin');
    expect(adminRole.permissions).toEqual(
      expect.arrayContaining(['users:read', 'roles:assign', 'approvals:decide']),
    );
    expect(adminRole.permissions).not.toContain('tenants:write');
  });

  it('a custom role takes effect at the next request, and its removal too (deny by default)', async () => {
    expect((await t.app.inject({ url: api('/users'), headers: pat.headers })).statusCode).toBe(403);
    const created = await t.app.inject({
      method: 'POST',
      url: api('/access/roles'),
      headers: admin.headers,
      payload: { key: 'support', name: 'Support desk', permissions: ['users:read'] },
    });
    expect(created.statusCode, created.body).toBe(201);
    const granted = await t.app.inject({
      method: 'PUT',
      url: api(`/access/users/${pat.userId}/roles/support`),
      headers: admin.headers,
    });
    expect(granted.statusCode, granted.body).toBe(200);
    expect(granted.json().roles).toEqual(['member', 'support']);
    expect((await t.app.inject({ url: api('/users'), headers: pat.headers })).statusCode).toBe(200);
    // Reading is not writing.
    const unlock = await t.app.inject({
      method: 'POST',
      url: api(`/users/${admin.userId}/unlock`),
      headers: pat.headers,
    });
    expect(unlock.statusCode).toBe(403);
    // Identity's role label follows (2FA "for staff" applies to anyone holding more than member).
    const seen = await t.app.inject({ url: api(`/users/${pat.userId}`), headers: admin.headers });
    expect(seen.json().role).toBe('staff');

    const removed = await t.app.inject({
      method: 'DELETE',
      url: api(`/access/users/${pat.userId}/roles/support`),
      headers: admin.headers,
    });
    expect(removed.json().roles).toEqual(['member']);
    expect((await t.app.inject({ url: api('/users'), headers: pat.headers })).statusCode).toBe(403);
    expect(
      (await t.app.inject({ url: api(`/users/${pat.userId}`), headers: admin.headers })).json().role,
    ).toBe('member');
    expect(await auditActions()).toEqual(
      expect.arrayContaining(['access.role.created', 'access.role.granted', 'access.role.removed']),
    );
  });

  it('changing a role changes what its holders may do at once; deleting it removes its assignments', async () => {
    await t.app.inject({
      method: 'PUT',
      url: api(`/access/users/${pat.userId}/roles/support`),
      headers: admin.headers,
    });
    expect((await t.app.inject({ url: api('/access/roles'), headers: pat.headers })).statusCode).toBe(403);
    const changed = await t.app.inject({
      method: 'PUT',
      url: api('/access/roles/support'),
      headers: admin.headers,
      payload: { name: 'Support desk', permissions: ['users:read', 'roles:read'] },
    });
    expect(changed.statusCode).toBe(200);
    expect((await t.app.inject({ url: api('/access/roles'), headers: pat.headers })).statusCode).toBe(200);
    const deleted = await t.app.inject({
      method: 'DELETE',
      url: api('/access/roles/support'),
      headers: admin.headers,
    });
    expect(deleted.statusCode).toBe(204);
    expect(await rolesOf(pat.userId)).toEqual(['member']);
    expect((await t.app.inject({ url: api('/access/roles'), headers: pat.headers })).statusCode).toBe(403);
  });

  it('refuses unknown and platform permissions, built-in keys, unknown roles and users, and changes nothing', async () => {
    const post = (payload: object) =>
      t.app.inject({ method: 'POST', url: api('/access/roles'), headers: admin.headers, payload });
    const unknown = await post({ key: 'odd', name: 'Odd', permissions: ['users:fly'] });
    expect(unknown.statusCode).toBe(422);
    expect(unknown.json().code).toBe('unknown_permission');
    expect((await post({ key: 'odd', name: 'Odd', permissions: ['tenants:write'] })).json().code).toBe(
      'unknown_permission',
    );
    expect((await post({ key: 'staff', name: 'Mine', permissions: [] })).json().code).toBe('builtin_role');
    expect((await post({ key: 'x', name: 'Short key', permissions: [] })).statusCode).toBe(400);
    const noRole = await t.app.inject({
      method: 'PUT',
      url: api(`/access/users/${pat.userId}/roles/ghost`),
      headers: admin.headers,
    });
    expect(noRole.json().code).toBe('role_not_found');
    const noUser = await t.app.inject({
      method: 'PUT',
      url: api('/access/users/0b7c4f6e-9f1a-4c2b-8d3e-5a6f7b8c9d0e/roles/staff'),
      headers: admin.headers,
    });
    expect(noUser.statusCode).toBe(404);
    expect(noUser.json().code).toBe('user_not_found');
    const roles = (await t.app.inject({ url: api('/access/roles'), headers: admin.headers })).json();
    expect(roles.map((r: { key: string }) => r.key)).toEqual(['tenant-admin', 'staff', 'member']);
  });
});

describe('decision API', () => {
  const decide = (checks: object[], headers: Record<string, string> = t.asOperator) =>
    t.app.inject({ method: 'POST', url: '/api/v1/access/decisions', headers, payload: { checks } });

  it('answers a batch of (tenant, user, permission) checks in order, denying by default', async () => {
    const other = await seedTenant(t, 'rbac-other');
    const res = await decide([
      { tenantId, userId: admin.userId, permission: 'users:write' },
      { tenantId, userId: pat.userId, permission: 'users:write' },
      { tenantId, userId: admin.userId, permission: 'users:fly' },
      { tenantId, userId: admin.userId, permission: 'tenants:write' },
      { tenantId: other.id, userId: admin.userId, permission: 'users:read' },
      { tenantId, userId: '0b7c4f6e-9f1a-4c2b-8d3e-5a6f7b8c9d0e', permission: 'users:read' },
    ]);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toEqual({ allowed: [true, false, false, false, false, false] });
  });

  it('follows role changes, refuses tenant sessions and malformed batches', async () => {
    const check = [{ tenantId, userId: pat.userId, permission: 'users:read' }];
    expect((await decide(check)).json().allowed).toEqual([false]);
    await t.app.inject({
      method: 'PUT',
      url: api(`/access/users/${pat.userId}/roles/staff`),
      headers: admin.headers,
    });
    expect((await decide(check)).json().allowed).toEqual([true]);
    expect((await decide(check, pat.headers)).statusCode).toBe(401);
    expect((await decide([])).statusCode).toBe(400);
    expect((await decide([{ tenantId: 'x', userId: pat.userId, permission: 'users:read' }])).statusCode).toBe(
      400,
    );
    expect((await decide(Array.from({ length: 101 }, () => ({ ...check[0] })))).statusCode).toBe(400);
  });

  it("says no for a suspended tenant's users, from the first check after suspension, and yes again on resume", async () => {
    const check = [{ tenantId, userId: admin.userId, permission: 'users:read' }];
    expect((await decide(check)).json().allowed).toEqual([true]);
    const status = (to: 'suspend' | 'resume') =>
      t.app.inject({
        method: 'POST',
        url: `/api/v1/tenants/${slug}/${to}`,
        headers: t.asOperator,
        payload: to === 'suspend' ? { reason: 'decision API test' } : {},
      });
    expect((await status('suspend')).statusCode).toBe(200);
    expect((await decide(check)).json().allowed).toEqual([false]);
    expect((await status('resume')).statusCode).toBe(200);
    expect((await decide(check)).json().allowed).toEqual([true]);
  });
});
