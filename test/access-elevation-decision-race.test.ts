/**
 * Elevation decisions against the changes they read (review of just-in-time elevation, 2026-11-27):
 * - a decision locked the tenant's access settings (FOR SHARE) before the user rows of the approvers it
 *   re-checks, while an approved settings change locks its approver's user row before the settings and
 *   a role deletion locks its holders' user rows in id order: the three could wait for each other in a
 *   circle, PostgreSQL broke the deadlock by rolling one back, and the decision (or the settings
 *   change's claim) answered 503;
 * - the `approver` shown on a pending request was the tenant's approver mode when it was asked for,
 *   not the one a decision uses (the mode now); and its `approvalsNeeded` the role's threshold then, not
 *   the higher of that and the threshold now, which a decision needs.
 * The race is made certain on PostgreSQL (PGlite runs one transaction at a time: there the requests
 * simply run one after the other, and the same outcomes must hold).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AccessSettings } from '../src/access/settings.ts';
import { systemContext } from '../src/platform/context.ts';
import { operatorSession, type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, engineUnderTest, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { rowHolder } from './race-helpers.ts';

const slug = 'elevation-race-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const clock = fakeClock(new Date());
const ctx = systemContext('test');
let t: TestApp;
let tenantId: string;
let ana: Person;
let admins: Person[];
let operators = 0;

beforeAll(async () => {
  t = await buildTestApp({ clock });
  tenantId = (await seedTenant(t, slug)).id;
  ana = await tenantAdmin(t, slug, `ana@${slug}.test`, clock);
  admins = [];
  for (const name of ['bo', 'cy', 'di'])
    admins.push(await tenantAdmin(t, slug, `${name}@${slug}.test`, clock));
  await t.app.services.access.roles.create(tenantId, ctx, 'helper', {
    name: 'Helper',
    permissions: ['users:read'],
  });
});
afterAll(async () => {
  await t?.close();
});

const settingsService = () => t.app.services.access.settings;
async function setSettings(change: Partial<AccessSettings>) {
  await settingsService().update(tenantId, ctx, { ...(await settingsService().get(tenantId)), ...change });
}
const post = (who: Person, path: string, payload?: object) =>
  t.app.inject({ method: 'POST', url: api(path), headers: who.headers, ...(payload ? { payload } : {}) });

async function askElevation(role: string) {
  const op = await operatorSession(t, `op${++operators}@ops.test`, clock);
  const asked = await t.app.inject({
    method: 'POST',
    url: '/api/v1/access/elevations',
    headers: op.headers,
    payload: { tenant: slug, role, reason: 'Ticket 6200: support case', durationMinutes: 30 },
  });
  expect(asked.statusCode, asked.body).toBe(201);
  return { id: asked.json().id as string, op };
}

describe('an elevation decision racing an approved change of who approves and a role deletion', () => {
  it('never deadlocks (was: 503 unavailable, PostgreSQL 40P01)', async () => {
    await setSettings({ elevationApprover: 'tenant', elevationThresholds: { helper: 2 } });
    // U re-checked by the decision, V the settings change's approver: the role deletion locks U, then V.
    let [u, v, w] = admins as [Person, Person, Person];
    if (u.userId > v.userId) [u, v] = [v, u];
    const roles = t.app.services.access.roles;
    await roles.create(tenantId, ctx, 'shared-x', { name: 'Shared', permissions: ['users:read'] });
    await roles.assign(tenantId, ctx, u.userId, 'shared-x');
    await roles.assign(tenantId, ctx, v.userId, 'shared-x');

    const { id } = await askElevation('helper');
    expect((await post(u, `/access/elevations/${id}/approve`)).json()).toMatchObject({
      status: 'pending',
      approvals: 1,
    });
    // Handing elevation approval to operators is a weakening: ana asks, V approves, ana runs it.
    const next = { ...(await settingsService().get(tenantId)), elevationApprover: 'operator' };
    const asked = await t.app.inject({
      method: 'PUT',
      url: api('/access/settings'),
      headers: ana.headers,
      payload: next,
    });
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    expect((await post(v, `/access/approvals/${approval.id}/approve`)).statusCode).toBe(200);

    const deletion = () =>
      t.app.inject({ method: 'DELETE', url: api('/access/roles/shared-x'), headers: ana.headers });
    const decision = () => post(w, `/access/elevations/${id}/approve`);
    const change = () => post(ana, `/access/approvals/${approval.id}/execute`, { params: approval.params });

    let answers: Awaited<ReturnType<typeof decision>>[];
    if (engineUnderTest !== 'postgres') {
      answers = await Promise.all([deletion(), decision(), change()]);
    } else {
      // Another session holds V's user row FOR SHARE: the deletion locks U and queues for V; the
      // decision then queues for U; the settings change (FOR SHARE on V is granted beside the holder's)
      // reaches the settings row, which the decision used to hold FOR SHARE already; then V is let go
      // and the deletion queues behind the settings change: a circle, before the fix.
      const lock = await rowHolder(t);
      try {
        await lock.hold('SELECT 1 FROM users WHERE id = $1 FOR SHARE', [v.userId]);
        const deleting = deletion();
        await lock.waiting(1);
        const deciding = decision();
        await lock.waiting(2);
        let settled = false;
        const changing = change().finally(() => {
          settled = true;
        });
        // The change waits for the decision (before the fix), or runs through (after it).
        for (let i = 0; i < 400 && !settled; i++) {
          const { rows } = await lock.run(
            `SELECT count(*)::int AS n FROM pg_stat_activity
             WHERE datname = current_database() AND wait_event_type = 'Lock'`,
            [],
          );
          if ((rows[0]?.n ?? 0) >= 3) break;
          await new Promise((resolve) => setTimeout(resolve, 25));
        }
        await lock.release();
        answers = await Promise.all([deleting, deciding, changing]);
      } finally {
        await lock.close();
      }
    }
    const [deleted, decided, changed] = answers as [
      Awaited<ReturnType<typeof decision>>,
      Awaited<ReturnType<typeof decision>>,
      Awaited<ReturnType<typeof decision>>,
    ];
    for (const answer of answers) expect(answer.statusCode, answer.body).not.toBe(503);
    expect(deleted.statusCode, deleted.body).toBe(204);
    expect(changed.statusCode, changed.body).toBe(200);
    expect((await settingsService().get(tenantId)).elevationApprover).toBe('operator');
    // Decided before the change committed (granted), or after it (operators approve now).
    if (decided.statusCode === 200) expect(decided.json().status).toBe('active');
    else expect(decided.json().code, decided.body).toBe('wrong_approver');
    await setSettings({ elevationApprover: 'operator', elevationThresholds: {} });
  });
});

/** The request as the tenant's list and the operators' platform list show it. */
function listed(id: string, op: { headers: { authorization: string } }) {
  const find = (list: { id: string }[]) => list.find((e) => e.id === id);
  return {
    tenantList: async () =>
      find((await t.app.inject({ url: api('/access/elevations'), headers: ana.headers })).json()),
    platformList: async () =>
      find((await t.app.inject({ url: '/api/v1/access/elevations', headers: op.headers })).json()),
  };
}

describe('the approver shown on a pending elevation request', () => {
  it('is the mode a decision uses now, in both lists (was: the mode when it was asked for)', async () => {
    await setSettings({ elevationApprover: 'tenant', elevationThresholds: {} });
    const { id, op } = await askElevation('helper');
    const { tenantList, platformList } = listed(id, op);
    expect(await tenantList()).toMatchObject({ approver: 'tenant' });
    expect(await platformList()).toMatchObject({ approver: 'tenant' });

    await setSettings({ elevationApprover: 'operator' });
    expect(await tenantList()).toMatchObject({ status: 'pending', approver: 'operator' });
    expect(await platformList()).toMatchObject({ status: 'pending', approver: 'operator' });
    // And operators are who decide it now.
    const refused = await post(ana, `/access/elevations/${id}/approve`);
    expect(refused.json().code, refused.body).toBe('wrong_approver');

    await setSettings({ elevationApprover: 'tenant' });
    expect(await tenantList()).toMatchObject({ approver: 'tenant' });
    expect(await platformList()).toMatchObject({ approver: 'tenant' });
    await setSettings({ elevationApprover: 'operator' });
  });
});

describe('the approvals a pending elevation request shows it needs', () => {
  it('are what a decision needs now, in both lists and the answers (was: the threshold when asked)', async () => {
    const [bo, cy, di] = admins as [Person, Person, Person];
    await setSettings({ elevationApprover: 'tenant', elevationThresholds: { helper: 2 } });
    const { id, op } = await askElevation('helper');
    const { tenantList, platformList } = listed(id, op);
    const shows = async (approvalsNeeded: number, status = 'pending') => {
      expect(await tenantList()).toMatchObject({ status, approvalsNeeded });
      expect(await platformList()).toMatchObject({ status, approvalsNeeded });
    };
    await shows(2);

    // A threshold raised since the request applies to it; one lowered since does not.
    await setSettings({ elevationThresholds: { helper: 3 } });
    await shows(3);
    await setSettings({ elevationThresholds: { helper: 1 } });
    await shows(2);
    await setSettings({ elevationThresholds: { helper: 4 } });
    await shows(4);
    const first = await post(bo, `/access/elevations/${id}/approve`);
    expect(first.json(), first.body).toMatchObject({ status: 'pending', approvals: 1, approvalsNeeded: 4 });
    // And the number shown is the number a decision uses: 2 more approvals leave it pending at 3 of 4.
    await setSettings({ elevationThresholds: { helper: 2 } });
    await shows(4);
    const second = await post(cy, `/access/elevations/${id}/approve`);
    expect(second.json(), second.body).toMatchObject({ status: 'pending', approvals: 2, approvalsNeeded: 4 });

    // A request no longer pending keeps the number recorded on it.
    await setSettings({ elevationThresholds: { helper: 5 } });
    await shows(5);
    const rejected = await post(di, `/access/elevations/${id}/reject`);
    expect(rejected.json(), rejected.body).toMatchObject({ status: 'rejected', approvalsNeeded: 4 });
    await shows(4, 'rejected');
    await setSettings({ elevationApprover: 'operator', elevationThresholds: {} });
  });
});
