/**
 * Lasting access under an elevation (security review: an operator elevated into a tenant could invite
 * an address of their own as staff, grant a role to an account they control, widen a role it holds or
 * enable a disabled account, alone, and keep that access after the elevation ended). Each is now a
 * four-eyes request that only a person of the tenant decides; an operator cannot, and the tenant's list
 * cannot switch it off. Runs on both engines.
 */
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { paramsHash } from '../src/access/approval-standing.ts';
import type { AuditTables } from '../src/audit/index.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import {
  actingAsOperator,
  databaseState,
  member,
  operatorSession,
  type Person,
  tenantAdmin,
} from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const slug = 'lasting-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const clock = fakeClock(new Date());
let t: TestApp;
let tenantId: string;
let ada: Person;
let pat: Person;
type Op = Awaited<ReturnType<typeof operatorSession>>;
let alice: Op;
let bob: Op;
let carol: Op;
const elevationOf: Record<string, string> = {};

type Headers = { headers: Record<string, string> };
const call = (who: Headers, method: 'GET' | 'PUT' | 'POST', path: string, payload?: object) =>
  t.app.inject({ method, url: api(path), headers: who.headers, ...(payload ? { payload } : {}) });
const decide = (who: Headers, id: string) => call(who, 'POST', `/access/approvals/${id}/approve`);
const execute = (who: Headers, id: string, params: unknown) =>
  call(who, 'POST', `/access/approvals/${id}/execute`, { params });

/** `op` elevated into the tenant as tenant-admin, approved by `by`. */
async function elevate(op: Op, by: Op) {
  const asked = await t.app.inject({
    method: 'POST',
    url: '/api/v1/access/elevations',
    headers: op.headers,
    payload: { tenant: slug, role: 'tenant-admin', reason: 'Ticket 5150: support', durationMinutes: 60 },
  });
  expect(asked.statusCode, asked.body).toBe(201);
  const approved = await t.app.inject({
    method: 'POST',
    url: `/api/v1/access/elevations/${asked.json().id}/approve`,
    headers: by.headers,
  });
  expect(approved.json().status).toBe('active');
  elevationOf[op.operatorId] = asked.json().id;
}

async function events(action: string) {
  const rows = await t.db.withTenant<AuditTables, { actor_id: string | null; details: unknown }[]>(
    asTenantId(tenantId),
    (tx) =>
      tx.selectFrom('audit_events').select(['actor_id', 'details']).where('action', '=', action).execute(),
  );
  return rows.map((r) => ({
    actorId: r.actor_id,
    details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
  }));
}

const userByEmail = async (email: string) =>
  (await call(ada, 'GET', '/users?limit=200')).json().items.find((u: { email: string }) => u.email === email);
const rolesOf = async (userId: string) =>
  (await call(ada, 'GET', `/access/users/${userId}/roles`)).json().roles;

function expectAsked(res: Awaited<ReturnType<typeof call>>) {
  expect(res.statusCode, res.body).toBe(202);
  const { approval } = res.json();
  expect(approval).toMatchObject({
    action: 'access.elevated-grant',
    status: 'pending',
    requestedBy: { type: 'operator', id: alice.operatorId },
  });
  return approval as { id: string; params: unknown; summary: string };
}

beforeAll(async () => {
  t = await buildTestApp({ clock });
  tenantId = (await seedTenant(t, slug)).id;
  ada = await tenantAdmin(t, slug, 'ada@lasting-co.test', clock);
  pat = await member(t, slug, ada, 'pat@lasting-co.test');
  alice = await operatorSession(t, 'alice@ops.test', clock);
  bob = await operatorSession(t, 'bob@ops.test', clock);
  carol = await operatorSession(t, 'carol@ops.test', clock);
  await elevate(alice, bob);
  await elevate(bob, carol);
});
afterAll(async () => {
  await t?.close();
});

describe('lasting access asked for by an elevated operator', () => {
  it('an invitation is a request, which an operator cannot approve and a tenant admin can (was: invited at once)', async () => {
    const invite = { email: 'helper@elsewhere.test', displayName: 'Helper', role: 'staff' };
    const approval = expectAsked(await call(alice, 'POST', '/users', invite));
    expect(approval.params).toEqual({ via: 'invite', ...invite });
    expect(approval.summary).toContain(`under elevation ${elevationOf[alice.operatorId]}`);
    expect(await userByEmail(invite.email)).toBeUndefined();
    const [requested] = await events('access.approval.requested');
    expect(requested?.details.elevationId).toBe(elevationOf[alice.operatorId]);

    // Another operator, elevated with approvals:decide, may not decide it: the refusal is audited.
    bob.headers = await bob.signInAgain();
    const byOperator = await decide(bob, approval.id);
    expect(byOperator.statusCode, byOperator.body).toBe(403);
    expect(byOperator.headers['content-type']).toMatch(/application\/problem\+json/);
    expect(byOperator.json().code).toBe('tenant_approver_required');
    const [refused] = await events('access.approval.refused');
    expect(refused).toMatchObject({
      actorId: bob.operatorId,
      details: { reason: 'tenant_approver_required' },
    });
    expect((await execute(alice, approval.id, approval.params)).json().code).toBe('approval_not_approved');

    const byAdmin = await decide(ada, approval.id);
    expect(byAdmin.statusCode, byAdmin.body).toBe(200);
    alice.headers = await alice.signInAgain();
    const run = await execute(alice, approval.id, approval.params);
    expect(run.statusCode, run.body).toBe(200);
    expect(await userByEmail(invite.email)).toMatchObject({ role: 'staff', status: 'invited' });
    const invited = (await events('identity.user.invited')).find((e) => e.actorId === alice.operatorId);
    expect(invited?.details.elevationId).toBe(elevationOf[alice.operatorId]);
  });

  it('granting any role, even one without administrator powers, is a request (was: granted at once)', async () => {
    const approval = expectAsked(await call(alice, 'PUT', `/access/users/${pat.userId}/roles/staff`));
    expect(approval.params).toEqual({ via: 'assign', userId: pat.userId, role: 'staff' });
    expect(await rolesOf(pat.userId)).toEqual(['member']);
    expect((await decide(ada, approval.id)).statusCode).toBe(200);
    expect((await execute(alice, approval.id, approval.params)).statusCode).toBe(200);
    expect(await rolesOf(pat.userId)).toEqual(['member', 'staff']);
  });

  it('adding permissions to a role is a request; creating one or taking permissions away is not', async () => {
    const created = await call(alice, 'POST', '/access/roles', {
      key: 'helpdesk',
      name: 'Helpdesk',
      permissions: ['users:read'],
    });
    expect(created.statusCode, created.body).toBe(201);
    const wider = { name: 'Helpdesk', permissions: ['users:read', 'users:write'] };
    const approval = expectAsked(await call(alice, 'PUT', '/access/roles/helpdesk', wider));
    expect(approval.params).toEqual({ via: 'role', role: 'helpdesk', ...wider });
    const roles = (await call(ada, 'GET', '/access/roles')).json();
    expect(roles.find((r: { key: string }) => r.key === 'helpdesk').permissions).toEqual(['users:read']);
    const narrower = await call(alice, 'PUT', '/access/roles/helpdesk', { name: 'Desk', permissions: [] });
    expect(narrower.statusCode, narrower.body).toBe(200);
  });

  it('enabling a disabled user is a request (was: enabled at once); a tenant admin enables alone', async () => {
    const sam = await member(t, slug, ada, 'sam@lasting-co.test');
    expect((await call(ada, 'POST', `/users/${sam.userId}/disable`, {})).statusCode).toBe(200);
    const approval = expectAsked(await call(alice, 'POST', `/users/${sam.userId}/enable`));
    expect(approval.params).toEqual({ via: 'enable', userId: sam.userId });
    expect((await userByEmail(sam.email)).status).toBe('disabled');
    expect((await decide(ada, approval.id)).statusCode).toBe(200);
    expect((await execute(alice, approval.id, approval.params)).statusCode).toBe(200);
    expect((await userByEmail(sam.email)).status).toBe('active');
    // Nothing to enable is refused first, never put up for approval.
    const again = await call(alice, 'POST', `/users/${sam.userId}/enable`);
    expect(again.statusCode, again.body).toBe(409);
    expect(again.json().code).toBe('user_not_disabled');
    expect((await call(ada, 'POST', `/users/${sam.userId}/disable`, {})).statusCode).toBe(200);
    expect((await call(ada, 'POST', `/users/${sam.userId}/enable`)).statusCode).toBe(200);
  });

  it("is not on the tenant's four-eyes list, so it cannot be taken off", async () => {
    const current = (await call(ada, 'GET', '/access/settings')).json();
    expect(current.fourEyesActions).not.toContain('access.elevated-grant');
    const listed = await call(ada, 'PUT', '/access/settings', {
      ...current,
      fourEyesActions: [...current.fourEyesActions, 'access.elevated-grant'],
    });
    expect(listed.statusCode, listed.body).toBe(422);
    expect(listed.json().code).toBe('unknown_action');
  });

  it('a grant reaching the role service unapproved is refused (the write decides again)', async () => {
    const ctx = actingAsOperator(alice.operatorId, elevationOf[alice.operatorId]);
    await expect(
      t.app.services.access.roles.assign(tenantId, ctx, pat.userId, 'helpdesk'),
    ).rejects.toMatchObject({
      code: 'approval_now_required',
    });
    expect(await rolesOf(pat.userId)).toEqual(['member', 'staff']);
    const widen = t.app.services.access.roles.update(tenantId, ctx, 'helpdesk', {
      name: 'Desk',
      permissions: ['users:read'],
    });
    await expect(widen).rejects.toMatchObject({ code: 'approval_now_required' });
    const roles = (await call(ada, 'GET', '/access/roles')).json();
    expect(roles.find((r: { key: string }) => r.key === 'helpdesk').permissions).toEqual([]);
  });

  // The gate asks for approval only when it reads the user disabled: a user disabled after it looked
  // (a request sent while they were active) must not be enabled on the operator's word (review).
  it('an enable reaching the service unapproved is refused when the user was disabled after the gate', async () => {
    const dan = await member(t, slug, ada, 'dan@lasting-co.test');
    expect((await call(ada, 'POST', `/users/${dan.userId}/disable`, { reason: 'test' })).statusCode).toBe(
      200,
    );
    const ctx = actingAsOperator(alice.operatorId, elevationOf[alice.operatorId]);
    const tenant = { id: asTenantId(tenantId), slug };
    await expect(t.app.services.identity.userStatus.enable(tenant, ctx, dan.userId)).rejects.toMatchObject({
      code: 'approval_now_required',
    });
    expect((await t.app.services.identity.accounts.get(tenant, dan.userId)).status).toBe('disabled');
  });

  // A channel outlives the elevation and carries alert contents (account and address keys) (review).
  // The rules watch the operator (elevation.used): weakening them is the tenant's (review).
  it("may tighten the tenant's alert rules, not weaken them or change where alerts go; a tenant admin may", async () => {
    const settings = (await call(alice, 'GET', '/audit/alert-settings')).json();
    const { webhookSecret: _secret, ...current } = settings;
    const put = (who: Headers, body: object) => call(who, 'PUT', '/audit/alert-settings', body);
    const rules = structuredClone(current.rules);
    rules['signin.failures'].perAccount -= 1;
    expect((await put(alice, { ...current, rules })).statusCode).toBe(200);
    const before = await databaseState(t);
    const raised = structuredClone(rules);
    raised['signin.failures'].perAccount += 5;
    const off = structuredClone(rules);
    off['elevation.used'].enabled = false;
    for (const weaker of [raised, off]) {
      const refused = await put(alice, { ...current, rules: weaker });
      expect(refused.statusCode, refused.body).toBe(403);
      expect(refused.json().code).toBe('alert_weakening_tenant_only');
    }
    for (const channels of [
      { ...current.channels, emails: [...current.channels.emails, 'alice@ops.test'] },
      { ...current.channels, webhookUrl: 'https://hooks.ops.test/rampart' },
    ]) {
      const refused = await put(alice, { ...current, rules, channels });
      expect(refused.statusCode, refused.body).toBe(403);
      expect(refused.json().code).toBe('alert_channels_tenant_only');
    }
    const after = await databaseState(t);
    expect(after.tables.audit_alert_settings).toEqual(before.tables.audit_alert_settings);
    const emails = [...current.channels.emails, 'security@lasting-co.test'];
    const byAdmin = await put(ada, { ...current, rules, channels: { ...current.channels, emails } });
    expect(byAdmin.statusCode, byAdmin.body).toBe(200);
  });

  // Review: an allowlist of the operator's own address answered 200 and shut the tenant's admins out of
  // every administration route, their revocation of that very elevation included.
  it("may read the tenant's network policy, not change it; a tenant admin may", async () => {
    expect((await call(alice, 'GET', '/protect/policy')).statusCode).toBe(200);
    const before = await databaseState(t);
    for (const policy of [
      { adminAllowCidrs: ['127.0.0.1/32'], corsOrigins: [] },
      { adminAllowCidrs: [], corsOrigins: ['https://ops.example'] },
    ]) {
      const refused = await call(alice, 'PUT', '/protect/policy', policy);
      expect(refused.statusCode, refused.body).toBe(403);
      expect(refused.json().code).toBe('network_policy_tenant_only');
    }
    expect((await databaseState(t)).tables.protect_tenant_policy).toEqual(
      before.tables.protect_tenant_policy,
    );
    const byAdmin = await call(ada, 'PUT', '/protect/policy', {
      adminAllowCidrs: [],
      corsOrigins: ['https://app.lasting-co.example'],
    });
    expect(byAdmin.statusCode, byAdmin.body).toBe(200);
  });

  // elevation.used reports what operators did under elevations: the tenant's people mark it handled (review).
  it("may not acknowledge the tenant's elevation.used alert; a tenant admin may", async () => {
    const tenant = await t.app.services.tenancy.get(slug);
    await t.app.services.alerts.evaluateChain(tenant.id);
    const open = (await call(ada, 'GET', '/audit/alerts?status=open')).json().items as {
      id: string;
      rule: string;
    }[];
    const used = open.find((a) => a.rule === 'elevation.used');
    if (!used) throw new Error('no elevation.used alert was raised');
    const before = await databaseState(t);
    const refused = await call(alice, 'POST', `/audit/alerts/${used.id}/acknowledge`, {});
    expect(refused.statusCode, refused.body).toBe(403);
    expect(refused.json().code).toBe('alert_acknowledgement_tenant_only');
    expect((await databaseState(t)).tables.audit_alerts).toEqual(before.tables.audit_alerts);
    const byAdmin = await call(ada, 'POST', `/audit/alerts/${used.id}/acknowledge`, {});
    expect(byAdmin.statusCode, byAdmin.body).toBe(200);
    expect(byAdmin.json().acknowledgedBy).toMatch(/^user:/);
  });

  // The summary names what the gate saw the change add; a narrowing committed before the request is
  // recorded must not become the basis the approved run writes back over (review).
  it('a role change whose role changed between its gate and its request is not put up for approval (409)', async () => {
    const roles = t.app.services.access.roles;
    const role = (permissions: string[]) => ({ name: 'Desk nine', permissions });
    expect(
      (await call(ada, 'POST', '/access/roles', { key: 'desk9', ...role(['audit:read', 'users:read']) }))
        .statusCode,
    ).toBe(201);
    const plan = roles.planUpdate;
    let narrowed: Awaited<ReturnType<typeof call>> | undefined;
    const gateRead = vi.spyOn(roles, 'planUpdate').mockImplementationOnce(async (...args) => {
      const seen = await plan(...args);
      narrowed = await call(ada, 'PUT', '/access/roles/desk9', role(['users:read']));
      return seen;
    });
    try {
      const asked = await call(
        alice,
        'PUT',
        '/access/roles/desk9',
        role(['alerts:read', 'audit:read', 'users:read']),
      );
      expect(narrowed?.statusCode, narrowed?.body).toBe(200);
      expect(asked.statusCode, asked.body).toBe(409);
      expect(asked.json().code).toBe('state_changed');
    } finally {
      gateRead.mockRestore();
    }
    // Sent again, it is asked for against the role as it is.
    const again = expectAsked(
      await call(alice, 'PUT', '/access/roles/desk9', role(['alerts:read', 'audit:read', 'users:read'])),
    );
    expect(again.summary).toMatch(/Add alerts:read, audit:read to the role desk9/);
  });

  it("an operator's grant that another operator approved before this rule lapses (migration 0074)", async () => {
    // As the code before this rule recorded it: asked by alice under her elevation, approved by bob.
    const params = { via: 'assign', userId: pat.userId, role: 'tenant-admin' };
    const id = randomUUID();
    const migration = new URL(
      '../src/access/migrations/0074_access_operator_grant_requests.sql',
      import.meta.url,
    );
    await t.database.engine.asOwner(async (o) => {
      await o.query(
        `INSERT INTO access_approval_requests (id, tenant_id, action, permission, params, params_hash, summary,
           requested_by_type, requested_by_id, requested_elevation_id, requested_at, expires_at, status,
           decided_by_type, decided_by_id, decided_at)
         VALUES ($1, $2, 'access.grant-tenant-admin', 'roles:assign', $3::jsonb, $4, 'Grant tenant-admin',
           'operator', $5, $6, now(), now() + interval '1 day', 'approved', 'operator', $7, now())`,
        [
          id,
          tenantId,
          JSON.stringify(params),
          paramsHash(params),
          alice.operatorId,
          elevationOf[alice.operatorId],
          bob.operatorId,
        ],
      );
      await o.exec(readFileSync(migration, 'utf8'));
    });
    alice.headers = await alice.signInAgain();
    const run = await execute(alice, id, params);
    expect(run.statusCode, run.body).toBe(409);
    expect(run.json().code).toBe('approval_expired');
    expect(await rolesOf(pat.userId)).toEqual(['member', 'staff']);
  });

  // Review: a tenant that revoked the elevation after approving a request made under it could not stop
  // the operator, who ran it under a new elevation (which another operator may approve).
  it('an approved request runs only under the elevation it was asked under', async () => {
    const dee = await tenantAdmin(t, slug, 'dee@lasting-co.test', clock);
    alice.headers = await alice.signInAgain();
    const invite = { email: 'later@elsewhere.test', displayName: 'Later', role: 'staff' };
    const approval = expectAsked(await call(alice, 'POST', '/users', invite));
    expect((await decide(dee, approval.id)).statusCode).toBe(200);
    const first = elevationOf[alice.operatorId];
    const revoked = await call(dee, 'POST', `/access/elevations/${first}/revoke`);
    expect(revoked.statusCode, revoked.body).toBe(200);
    bob.headers = await bob.signInAgain();
    await elevate(alice, bob);
    expect(elevationOf[alice.operatorId]).not.toBe(first);
    alice.headers = await alice.signInAgain();
    const run = await execute(alice, approval.id, approval.params);
    expect(run.statusCode, run.body).toBe(409);
    expect(run.json().code).toBe('approval_elevation_ended');
    expect(await userByEmail(invite.email)).toBeUndefined();
  });
});
