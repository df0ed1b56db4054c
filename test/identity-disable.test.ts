/**
 * Disabling and enabling tenant users: sign-in refused like a wrong password (after a dummy hash), every
 * session ended, no permission held by the decision API, links cannot re-activate, every change audited,
 * and the guards (self, last administrator, wrong state, unknown user, bad input) change nothing.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { isPrivileged } from '../src/audit/alert-rules.ts';
import type { AuditTables } from '../src/audit/index.ts';
import { toTenantRef } from '../src/identity/index.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import {
  actingAs,
  databaseState,
  member,
  type Person,
  tenantAdmin,
  withSecondFactor,
} from './access-helpers.ts';
import { buildTestApp, engineUnderTest, seedTenant, type TestApp } from './helpers.ts';
import { inviteAndAccept, linkFromOutbox, strongPassword } from './identity-helpers.ts';

const slug = 'disable-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
let t: TestApp;
let tenantId: string;
let admin: Person;

beforeAll(async () => {
  t = await buildTestApp();
  tenantId = (await seedTenant(t, slug)).id;
  admin = await tenantAdmin(t, slug);
});
afterAll(async () => {
  await t?.close();
});

const post = (url: string, headers: Record<string, string>, payload?: object) =>
  t.app.inject({ method: 'POST', url: api(url), headers, ...(payload ? { payload } : {}) });
const disable = (who: Person, userId: string, payload?: object) =>
  post(`/users/${userId}/disable`, who.headers, payload);
const enable = (who: Person, userId: string) => post(`/users/${userId}/enable`, who.headers);
const signIn = (email: string, password: string) =>
  t.app.inject({ method: 'POST', url: api('/auth/signin'), payload: { email, password } });
const decide = (userId: string, permission: string) =>
  t.app
    .inject({
      method: 'POST',
      url: '/api/v1/access/decisions',
      headers: t.asOperator,
      payload: { checks: [{ tenantId, userId, permission }] },
    })
    .then((r) => r.json().allowed[0] as boolean);
const events = (action: string) =>
  t.db.withTenant<AuditTables, { actor_id: string | null; target_id: string | null; details: unknown }[]>(
    asTenantId(tenantId),
    (tx) =>
      tx
        .selectFrom('audit_events')
        .select(['actor_id', 'target_id', 'details'])
        .where('action', '=', action)
        .orderBy('occurred_at')
        .execute(),
  );
const tenantRef = async () => toTenantRef(await t.app.services.tenancy.requireActive(slug));
/** A problem's stable part: what a client could compare between two answers. */
const problemOf = (body: string) => {
  const { requestId: _r, instance: _i, ...rest } = JSON.parse(body) as Record<string, unknown>;
  return rest;
};

describe(`disabling a user (${engineUnderTest})`, () => {
  it('ends every session, refuses sign-in exactly like a wrong password, and withholds every permission', async () => {
    const pat = await withSecondFactor(t, slug, await member(t, slug, admin, 'pat@disable-co.test'));
    const grant = await t.app.inject({
      method: 'PUT',
      url: api(`/access/users/${pat.userId}/roles/staff`),
      headers: admin.headers,
    });
    expect(grant.statusCode).toBe(200);
    const second = (await signIn(pat.email, strongPassword)).json().token as string;
    // Cached on this node: the decision below must not be answered from a stale entry.
    expect(await decide(pat.userId, 'users:read')).toBe(true);
    expect((await t.app.inject({ url: api('/users'), headers: pat.headers })).statusCode).toBe(200);

    const res = await disable(admin, pat.userId, { reason: 'left the company (ticket 4711)' });
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json()).toMatchObject({ id: pat.userId, status: 'disabled' });

    for (const headers of [pat.headers, { authorization: `Bearer ${second}` }]) {
      expect((await t.app.inject({ url: api('/me'), headers })).statusCode).toBe(401);
    }
    expect(await decide(pat.userId, 'users:read')).toBe(false);

    const hasher = t.app.services.identity.deps.hasher;
    const before = hasher.stats();
    const refused = await signIn(pat.email, strongPassword);
    const wrong = await signIn(admin.email, 'not-the-password-1');
    expect(refused.statusCode).toBe(401);
    expect(problemOf(refused.body)).toEqual(problemOf(wrong.body));
    // The disabled account cost a (dummy) verification like any other attempt; its real hash was not tried.
    expect(hasher.stats().dummyVerifications - before.dummyVerifications).toBe(1);
    expect(hasher.stats().verifications - before.verifications).toBe(1);

    const [disabled] = await events('identity.user.disabled');
    expect(disabled).toMatchObject({
      actor_id: admin.userId,
      target_id: pat.userId,
      details: { reason: 'left the company (ticket 4711)', previousStatus: 'active', sessionsEnded: 2 },
    });
    const failures = (await events('identity.signin.password')).filter((e) => e.target_id === pat.userId);
    expect(failures.map((e) => e.details)).toContainEqual({ email: pat.email, reason: 'disabled' });

    // Enabled again: the roles were kept, so the permission comes back; a new sign-in works.
    const back = await enable(admin, pat.userId);
    expect(back.statusCode, back.body).toBe(200);
    expect(back.json().status).toBe('active');
    expect(await decide(pat.userId, 'users:read')).toBe(true);
    expect((await signIn(pat.email, strongPassword)).statusCode).toBe(200);
    expect(await events('identity.user.enabled')).toMatchObject([
      { actor_id: admin.userId, target_id: pat.userId, details: { status: 'active' } },
    ]);
  });

  it('a disable that commits while a sign-in verifies the password leaves that sign-in without a session', async () => {
    const kim = await member(t, slug, admin, 'kim@disable-co.test');
    const hasher = t.app.services.identity.deps.hasher;
    const verify = hasher.verify.bind(hasher);
    // The admin disables kim exactly between the reservation and the success transaction.
    const spy = vi.spyOn(hasher, 'verify').mockImplementationOnce(async (hash, password) => {
      const verdict = await verify(hash, password);
      expect((await disable(admin, kim.userId)).statusCode).toBe(200);
      return verdict;
    });
    try {
      const res = await signIn(kim.email, strongPassword);
      expect(res.statusCode).toBe(401);
      expect(res.json().code).toBe('invalid_credentials');
    } finally {
      spy.mockRestore();
    }
    const live = await t.db.withTenant<
      import('../src/identity/tables.ts').TenantIdentityTables,
      { id: string }[]
    >(asTenantId(tenantId), (tx) =>
      tx
        .selectFrom('sessions')
        .select('id')
        .where('user_id', '=', kim.userId)
        .where('revoked_at', 'is', null)
        .execute(),
    );
    expect(live).toEqual([]);
    const failures = (await events('identity.signin.password')).filter((e) => e.target_id === kim.userId);
    expect(failures.map((e) => e.details)).toContainEqual({ email: kim.email, reason: 'disabled' });
  });

  it('does not let a reset link or an invitation re-activate a disabled user', async () => {
    const { user: sam } = await inviteAndAccept(t, slug, admin, 'sam@disable-co.test');
    const forgot = () =>
      t.app.inject({
        method: 'POST',
        url: api('/password/forgot'),
        payload: { email: 'sam@disable-co.test' },
      });
    expect((await forgot()).statusCode).toBe(202);
    const { token: resetToken } = await linkFromOutbox(t, 'sam@disable-co.test');
    expect((await disable(admin, sam.id)).statusCode).toBe(200);
    const reset = () =>
      t.app.inject({
        method: 'POST',
        url: api('/password/reset'),
        payload: { token: resetToken, password: 'Another-Strong-Pass-77' },
      });
    expect((await reset()).json().code).toBe('token_invalid');
    // No new link goes out while disabled.
    const mails = (await t.app.services.mailer.outbox(200)).filter((m) => m.to === 'sam@disable-co.test');
    expect((await forgot()).statusCode).toBe(202);
    expect(
      (await t.app.services.mailer.outbox(200)).filter((m) => m.to === 'sam@disable-co.test'),
    ).toHaveLength(mails.length);
    // Enabled again, the link mailed before the disable stays void.
    expect((await enable(admin, sam.id)).statusCode).toBe(200);
    expect((await reset()).json().code).toBe('token_invalid');

    const invited = await post('/users', admin.headers, { email: 'ivy@disable-co.test', role: 'member' });
    expect(invited.statusCode).toBe(201);
    const ivy = invited.json().id as string;
    const { token } = await linkFromOutbox(t, 'ivy@disable-co.test');
    const disabled = await disable(admin, ivy);
    expect(disabled.json()).toMatchObject({ status: 'disabled' });
    const accept = () =>
      t.app.inject({
        method: 'POST',
        url: api('/invitations/accept'),
        payload: { token, password: strongPassword },
      });
    expect((await accept()).json().code).toBe('token_invalid');
    const still = await t.app.inject({ url: api(`/users/${ivy}`), headers: admin.headers });
    expect(still.json().status).toBe('disabled');
    expect((await signIn('ivy@disable-co.test', strongPassword)).statusCode).toBe(401);
    // Enabling someone who never set a password makes them invited again; the invitation then works.
    expect((await enable(admin, ivy)).json().status).toBe('invited');
    expect((await accept()).statusCode).toBe(200);
    expect((await t.app.inject({ url: api(`/users/${ivy}`), headers: admin.headers })).json().status).toBe(
      'active',
    );
  });

  it('refuses disabling oneself, the last active administrator, twice, or enabling an active user', async () => {
    const other = await withSecondFactor(t, slug, await member(t, slug, admin, 'helper@disable-co.test'));
    const role = await t.app.inject({
      method: 'POST',
      url: api('/access/roles'),
      headers: admin.headers,
      payload: { key: 'helpdesk', name: 'Helpdesk', permissions: ['users:read', 'users:write'] },
    });
    expect(role.statusCode, role.body).toBe(201);
    const assign = await t.app.inject({
      method: 'PUT',
      url: api(`/access/users/${other.userId}/roles/helpdesk`),
      headers: admin.headers,
    });
    expect(assign.statusCode).toBe(200);
    const before = await databaseState(t);

    const self = await disable(admin, admin.userId);
    expect(self.statusCode).toBe(409);
    expect(self.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(self.json()).toMatchObject({
      code: 'cannot_disable_self',
      detail: expect.stringMatching(/another/),
    });

    const last = await disable(other, admin.userId, { reason: 'testing' });
    expect(last.statusCode).toBe(409);
    expect(last.json()).toMatchObject({ code: 'last_tenant_admin', detail: expect.stringMatching(/grant/) });

    const active = await enable(admin, other.userId);
    expect(active.statusCode).toBe(409);
    expect(active.json()).toMatchObject({
      code: 'user_not_disabled',
      detail: expect.stringMatching(/active/),
    });

    const unknown = await disable(admin, '0b7c4f6e-9f1a-4c2b-8d3e-5a6f7b8c9d0e');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.json().code).toBe('user_not_found');
    expect((await enable(admin, '0b7c4f6e-9f1a-4c2b-8d3e-5a6f7b8c9d0e')).statusCode).toBe(404);

    const bad = [
      await disable(admin, other.userId, { reason: 'x'.repeat(501) }),
      await disable(admin, other.userId, { reason: '' }),
      await disable(admin, other.userId, { reason: 'ok', extra: true }),
      await disable(admin, other.userId, { reason: 42 }),
      await post('/users/not-a-uuid/disable', admin.headers),
      await post('/users/not-a-uuid/enable', admin.headers),
    ];
    for (const res of bad) {
      expect(res.statusCode, res.body).toBe(400);
      expect(res.headers['content-type']).toMatch(/application\/problem\+json/);
      expect(res.json().code).toBe('validation_failed');
    }
    expect((await databaseState(t)).tables).toEqual(before.tables);

    // With a second administrator the first can be disabled, by someone else; twice is refused.
    const second = await tenantAdmin(t, slug, 'second@disable-co.test');
    expect((await disable(other, admin.userId)).statusCode).toBe(200);
    const twice = await disable(second, admin.userId);
    expect(twice.statusCode).toBe(409);
    expect(twice.json().code).toBe('user_already_disabled');
    // The now only active administrator cannot be disabled either.
    expect((await disable(other, second.userId)).json().code).toBe('last_tenant_admin');
    // Enabling an administrator again gives back administrator powers: four-eyes (below).
    const back = await enable(second, admin.userId);
    expect(back.statusCode, back.body).toBe(202);
    expect(back.json().approval).toMatchObject({
      action: 'access.grant-tenant-admin',
      params: { via: 'enable', userId: admin.userId },
    });
    await t.app.services.identity.userStatus.enable(await tenantRef(), systemContext('test'), admin.userId);
  });

  it('serialises two administrators disabling each other: one wins, the tenant keeps an administrator', async () => {
    const a = await tenantAdmin(t, slug, 'duel-a@disable-co.test');
    const b = await tenantAdmin(t, slug, 'duel-b@disable-co.test');
    // Leave only a and b as active administrators.
    for (const id of await activeAdminsExcept([a.userId, b.userId])) {
      expect((await disable(a, id)).statusCode).toBe(200);
    }
    const [one, two] = await Promise.all([disable(a, b.userId), disable(b, a.userId)]);
    const codes = [one.statusCode, two.statusCode].sort();
    // The loser is refused because it would remove the last administrator (409), because its
    // session ended with its account (401), or because its permission check ran after it was
    // disabled (403: a disabled user holds no permission).
    expect(codes[0]).toBe(200);
    expect([401, 403, 409]).toContain(codes[1]);
    expect(await activeAdminsExcept([])).toHaveLength(1);
  });
});

async function activeAdminsExcept(keep: string[]): Promise<string[]> {
  const rows = await t.db.withTenant<
    import('../src/identity/tables.ts').TenantIdentityTables,
    { id: string }[]
  >(asTenantId(tenantId), (tx) =>
    tx
      .selectFrom('users')
      .select('id')
      .where('role', '=', 'tenant-admin')
      .where('status', '=', 'active')
      .execute(),
  );
  return rows.map((r) => r.id).filter((id) => !keep.includes(id));
}

// Security review: users:write alone re-enabled a disabled user holding tenant-admin (administrator
// powers), which granting needs a second person for.
describe('enabling a user whose roles give administrator powers', () => {
  const approvals = (who: Person, path: string, payload?: object) =>
    post(`/access/approvals${path}`, who.headers, payload);
  const statusOf = async (userId: string) =>
    (await t.app.services.identity.accounts.get(await tenantRef(), userId)).status;
  let ana: Person;
  beforeAll(async () => {
    ana = await tenantAdmin(t, slug, 'ana@disable-co.test');
  });

  it('is four-eyes, like granting tenant-admin: asked for, approved by someone else, then run', async () => {
    const ben = await tenantAdmin(t, slug, 'ben@disable-co.test');
    const zoe = await tenantAdmin(t, slug, 'zoe@disable-co.test');
    expect((await disable(ana, zoe.userId)).statusCode).toBe(200);

    const asked = await enable(ana, zoe.userId);
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    expect(approval).toMatchObject({
      action: 'access.grant-tenant-admin',
      params: { via: 'enable', userId: zoe.userId },
      status: 'pending',
    });
    expect(approval.summary).toMatch(/administrator powers \(.*roles:assign/);
    expect(await statusOf(zoe.userId)).toBe('disabled');
    expect(await decide(zoe.userId, 'roles:assign')).toBe(false);
    const enabledBefore = (await events('identity.user.enabled')).length;

    expect((await approvals(ana, `/${approval.id}/approve`)).json().code).toBe('self_approval');
    expect((await approvals(ben, `/${approval.id}/approve`)).statusCode).toBe(200);
    const run = await approvals(ana, `/${approval.id}/execute`, { params: approval.params });
    expect(run.statusCode, run.body).toBe(200);
    expect(run.json().status).toBe('executed');
    expect(await statusOf(zoe.userId)).toBe('active');
    expect(await decide(zoe.userId, 'roles:assign')).toBe(true);
    const enabled = await events('identity.user.enabled');
    expect(enabled).toHaveLength(enabledBefore + 1);
    expect(enabled.at(-1)).toMatchObject({ actor_id: ana.userId, target_id: zoe.userId });
  });

  it('counts custom roles with an administrator power, and not roles without one', async () => {
    const role = (key: string, permissions: string[]) =>
      post('/access/roles', ana.headers, { key, name: key, permissions });
    expect((await role('watcher', ['alerts:write', 'users:read'])).statusCode).toBe(201);
    expect((await role('looker', ['users:read'])).statusCode).toBe(201);
    const system = systemContext('test');
    const [wes, lou] = [
      await member(t, slug, ana, 'wes@disable-co.test'),
      await member(t, slug, ana, 'lou@disable-co.test'),
    ];
    await t.app.services.access.roles.assign(tenantId, system, wes.userId, 'watcher');
    await t.app.services.access.roles.assign(tenantId, system, lou.userId, 'looker');
    for (const who of [wes, lou]) expect((await disable(ana, who.userId)).statusCode).toBe(200);

    const asked = await enable(ana, wes.userId);
    expect(asked.statusCode, asked.body).toBe(202);
    expect(asked.json().approval.summary).toMatch(/alerts:write/);
    expect(await statusOf(wes.userId)).toBe('disabled');
    const direct = await enable(ana, lou.userId);
    expect(direct.statusCode, direct.body).toBe(200);
    expect(direct.json().status).toBe('active');
  });

  // Like assigning the user's roles: an approval lets a second person agree, it does not let the one
  // who runs it give back what they do not hold themselves (security review).
  it('never gives back a permission the enabler lacks, approved or not', async () => {
    const role = (key: string, permissions: string[]) =>
      post('/access/roles', ana.headers, { key, name: key, permissions });
    expect((await role('desk3', ['users:read', 'users:write', 'approvals:request'])).statusCode).toBe(201);
    expect((await role('auditor', ['audit:read'])).statusCode).toBe(201);
    const system = systemContext('test');
    const hal = await withSecondFactor(t, slug, await member(t, slug, ana, 'hal@disable-co.test'));
    await t.app.services.access.roles.assign(tenantId, system, hal.userId, 'desk3');
    const bea = await tenantAdmin(t, slug, 'bea@disable-co.test');
    const zed = await tenantAdmin(t, slug, 'zed@disable-co.test');
    const amy = await member(t, slug, ana, 'amy@disable-co.test');
    await t.app.services.access.roles.assign(tenantId, system, amy.userId, 'auditor');
    const lin = await member(t, slug, ana, 'lin@disable-co.test');
    for (const who of [zed, amy, lin]) expect((await disable(ana, who.userId)).statusCode).toBe(200);

    // A tenant-admin: asked for, approved by someone else, and still refused when Hal runs it.
    const asked = await enable(hal, zed.userId);
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    expect((await approvals(bea, `/${approval.id}/approve`)).statusCode).toBe(200);
    const before = await databaseState(t);
    const run = await approvals(hal, `/${approval.id}/execute`, { params: approval.params });
    expect(run.statusCode, run.body).toBe(403);
    expect(run.json()).toMatchObject({
      code: 'permission_not_held',
      detail: expect.stringMatching(/Enabling this user again would give .*roles:assign/),
    });
    // Nothing changed but the denial's own audit event and the request's record of its failed run.
    const { access_approval_requests: _requests, ...after } = (await databaseState(t)).tables;
    const { access_approval_requests: _before, ...expected } = before.tables;
    expect(after).toEqual(expected);
    expect(await statusOf(zed.userId)).toBe('disabled');
    // No administrator power, so no approval: refused at once for what Hal lacks (audit:read) ...
    const direct = await enable(hal, amy.userId);
    expect(direct.statusCode, direct.body).toBe(403);
    expect(direct.json().detail).toMatch(/audit:read/);
    expect(await statusOf(amy.userId)).toBe('disabled');
    // ... and done for a member, whose role gives nothing Hal lacks.
    const plain = await enable(hal, lin.userId);
    expect(plain.statusCode, plain.body).toBe(200);
    expect(await statusOf(lin.userId)).toBe('active');
  });

  // The gate decides before the write: a role that gained an administrator power after it ran (here
  // committed already, by the platform) must not let the enable through. The write decides again.
  it('an enable whose user gained administrator powers after its gate ran is refused (409), changing nothing', async () => {
    expect(
      (await post('/access/roles', ana.headers, { key: 'desk', name: 'desk', permissions: ['users:read'] }))
        .statusCode,
    ).toBe(201);
    const kai = await member(t, slug, ana, 'kai@disable-co.test');
    await t.app.services.access.roles.assign(tenantId, systemContext('test'), kai.userId, 'desk');
    expect((await disable(ana, kai.userId)).statusCode).toBe(200);
    await t.app.services.access.roles.update(tenantId, systemContext('test'), 'desk', {
      name: 'desk',
      permissions: ['policy:write', 'users:read'],
    });
    const before = await databaseState(t);
    const asAna = actingAs(ana);
    await expect(
      t.app.services.identity.userStatus.enable(await tenantRef(), asAna, kai.userId),
    ).rejects.toMatchObject({ code: 'approval_now_required', spec: { status: 409 } });
    expect(await databaseState(t)).toEqual(before);
    // Through the route the same request is put up for approval.
    expect((await enable(ana, kai.userId)).statusCode).toBe(202);
  });
});

describe('anomaly rules', () => {
  it('count disabling and enabling a user as privileged actions (privileged.off_hours)', () => {
    const event = {
      id: 'e',
      seq: 1,
      occurredAt: new Date(),
      actorType: 'user',
      actorId: 'admin',
      actorElevationId: null,
      targetType: 'user',
      targetId: 'u',
      outcome: 'success',
      ip: null,
      userAgent: null,
      details: {},
    };
    for (const action of ['identity.user.disabled', 'identity.user.enabled']) {
      expect(isPrivileged({ ...event, action }), action).toBe(true);
    }
    expect(isPrivileged({ ...event, action: 'identity.user.email_verified' })).toBe(false);
  });
});
