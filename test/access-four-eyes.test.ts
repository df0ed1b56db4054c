/**
 * Four-eyes approval of critical actions: the initiator cannot approve; racing approvers decide once;
 * the action runs exactly once with the original parameters even when executions race; changed
 * parameters are refused; an expired approval cannot run. Runs on both engines (PostgreSQL: real
 * concurrency on FOR UPDATE).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { member, type Person, tenantAdmin, withSecondFactor } from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const slug = 'eyes-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const clock = fakeClock(new Date());
let t: TestApp;
let tenantId: string;
let ada: Person;
let bea: Person;
let cy: Person;

beforeAll(async () => {
  t = await buildTestApp({ clock });
  tenantId = (await seedTenant(t, slug)).id;
  ada = await tenantAdmin(t, slug, 'ada@eyes-co.test', clock);
  bea = await tenantAdmin(t, slug, 'bea@eyes-co.test', clock);
  cy = await tenantAdmin(t, slug, 'cy@eyes-co.test', clock);
});
afterAll(async () => {
  await t?.close();
});

const settings = async () => (await t.app.inject({ url: api('/settings') })).json();
const putSettings = (who: Person, payload: object) =>
  t.app.inject({ method: 'PUT', url: api('/settings'), headers: who.headers, payload });
const decide = (who: Person, id: string, decision: 'approve' | 'reject') =>
  t.app.inject({ method: 'POST', url: api(`/access/approvals/${id}/${decision}`), headers: who.headers });
const execute = (who: Person, id: string, params: unknown) =>
  t.app.inject({
    method: 'POST',
    url: api(`/access/approvals/${id}/execute`),
    headers: who.headers,
    payload: { params },
  });

async function count(action: string) {
  const rows = await t.db.withTenant<AuditTables, { action: string }[]>(asTenantId(tenantId), (tx) =>
    tx.selectFrom('audit_events').select('action').where('action', '=', action).execute(),
  );
  return rows.length;
}

describe('four-eyes', () => {
  it('weakening the password policy waits for another person and runs once, with the original parameters', async () => {
    const before = await settings();
    const weaker = structuredClone(before);
    weaker.passwordPolicy.minLength = 8;
    weaker.passwordPolicy.requireUpper = false;
    const asked = await putSettings(ada, weaker);
    expect(asked.statusCode, asked.body).toBe(202);
    const approval = asked.json().approval;
    expect(approval).toMatchObject({
      action: 'identity.password-policy.weaken',
      status: 'pending',
      requestedBy: { type: 'user', id: ada.userId },
    });
    expect(approval.paramsHash).toMatch(/^[0-9a-f]{64}$/);
    expect(await settings()).toEqual(before);

    const self = await decide(ada, approval.id, 'approve');
    expect(self.statusCode).toBe(403);
    expect(self.json().code).toBe('self_approval');
    expect((await execute(ada, approval.id, weaker)).json().code).toBe('approval_not_approved');

    // Two approvers race: exactly one decision is recorded.
    const raced = await Promise.all([
      decide(bea, approval.id, 'approve'),
      decide(cy, approval.id, 'approve'),
    ]);
    expect(raced.map((r) => r.statusCode).sort()).toEqual([200, 409]);
    expect(raced.find((r) => r.statusCode === 409)?.json().code).toBe('approval_not_pending');
    expect(await count('access.approval.approved')).toBe(1);

    // Someone else cannot run it, and changed parameters are refused.
    expect((await execute(bea, approval.id, weaker)).json().code).toBe('not_requester');
    const changed = structuredClone(weaker);
    changed.passwordPolicy.minLength = 9;
    const refused = await execute(ada, approval.id, changed);
    expect(refused.statusCode).toBe(409);
    expect(refused.json().code).toBe('params_changed');
    expect(await settings()).toEqual(before);

    // Two executions race: the action runs exactly once.
    const updatesBefore = await count('identity.settings.updated');
    const runs = await Promise.all([execute(ada, approval.id, weaker), execute(ada, approval.id, weaker)]);
    expect(runs.map((r) => r.statusCode).sort()).toEqual([200, 409]);
    expect(runs.find((r) => r.statusCode === 200)?.json().status).toBe('executed');
    expect(await settings()).toEqual(weaker);
    expect((await count('identity.settings.updated')) - updatesBefore).toBe(1);
    expect(await count('identity.policy.weakened')).toBe(1);
    expect(await count('access.approval.executed')).toBe(1);
    expect((await execute(ada, approval.id, weaker)).json().code).toBe('approval_not_approved');
  });

  it('an expired approval cannot run, nor can an expired request be approved', async () => {
    const current = await settings();
    const off = { ...current, mfaRequired: 'off' };
    const asked = (await putSettings(ada, off)).json().approval;
    expect(asked.action).toBe('identity.mfa-enforcement.weaken');
    expect((await decide(bea, asked.id, 'approve')).statusCode).toBe(200);
    clock.advance(24 * 60 * 60_000 + 1);
    // The clock moved a day: fresh sessions (idle limit), same people.
    ada = await tenantAdmin(t, slug, 'ada2@eyes-co.test', clock);
    bea = await tenantAdmin(t, slug, 'bea2@eyes-co.test', clock);
    cy = await tenantAdmin(t, slug, 'cy2@eyes-co.test', clock);
    const late = await t.app.inject({ url: api('/access/approvals'), headers: bea.headers });
    expect(late.json().find((a: { id: string }) => a.id === asked.id).status).toBe('expired');

    const mine = (await putSettings(ada, off)).json().approval;
    clock.advance(24 * 60 * 60_000 + 1);
    ada = await tenantAdmin(t, slug, 'ada3@eyes-co.test', clock);
    bea = await tenantAdmin(t, slug, 'bea3@eyes-co.test', clock);
    const expired = await decide(bea, mine.id, 'approve');
    expect(expired.statusCode).toBe(409);
    expect(expired.json().code).toBe('approval_expired');
    expect((await settings()).mfaRequired).toBe(current.mfaRequired);
    expect(await count('access.approval.expired')).toBeGreaterThanOrEqual(1);
  });

  it('granting tenant-admin, and taking actions off the list, need a second person too', async () => {
    const pat = await withSecondFactor(t, slug, await member(t, slug, ada, 'pat@eyes-co.test'), clock);
    const grant = await t.app.inject({
      method: 'PUT',
      url: api(`/access/users/${pat.userId}/roles/tenant-admin`),
      headers: ada.headers,
    });
    expect(grant.statusCode).toBe(202);
    const { approval } = grant.json();
    expect(approval.params).toEqual({ via: 'assign', userId: pat.userId, role: 'tenant-admin' });
    expect((await t.app.inject({ url: api('/users'), headers: pat.headers })).statusCode).toBe(403);
    const rejected = await decide(bea, approval.id, 'reject');
    expect(rejected.json().status).toBe('rejected');
    expect((await execute(ada, approval.id, approval.params)).json().code).toBe('approval_not_approved');

    const again = (
      await t.app.inject({
        method: 'PUT',
        url: api(`/access/users/${pat.userId}/roles/tenant-admin`),
        headers: ada.headers,
      })
    ).json().approval;
    await decide(bea, again.id, 'approve');
    expect((await execute(ada, again.id, again.params)).statusCode).toBe(200);
    expect((await t.app.inject({ url: api('/users'), headers: pat.headers })).statusCode).toBe(200);

    // Invitation as tenant-admin is the same critical action.
    const invite = await t.app.inject({
      method: 'POST',
      url: api('/users'),
      headers: ada.headers,
      payload: { email: 'boss@eyes-co.test', role: 'tenant-admin' },
    });
    expect(invite.statusCode).toBe(202);
    expect(invite.json().approval.action).toBe('access.grant-tenant-admin');

    const access = (await t.app.inject({ url: api('/access/settings'), headers: ada.headers })).json();
    const fewer = {
      ...access,
      fourEyesActions: access.fourEyesActions.filter((a: string) => a !== 'identity.password-policy.weaken'),
    };
    const reduce = await t.app.inject({
      method: 'PUT',
      url: api('/access/settings'),
      headers: ada.headers,
      payload: fewer,
    });
    expect(reduce.statusCode).toBe(202);
    expect(reduce.json().approval.action).toBe('access.four-eyes.reduce');
    await decide(bea, reduce.json().approval.id, 'approve');
    expect((await execute(ada, reduce.json().approval.id, fewer)).statusCode).toBe(200);
    // Now the tenant lets one admin weaken the policy alone.
    const current = await settings();
    const weaker = { ...current, passwordPolicy: { ...current.passwordPolicy, historyCount: 0 } };
    expect((await putSettings(ada, weaker)).statusCode).toBe(200);
  });

  // Review: once approved, a request could not be stopped for the rest of the approval's lifetime.
  it('an approval not yet run can be withdrawn by rejecting it; then it does not run', async () => {
    const asker = await tenantAdmin(t, slug, 'asker@eyes-co.test', clock);
    const approver = await tenantAdmin(t, slug, 'approver@eyes-co.test', clock);
    const current = await settings();
    const weaker = { ...current, mfaRequired: 'off' };
    const asked = await putSettings(asker, weaker);
    expect(asked.statusCode, asked.body).toBe(202);
    const id = asked.json().approval.id;
    expect((await decide(approver, id, 'approve')).statusCode).toBe(200);
    expect((await decide(asker, id, 'reject')).json().code).toBe('self_approval');
    const withdrawn = await decide(approver, id, 'reject');
    expect(withdrawn.statusCode, withdrawn.body).toBe(200);
    expect(withdrawn.json().status).toBe('rejected');
    const run = await execute(asker, id, weaker);
    expect(run.statusCode).toBe(409);
    expect(run.json().code).toBe('approval_not_approved');
    expect((await settings()).mfaRequired).toBe(current.mfaRequired);
  });

  it('deciding on and running a critical action need a recent second factor', async () => {
    const current = await settings();
    const asked = await putSettings(ada, { ...current, mfaRequired: 'off' });
    expect(asked.statusCode).toBe(202);
    clock.advance(6 * 60_000);
    const stale = await decide(bea, asked.json().approval.id, 'approve');
    expect(stale.statusCode).toBe(403);
    expect(stale.json().code).toBe('step_up_required');
    const fresh = await tenantAdmin(t, slug, 'bea4@eyes-co.test', clock);
    expect((await decide(fresh, asked.json().approval.id, 'approve')).statusCode).toBe(200);
    const run = await execute(ada, asked.json().approval.id, { ...current, mfaRequired: 'off' });
    expect(run.json().code).toBe('step_up_required');
    expect((await settings()).mfaRequired).toBe(current.mfaRequired);
  });
});
