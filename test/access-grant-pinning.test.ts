/**
 * Approved grants and their role (review of src/access, 2026-11-27):
 * - HIGH: an approved grant of a custom role ran on the role as it was when it ran, not as approved: the
 *   requester widened the role (nobody held it, so not gated), or an elevated operator deleted it and
 *   created it again with everything, then ran the approval: full administrator. The grant is now pinned
 *   to the role's state (its basis): 409 state_changed;
 * - MEDIUM (PostgreSQL): a grant racing a role's deletion left its assignment behind, and a role created
 *   later with that key was held by its user at once;
 * - LOW: the person a grant was for could approve it, and so could a holder of a role widened with
 *   administrator powers;
 * - LOW: deeply nested parameters on execute answered 500;
 * - LOW: a custom role named `constructor` read Object.prototype's entry in the elevation thresholds.
 * Runs on both engines (the race on PostgreSQL only).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { member, operatorSession, type Person, tenantAdmin, withSecondFactor } from './access-helpers.ts';
import { buildTestApp, engineUnderTest, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { CHAIN_HEAD_LOCK, rowHolder } from './race-helpers.ts';

const slug = 'pinned-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const clock = fakeClock(new Date());
let t: TestApp;
let tenantId: string;
let ada: Person;
let bea: Person;
let pat: Person;
let sam: Person;
type Op = Awaited<ReturnType<typeof operatorSession>>;
let alice: Op;
let bob: Op;

type Headers = { headers: Record<string, string> };
const call = (who: Headers, method: 'GET' | 'PUT' | 'POST' | 'DELETE', path: string, payload?: object) =>
  t.app.inject({ method, url: api(path), headers: who.headers, ...(payload ? { payload } : {}) });
const createRole = (who: Headers, key: string, permissions: string[]) =>
  call(who, 'POST', '/access/roles', { key, name: key, permissions });
const approve = (who: Headers, id: string) => call(who, 'POST', `/access/approvals/${id}/approve`);
const execute = (who: Headers, id: string, params: unknown) =>
  call(who, 'POST', `/access/approvals/${id}/execute`, { params });
const rolesOf = async (userId: string): Promise<string[]> =>
  (await call(ada, 'GET', `/access/users/${userId}/roles`)).json().roles;
const everyPermission = async (): Promise<string[]> =>
  (await call(ada, 'GET', '/access/permissions')).json().map((p: { name: string }) => p.name);

beforeAll(async () => {
  t = await buildTestApp({ clock });
  tenantId = (await seedTenant(t, slug)).id;
  ada = await tenantAdmin(t, slug, 'ada@pinned-co.test', clock);
  bea = await tenantAdmin(t, slug, 'bea@pinned-co.test', clock);
  pat = await member(t, slug, ada, 'pat@pinned-co.test');
  sam = await member(t, slug, ada, 'sam@pinned-co.test');
  alice = await operatorSession(t, 'alice@ops.test', clock);
  bob = await operatorSession(t, 'bob@ops.test', clock);
});
afterAll(async () => {
  await t?.close();
});

describe('an approved grant runs on the role its approver saw', () => {
  it('a custom role widened after the approval: the run is refused, the role not granted', async () => {
    expect((await createRole(ada, 'helper', ['alerts:write'])).statusCode).toBe(201);
    const asked = await call(ada, 'PUT', `/access/users/${pat.userId}/roles/helper`);
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    expect(approval.summary).toContain('alerts:write');
    expect((await approve(bea, approval.id)).statusCode).toBe(200);
    // Nobody holds helper: widening it needs nobody's approval.
    const all = await everyPermission();
    expect(
      (await call(ada, 'PUT', '/access/roles/helper', { name: 'helper', permissions: all })).statusCode,
    ).toBe(200);
    const run = await execute(ada, approval.id, approval.params);
    expect(run.statusCode, run.body).toBe(409);
    expect(run.json().code).toBe('state_changed');
    expect(await rolesOf(pat.userId)).not.toContain('helper');
    expect(await t.app.services.access.decide(tenantId, pat.userId, 'roles:assign')).toBe(false);
    // Narrowed back to what was approved, it runs.
    expect(
      (await call(ada, 'PUT', '/access/roles/helper', { name: 'helper', permissions: ['alerts:write'] }))
        .statusCode,
    ).toBe(200);
    const again = await execute(ada, approval.id, approval.params);
    expect(again.statusCode, again.body).toBe(200);
    expect(await rolesOf(pat.userId)).toContain('helper');
  });

  it("an elevated operator's approved grant of a role deleted and created again with more: refused", async () => {
    const asked = await t.app.inject({
      method: 'POST',
      url: '/api/v1/access/elevations',
      headers: alice.headers,
      payload: { tenant: slug, role: 'tenant-admin', reason: 'Ticket 1: support', durationMinutes: 60 },
    });
    expect(asked.statusCode, asked.body).toBe(201);
    const ok = await t.app.inject({
      method: 'POST',
      url: `/api/v1/access/elevations/${asked.json().id}/approve`,
      headers: bob.headers,
    });
    expect(ok.json().status).toBe('active');

    expect((await createRole(alice, 'viewer', ['users:read'])).statusCode).toBe(201);
    const grant = await call(alice, 'PUT', `/access/users/${sam.userId}/roles/viewer`);
    expect(grant.statusCode, grant.body).toBe(202);
    const { approval } = grant.json();
    expect(approval.action).toBe('access.elevated-grant');
    expect((await approve(ada, approval.id)).statusCode).toBe(200);
    expect((await call(alice, 'DELETE', '/access/roles/viewer')).statusCode).toBe(204);
    expect((await createRole(alice, 'viewer', await everyPermission())).statusCode).toBe(201);
    alice.headers = await alice.signInAgain();
    const run = await execute(alice, approval.id, approval.params);
    expect(run.statusCode, run.body).toBe(409);
    expect(run.json().code).toBe('state_changed');
    expect(await rolesOf(sam.userId)).not.toContain('viewer');
    expect(await t.app.services.access.decide(tenantId, sam.userId, 'roles:assign')).toBe(false);
  });
});

describe('the person a grant is for does not approve it', () => {
  it('a user with approvals:decide is refused on the grant of tenant-admin to themself', async () => {
    expect((await createRole(ada, 'approver', ['approvals:decide'])).statusCode).toBe(201);
    const first = (await call(ada, 'PUT', `/access/users/${pat.userId}/roles/approver`)).json().approval;
    expect((await approve(bea, first.id)).statusCode).toBe(200);
    expect((await execute(ada, first.id, first.params)).statusCode).toBe(200);
    pat = await withSecondFactor(t, slug, pat, clock);

    const asked = await call(ada, 'PUT', `/access/users/${pat.userId}/roles/tenant-admin`);
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    const self = await approve(pat, approval.id);
    expect(self.statusCode, self.body).toBe(403);
    expect(self.json().code).toBe('beneficiary_approval');
    // It is still pending: someone else may approve it.
    expect((await approve(bea, approval.id)).statusCode).toBe(200);
  });

  it('a holder of a role is refused on the administrator powers added to it', async () => {
    // pat holds approver (the test above): adding roles:assign to it grants pat that power.
    const widened = await call(ada, 'PUT', '/access/roles/approver', {
      name: 'approver',
      permissions: ['approvals:decide', 'roles:assign'],
    });
    expect(widened.statusCode, widened.body).toBe(202);
    const { approval } = widened.json();
    expect(approval.params).toMatchObject({ via: 'role', role: 'approver' });
    const holder = await approve(pat, approval.id);
    expect(holder.statusCode, holder.body).toBe(403);
    expect(holder.json().code).toBe('beneficiary_approval');
    expect((await approve(bea, approval.id)).statusCode).toBe(200);
    expect((await execute(ada, approval.id, approval.params)).statusCode).toBe(200);
    expect(await t.app.services.access.decide(tenantId, pat.userId, 'roles:assign')).toBe(true);
  });
});

describe('input that answered 500', () => {
  it('deeply nested parameters on execute are different parameters (409), not a crash', async () => {
    const settings = (await call(ada, 'GET', '/access/settings')).json();
    const asked = await call(ada, 'PUT', '/access/settings', {
      ...settings,
      approvalTtlMinutes: settings.approvalTtlMinutes + 10,
    });
    expect(asked.statusCode, asked.body).toBe(202);
    const { id } = asked.json().approval;
    expect((await approve(bea, id)).statusCode).toBe(200);
    const depth = 100_000;
    const res = await t.app.inject({
      method: 'POST',
      url: api(`/access/approvals/${id}/execute`),
      headers: { ...ada.headers, 'content-type': 'application/json' },
      payload: `{"params":${'['.repeat(depth)}${']'.repeat(depth)}}`,
    });
    expect(res.statusCode, res.body.slice(0, 300)).toBe(409);
    expect(res.json().code).toBe('params_changed');
  });

  it('a custom role named constructor has its own threshold (none), not Object.prototype’s', async () => {
    expect((await createRole(ada, 'constructor', ['users:read'])).statusCode).toBe(201);
    const asked = await t.app.inject({
      method: 'POST',
      url: '/api/v1/access/elevations',
      headers: bob.headers,
      payload: { tenant: slug, role: 'constructor', reason: 'Ticket 2: support', durationMinutes: 60 },
    });
    expect(asked.statusCode, asked.body).toBe(201);
    expect(asked.json().approvalsNeeded).toBe(1);
    // Its threshold raised, then taken off: a reduction, which needs approval.
    const settings = (await call(ada, 'GET', '/access/settings')).json();
    const up = await call(ada, 'PUT', '/access/settings', {
      ...settings,
      elevationThresholds: { constructor: 3 },
    });
    expect(up.statusCode, up.body).toBe(200);
    const down = await call(ada, 'PUT', '/access/settings', { ...settings, elevationThresholds: {} });
    expect(down.statusCode, down.body).toBe(202);
    expect(down.json().approval.summary).toContain('3 approvals for constructor');
  });
});

describe.runIf(engineUnderTest === 'postgres')('a grant racing the deletion of its role (PostgreSQL)', () => {
  it('leaves no assignment behind, and a role created again with the key is held by nobody', async () => {
    expect((await createRole(ada, 'desk', ['users:read'])).statusCode).toBe(201);
    const lock = await rowHolder(t);
    let grant: ReturnType<typeof call> | undefined;
    let removal: ReturnType<typeof call> | undefined;
    try {
      await lock.hold(CHAIN_HEAD_LOCK, [tenantId]);
      // The grant inserts its assignment (the role's row FOR SHARE) and waits to append its event.
      grant = call(ada, 'PUT', `/access/users/${sam.userId}/roles/desk`);
      await lock.waiting(1);
      // The deletion reads the holders (the grant's is not committed) and waits for the grant.
      removal = call(ada, 'DELETE', '/access/roles/desk');
      await lock.waiting(2);
    } finally {
      await lock.release();
    }
    const [granted, removed] = await Promise.all([grant, removal]);
    await lock.close();
    expect(granted?.statusCode, granted?.body).toBe(200);
    expect(removed?.statusCode, removed?.body).toBe(204);
    expect(await rolesOf(sam.userId)).not.toContain('desk');
    expect((await createRole(ada, 'desk', ['users:read', 'approvals:decide'])).statusCode).toBe(201);
    expect(await t.app.services.access.decide(tenantId, sam.userId, 'approvals:decide')).toBe(false);
  });

  it('an assignment left behind by an earlier role of the key is removed when the key is created', async () => {
    // As a deletion before this fix left it: the assignment without its role.
    const lock = await rowHolder(t);
    try {
      await lock.run('INSERT INTO access_assignments (tenant_id, user_id, role_key) VALUES ($1, $2, $3)', [
        tenantId,
        sam.userId,
        'ghost',
      ]);
    } finally {
      await lock.close();
    }
    expect(await rolesOf(sam.userId)).toContain('ghost');
    expect((await createRole(ada, 'ghost', ['users:read', 'approvals:decide'])).statusCode).toBe(201);
    expect(await rolesOf(sam.userId)).not.toContain('ghost');
    expect(await t.app.services.access.decide(tenantId, sam.userId, 'approvals:decide')).toBe(false);
  });
});
