/**
 * Escalation through roles and stale four-eyes approvals (security review of src/access):
 * - HIGH: a custom role got around the "grant tenant-admin" four-eyes rule, and anyone who could write
 *   or assign roles could give permissions they did not hold, themselves included;
 * - MEDIUM: an approval still counted after its approver lost `approvals:decide`;
 * - MEDIUM: an approved settings change wrote back the whole document it was asked with, silently
 *   undoing changes made in between.
 * Runs on both engines.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import {
  actingAs,
  databaseState,
  member,
  operatorSession,
  type Person,
  tenantAdmin,
  withSecondFactor,
} from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const slug = 'climb-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const clock = fakeClock(new Date());
let t: TestApp;
let tenantId: string;
let ada: Person;
let bea: Person;
let cy: Person;
let pat: Person;
let sam: Person;

beforeAll(async () => {
  t = await buildTestApp({ clock });
  tenantId = (await seedTenant(t, slug)).id;
  ada = await tenantAdmin(t, slug, 'ada@climb-co.test', clock);
  bea = await tenantAdmin(t, slug, 'bea@climb-co.test', clock);
  cy = await tenantAdmin(t, slug, 'cy@climb-co.test', clock);
  pat = await member(t, slug, ada, 'pat@climb-co.test');
  sam = await member(t, slug, ada, 'sam@climb-co.test');
});
afterAll(async () => {
  await t?.close();
});

type Headers = { headers: Record<string, string> };
const call = (who: Headers, method: 'PUT' | 'POST' | 'DELETE', path: string, payload?: object) =>
  t.app.inject({ method, url: api(path), headers: who.headers, ...(payload ? { payload } : {}) });
const assign = (who: Headers, userId: string, role: string) =>
  call(who, 'PUT', `/access/users/${userId}/roles/${role}`);
const putRole = (who: Headers, key: string, permissions: string[]) =>
  call(who, 'PUT', `/access/roles/${key}`, { name: key, permissions });
const createRole = (who: Headers, key: string, permissions: string[]) =>
  call(who, 'POST', '/access/roles', { key, name: key, permissions });
const decide = (who: Headers, id: string) => call(who, 'POST', `/access/approvals/${id}/approve`);
const execute = (who: Headers, id: string, params: unknown) =>
  call(who, 'POST', `/access/approvals/${id}/execute`, { params });
const settings = async () => (await t.app.inject({ url: api('/settings') })).json();
const putSettings = (who: Headers, payload: object) =>
  t.app.inject({ method: 'PUT', url: api('/settings'), headers: who.headers, payload });
const roleOf = async (key: string) =>
  (await t.app.inject({ url: api('/access/roles'), headers: ada.headers }))
    .json()
    .find((r: { key: string }) => r.key === key);
const approvalOf = async (id: string) =>
  (await t.app.inject({ url: api('/access/approvals'), headers: cy.headers }))
    .json()
    .find((a: { id: string }) => a.id === id);

async function count(action: string) {
  const rows = await t.db.withTenant<AuditTables, { action: string }[]>(asTenantId(tenantId), (tx) =>
    tx.selectFrom('audit_events').select('action').where('action', '=', action).execute(),
  );
  return rows.length;
}

function expectRefused(res: Awaited<ReturnType<typeof call>>, status: number, code: string) {
  expect(res.statusCode, res.body).toBe(status);
  expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
  expect(res.json().code).toBe(code);
}

describe('granting administrator powers', () => {
  it('assigning a custom role with administrator powers is four-eyes, like tenant-admin (was: only the literal tenant-admin)', async () => {
    const deputy = ['roles:assign', 'roles:read', 'roles:write', 'users:read', 'users:write'];
    expect((await createRole(ada, 'deputy', deputy)).statusCode).toBe(201);
    const asked = await assign(ada, pat.userId, 'deputy');
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    expect(approval).toMatchObject({
      action: 'access.grant-tenant-admin',
      params: { via: 'assign', userId: pat.userId, role: 'deputy' },
    });
    expect(approval.summary).toMatch(/roles:assign, roles:write/);
    expect((await t.app.inject({ url: api('/access/roles'), headers: pat.headers })).statusCode).toBe(403);

    expect((await decide(bea, approval.id)).statusCode).toBe(200);
    const run = await execute(ada, approval.id, approval.params);
    expect(run.statusCode, run.body).toBe(200);
    expect(run.json().status).toBe('executed');
    // A role beyond member makes pat staff, and staff need a second factor (the default policy).
    pat = await withSecondFactor(t, slug, pat, clock);
    expect((await t.app.inject({ url: api('/access/roles'), headers: pat.headers })).statusCode).toBe(200);

    // A role without administrator powers is granted at once.
    expect((await createRole(ada, 'reader', ['users:read'])).statusCode).toBe(201);
    expect((await assign(ada, sam.userId, 'reader')).statusCode).toBe(200);
    sam = await withSecondFactor(t, slug, sam, clock);
  });

  it('refuses giving a permission one does not hold, and giving oneself a role, changing nothing (was: any tenant permission)', async () => {
    const before = await databaseState(t);
    // Pat (deputy) writes and assigns roles but holds no audit permission, nor approvals:decide.
    expectRefused(await createRole(pat, 'auditor', ['audit:export']), 403, 'permission_not_held');
    expect((await createRole(pat, 'auditor', ['audit:export'])).json().detail).toMatch(/audit:export/);
    expectRefused(
      await putRole(pat, 'deputy', ['audit:read', 'roles:assign', 'roles:read', 'roles:write', 'users:read']),
      403,
      'permission_not_held',
    );
    expectRefused(
      await putRole(pat, 'reader', ['approvals:decide', 'users:read']),
      403,
      'permission_not_held',
    );
    // Refused outright, not put up for approval.
    expectRefused(await assign(pat, sam.userId, 'tenant-admin'), 403, 'permission_not_held');
    expectRefused(await assign(pat, sam.userId, 'staff'), 403, 'permission_not_held');
    const invite = await call(pat, 'POST', '/users', { email: 'new@climb-co.test', role: 'staff' });
    expectRefused(invite, 403, 'permission_not_held');
    // Nobody gives themselves a role, whatever they hold.
    expectRefused(await assign(pat, pat.userId, 'reader'), 403, 'self_assignment');
    expectRefused(await assign(ada, ada.userId, 'staff'), 403, 'self_assignment');
    expectRefused(await assign(ada, ada.userId, 'deputy'), 403, 'self_assignment');
    expect((await databaseState(t)).tables).toEqual(before.tables);
    expect(await count('access.approval.requested')).toBe(1);

    // Within what one holds, all of it works.
    expect((await createRole(pat, 'lister', ['users:read'])).statusCode).toBe(201);
    expect((await putRole(pat, 'lister', ['roles:read', 'users:read'])).statusCode).toBe(200);
    const granted = await assign(pat, sam.userId, 'lister');
    expect(granted.statusCode, granted.body).toBe(200);
    expect(granted.json().roles).toEqual(['lister', 'member', 'reader']);
  });

  it('adding an administrator power to a role someone holds is four-eyes; to a role nobody holds it is not', async () => {
    const asked = await putRole(ada, 'reader', ['alerts:write', 'users:read']);
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    expect(approval).toMatchObject({
      action: 'access.grant-tenant-admin',
      params: { via: 'role', role: 'reader', name: 'reader', permissions: ['alerts:write', 'users:read'] },
    });
    expect((await roleOf('reader')).permissions).toEqual(['users:read']);
    expect((await decide(bea, approval.id)).statusCode).toBe(200);
    const run = await execute(ada, approval.id, approval.params);
    expect(run.statusCode, run.body).toBe(200);
    expect((await roleOf('reader')).permissions).toEqual(['alerts:write', 'users:read']);

    // Keeping a power that is there already, or adding one to a role nobody holds, needs nobody else.
    expect((await putRole(ada, 'reader', ['alerts:write', 'roles:read', 'users:read'])).statusCode).toBe(200);
    expect((await createRole(ada, 'spare', ['users:read'])).statusCode).toBe(201);
    expect((await putRole(ada, 'spare', ['roles:assign', 'users:read'])).statusCode).toBe(200);
  });

  // Security review: the gate decides before the write, so two requests sent together (one makes a
  // role an admin role, the other grants it) each passed their gate and ran without approval. The write
  // decides again under the role's lock; here the other request has already committed when it does.
  it('a grant or role change that became an administrator grant after its gate ran is refused (409), changing nothing', async () => {
    const ctx = actingAs(ada);
    const { roles } = t.app.services.access;
    expect((await createRole(ada, 'helpdesk', ['users:read'])).statusCode).toBe(201);
    // The race's other half, committed: the role now gives an administrator power (nobody held it).
    expect((await putRole(ada, 'helpdesk', ['roles:assign', 'users:read'])).statusCode).toBe(200);
    const before = await databaseState(t);
    await expect(roles.assign(tenantId, ctx, sam.userId, 'helpdesk')).rejects.toMatchObject({
      code: 'approval_now_required',
    });
    expect(await databaseState(t)).toEqual(before);
    // And the other way round: a role that became held gains an administrator power.
    expect((await createRole(ada, 'viewer', ['users:read'])).statusCode).toBe(201);
    expect((await assign(ada, sam.userId, 'viewer')).statusCode).toBe(200);
    const held = await databaseState(t);
    await expect(
      roles.update(tenantId, ctx, 'viewer', { name: 'viewer', permissions: ['policy:write', 'users:read'] }),
    ).rejects.toMatchObject({ code: 'approval_now_required' });
    expect((await roleOf('viewer')).permissions).toEqual(['users:read']);
    expect(await databaseState(t)).toEqual(held);
    // Through the routes the same requests are put up for approval, as before.
    expect((await assign(ada, sam.userId, 'helpdesk')).statusCode).toBe(202);
  });

  it('an approved role change does not run on a role changed since it was asked', async () => {
    const asked = (await putRole(ada, 'lister', ['policy:write', 'roles:read', 'users:read'])).json()
      .approval;
    expect(asked.action).toBe('access.grant-tenant-admin');
    expect((await decide(bea, asked.id)).statusCode).toBe(200);
    expect((await putRole(ada, 'lister', ['users:read'])).statusCode).toBe(200);
    expectRefused(await execute(ada, asked.id, asked.params), 409, 'state_changed');
    expect((await roleOf('lister')).permissions).toEqual(['users:read']);
  });

  // The gate wrote "adds roles:write" against the role it read; a narrowing committed before the request
  // became its recorded basis, and the approved run (the whole role) gave roles:assign back, unnamed.
  it('a role change whose role changed between its gate and its request is not put up for approval (409)', async () => {
    const roles = t.app.services.access.roles;
    expect((await createRole(ada, 'desk', ['users:read'])).statusCode).toBe(201);
    expect((await assign(ada, sam.userId, 'desk')).statusCode).toBe(200);
    await roles.update(tenantId, systemContext('test'), 'desk', {
      name: 'desk',
      permissions: ['roles:assign', 'users:read'],
    });
    const plan = roles.planUpdate;
    let narrowed: Awaited<ReturnType<typeof putRole>> | undefined;
    const gateRead = vi.spyOn(roles, 'planUpdate').mockImplementationOnce(async (...args) => {
      const seen = await plan(...args);
      narrowed = await putRole(bea, 'desk', ['users:read']);
      return seen;
    });
    try {
      const asked = await putRole(ada, 'desk', ['roles:assign', 'roles:write', 'users:read']);
      expect(narrowed?.statusCode, narrowed?.body).toBe(200);
      expectRefused(asked, 409, 'state_changed');
    } finally {
      gateRead.mockRestore();
    }
    // Sent again, the summary names both powers the change would give.
    const again = await putRole(ada, 'desk', ['roles:assign', 'roles:write', 'users:read']);
    expect(again.statusCode, again.body).toBe(202);
    expect(again.json().approval.summary).toMatch(/roles:assign, roles:write/);
    expect((await roleOf('desk')).permissions).toEqual(['users:read']);
  });
});

describe('four-eyes execution re-checks', () => {
  it('an approval stops counting when its approver loses approvals:decide: role removed, account disabled (was: counted)', async () => {
    const weaker = await settings();
    weaker.passwordPolicy.historyCount = 2;
    const asked = (await putSettings(ada, weaker)).json().approval;
    expect(asked.action).toBe('identity.password-policy.weaken');
    expect((await decide(bea, asked.id)).statusCode).toBe(200);
    expect((await call(ada, 'DELETE', `/access/users/${bea.userId}/roles/tenant-admin`)).statusCode).toBe(
      200,
    );

    const refused = await execute(ada, asked.id, weaker);
    expectRefused(refused, 409, 'approver_lost_permission');
    expect((await settings()).passwordPolicy.historyCount).not.toBe(2);
    expect(await count('access.approval.approver_lost')).toBe(1);
    // It is pending again: someone who may decide approves it, and it runs.
    expect((await approvalOf(asked.id)).status).toBe('pending');
    expect((await decide(cy, asked.id)).statusCode).toBe(200);
    expect((await execute(ada, asked.id, weaker)).statusCode).toBe(200);
    expect((await settings()).passwordPolicy.historyCount).toBe(2);

    const dee = await tenantAdmin(t, slug, 'dee@climb-co.test', clock);
    const off = { ...(await settings()), mfaRequired: 'off' };
    const second = (await putSettings(ada, off)).json().approval;
    expect((await decide(dee, second.id)).statusCode).toBe(200);
    expect((await call(ada, 'POST', `/users/${dee.userId}/disable`, {})).statusCode).toBe(200);
    expectRefused(await execute(ada, second.id, off), 409, 'approver_lost_permission');
    expect((await settings()).mfaRequired).not.toBe('off');
    expect(await count('access.approval.approver_lost')).toBe(2);
  });

  it("an operator's approval stops counting when their elevation ends", async () => {
    const alice = await operatorSession(t, 'alice@ops.test', clock);
    const bob = await operatorSession(t, 'bob@ops.test', clock);
    const elevation = await t.app.inject({
      method: 'POST',
      url: '/api/v1/access/elevations',
      headers: alice.headers,
      payload: { tenant: slug, role: 'tenant-admin', reason: 'Ticket 4712: review', durationMinutes: 60 },
    });
    const elevationId = elevation.json().id;
    const elevate = (decision: string) =>
      t.app.inject({
        method: 'POST',
        url: `/api/v1/access/elevations/${elevationId}/${decision}`,
        headers: bob.headers,
      });
    expect((await elevate('approve')).json().status).toBe('active');

    const fresh = await tenantAdmin(t, slug, 'ada2@climb-co.test', clock);
    const current = await settings();
    const shorter = { ...current, passwordPolicy: { ...current.passwordPolicy, historyCount: 0 } };
    const asked = (await putSettings(fresh, shorter)).json().approval;
    expect(asked.action).toBe('identity.password-policy.weaken');
    expect((await decide(alice, asked.id)).statusCode).toBe(200);
    expect((await elevate('revoke')).json().status).toBe('revoked');
    expectRefused(await execute(fresh, asked.id, shorter), 409, 'approver_lost_permission');
    expect((await settings()).passwordPolicy.historyCount).toBe(current.passwordPolicy.historyCount);
  });

  it('an approved settings change does not overwrite a change made after it was asked (was: wrote the old document back)', async () => {
    const admin = await tenantAdmin(t, slug, 'ada3@climb-co.test', clock);
    const other = await tenantAdmin(t, slug, 'cy3@climb-co.test', clock);
    const asked = await settings();
    const weaker = structuredClone(asked);
    weaker.passwordPolicy.requireDigit = false;
    const approval = (await putSettings(admin, weaker)).json().approval;
    expect(approval.action).toBe('identity.password-policy.weaken');
    expect((await decide(other, approval.id)).statusCode).toBe(200);

    // Someone shortens idle sessions meanwhile (not a critical action: it runs at once).
    const tighter = { ...asked, session: { ...asked.session, idleMinutes: asked.session.idleMinutes - 1 } };
    expect((await putSettings(other, tighter)).statusCode).toBe(200);
    expectRefused(await execute(admin, approval.id, weaker), 409, 'state_changed');
    expect(await settings()).toEqual(tighter);
    expect(await count('access.approval.state_changed')).toBe(2);
    // Left approved: it could only run on the state the approver saw.
    expect((await approvalOf(approval.id)).status).toBe('approved');

    // Asked again against the current state, it runs.
    const again = { ...tighter, passwordPolicy: weaker.passwordPolicy };
    const second = (await putSettings(admin, again)).json().approval;
    expect((await decide(other, second.id)).statusCode).toBe(200);
    expect((await execute(admin, second.id, again)).statusCode).toBe(200);
    expect(await settings()).toEqual(again);
  });

  it('the same holds for the access settings document', async () => {
    const admin = await tenantAdmin(t, slug, 'ada4@climb-co.test', clock);
    const other = await tenantAdmin(t, slug, 'cy4@climb-co.test', clock);
    const get = async () =>
      (await t.app.inject({ url: api('/access/settings'), headers: admin.headers })).json();
    const current = await get();
    const fewer = {
      ...current,
      fourEyesActions: current.fourEyesActions.filter((a: string) => a !== 'audit.export'),
    };
    const approval = (await call(admin, 'PUT', '/access/settings', fewer)).json().approval;
    expect(approval.action).toBe('access.four-eyes.reduce');
    expect((await decide(other, approval.id)).statusCode).toBe(200);
    // A change made in between that needs no approval: a shorter approval lifetime (a longer one is a
    // weakening and would itself need approval).
    expect(current.approvalTtlMinutes).toBeGreaterThan(5);
    const shorter = { ...current, approvalTtlMinutes: current.approvalTtlMinutes - 1 };
    expect((await call(other, 'PUT', '/access/settings', shorter)).statusCode).toBe(200);
    expectRefused(await execute(admin, approval.id, fewer), 409, 'state_changed');
    expect(await get()).toEqual(shorter);
  });
});
