/**
 * Operators' just-in-time access with an injected clock: request, self-approval refused, approval by
 * another, access works, after expiry refused with no job having run, revocation immediate; thresholds,
 * tenant approval and the second-factor rules.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { operatorSession, type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const slug = 'elev-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const clock = fakeClock(new Date());
let t: TestApp;
let tenantId: string;
let admin: Person;
type Op = Awaited<ReturnType<typeof operatorSession>>;
let alice: Op;
let bob: Op;
let carol: Op;

beforeAll(async () => {
  t = await buildTestApp({ clock });
  tenantId = (await seedTenant(t, slug)).id;
  admin = await tenantAdmin(t, slug);
  alice = await operatorSession(t, 'alice@ops.test', clock);
  bob = await operatorSession(t, 'bob@ops.test', clock);
  carol = await operatorSession(t, 'carol@ops.test', clock);
});
afterAll(async () => {
  await t?.close();
});

const ask = (op: { headers: Record<string, string> }, role = 'tenant-admin', durationMinutes = 60) =>
  t.app.inject({
    method: 'POST',
    url: '/api/v1/access/elevations',
    headers: op.headers,
    payload: { tenant: slug, role, reason: 'Ticket 4711: customer cannot sign in', durationMinutes },
  });
const decide = (op: { headers: Record<string, string> }, id: string, decision: string) =>
  t.app.inject({ method: 'POST', url: `/api/v1/access/elevations/${id}/${decision}`, headers: op.headers });
const listUsers = (headers: Record<string, string>) => t.app.inject({ url: api('/users'), headers });

async function audit() {
  return t.db.withTenant<AuditTables, { action: string; actor_id: string | null; details: unknown }[]>(
    asTenantId(tenantId),
    (tx) => tx.selectFrom('audit_events').select(['action', 'actor_id', 'details']).execute(),
  );
}
const detailsOf = (d: unknown) => (typeof d === 'string' ? JSON.parse(d) : d) as Record<string, unknown>;

describe('elevation', () => {
  it('grants access only between approval by another operator and expiry, and audits it with its id', async () => {
    expect((await listUsers(alice.headers)).statusCode).toBe(403);
    const asked = await ask(alice);
    expect(asked.statusCode, asked.body).toBe(201);
    const { id } = asked.json();
    expect(asked.json()).toMatchObject({ status: 'pending', approvalsNeeded: 1, role: 'tenant-admin' });
    // Pending is not granted.
    expect((await listUsers(alice.headers)).statusCode).toBe(403);

    const self = await decide(alice, id, 'approve');
    expect(self.statusCode).toBe(403);
    expect(self.json().code).toBe('self_approval');

    const approved = await decide(bob, id, 'approve');
    expect(approved.statusCode, approved.body).toBe(200);
    expect(approved.json().status).toBe('active');
    expect(new Date(approved.json().expiresAt).getTime()).toBe(clock.now().getTime() + 60 * 60_000);

    expect((await listUsers(alice.headers)).statusCode).toBe(200);
    // A state change under the elevation: its audit event carries the elevation id.
    const role = await t.app.inject({
      method: 'POST',
      url: api('/access/roles'),
      headers: alice.headers,
      payload: { key: 'helpdesk', name: 'Helpdesk', permissions: ['users:read'] },
    });
    expect(role.statusCode, role.body).toBe(201);
    const created = (await audit()).find((e) => e.action === 'access.role.created');
    expect(created?.actor_id).toBe(alice.operatorId);
    expect(detailsOf(created?.details).elevationId).toBe(id);
    // The same operator's API token (no second factor) does not carry the elevation.
    expect((await listUsers(alice.apiHeaders)).statusCode).toBe(403);

    clock.advance(59 * 60_000);
    expect((await listUsers(alice.headers)).statusCode).toBe(200);
    clock.advance(60_001);
    // Past expiry: refused at the next check; nothing ran in between.
    expect((await listUsers(alice.headers)).statusCode).toBe(403);
    const list = await t.app.inject({ url: '/api/v1/access/elevations', headers: bob.headers });
    expect(list.json().find((e: { id: string }) => e.id === id).status).toBe('expired');
    const actions = (await audit()).map((e) => e.action);
    expect(actions).toEqual(
      expect.arrayContaining(['access.elevation.requested', 'access.elevation.granted']),
    );
  });

  it('ends at once when revoked', async () => {
    const alice2 = await operatorSession(t, 'alice2@ops.test', clock);
    // Deciding needs a second factor within 5 minutes: the approvers sign in again.
    bob.headers = await bob.signInAgain();
    carol.headers = await carol.signInAgain();
    const { id } = (await ask(alice2, 'staff')).json();
    await decide(bob, id, 'approve');
    expect((await listUsers(alice2.headers)).statusCode).toBe(200);
    const revoked = await decide(bob, id, 'revoke');
    expect(revoked.json().status).toBe('revoked');
    expect((await listUsers(alice2.headers)).statusCode).toBe(403);
    expect((await decide(carol, id, 'approve')).json().code).toBe('elevation_not_pending');
  });

  it('needs a recent two-factor sign-in to ask, and at most ELEVATION_MAX_MINUTES', async () => {
    const api = await ask({ headers: alice.apiHeaders });
    expect(api.statusCode).toBe(403);
    expect(api.json().code).toBe('step_up_required');
    const late = await operatorSession(t, 'late@ops.test', clock);
    clock.advance(16 * 60_000);
    expect((await ask(late)).json().code).toBe('step_up_required');
    const fresh = await operatorSession(t, 'fresh@ops.test', clock);
    const long = await ask(fresh, 'staff', 481);
    expect(long.statusCode).toBe(422);
    expect(long.json().code).toBe('elevation_too_long');
    expect((await ask(fresh, 'ghost')).json().code).toBe('role_not_found');
  });

  it("a node's cached operator credential never outlives the token", async () => {
    const op = await operatorSession(t, 'short@ops.test', clock);
    const list = () => t.app.inject({ url: '/api/v1/access/elevations', headers: op.headers });
    clock.advance(op.expiresAt.getTime() - clock.now().getTime() - 10_000);
    expect((await list()).statusCode).toBe(200);
    expect((await list()).statusCode).toBe(200);
    clock.advance(10_001);
    expect((await list()).statusCode).toBe(401);
  });

  it('follows the tenant: its own approval, and N approvals per role', async () => {
    // The clock moved past the first admin's idle limit: a fresh admin session.
    admin = await tenantAdmin(t, slug, 'first@elev-co.test', clock);
    bob = await operatorSession(t, 'bob2@ops.test', clock);
    const settings = await t.app.inject({ url: api('/access/settings'), headers: admin.headers });
    const changed = await t.app.inject({
      method: 'PUT',
      url: api('/access/settings'),
      headers: admin.headers,
      payload: {
        ...(settings.json() as object),
        elevationApprover: 'tenant',
        elevationThresholds: { staff: 2 },
      },
    });
    expect(changed.statusCode, changed.body).toBe(200);
    const dave = await operatorSession(t, 'dave@ops.test', clock);
    const { id, approvalsNeeded, approver } = (await ask(dave, 'staff')).json();
    expect({ approvalsNeeded, approver }).toEqual({ approvalsNeeded: 2, approver: 'tenant' });
    expect((await decide(bob, id, 'approve')).json().code).toBe('wrong_approver');
    const tenantDecide = (headers: Record<string, string>) =>
      t.app.inject({ method: 'POST', url: api(`/access/elevations/${id}/approve`), headers });
    const first = await tenantDecide(admin.headers);
    expect(first.json()).toMatchObject({ status: 'pending', approvals: 1 });
    expect((await tenantDecide(admin.headers)).json().code).toBe('already_approved');
    expect((await listUsers(dave.headers)).statusCode).toBe(403);
    const second = await tenantAdmin(t, slug, 'second@elev-co.test', clock);
    const done = await tenantDecide(second.headers);
    expect(done.json()).toMatchObject({ status: 'active', approvals: 2 });
    expect((await listUsers(dave.headers)).statusCode).toBe(200);
    // An elevated operator cannot decide on elevations through the tenant's routes.
    const other = await operatorSession(t, 'erin@ops.test', clock);
    const pending = (await ask(other, 'staff')).json();
    const byDave = await t.app.inject({
      method: 'POST',
      url: api(`/access/elevations/${pending.id}/approve`),
      headers: dave.headers,
    });
    expect(byDave.statusCode).toBe(401);
    // Handing elevation approval back to operators weakens segregation of duties: a second person decides.
    const current = (await t.app.inject({ url: api('/access/settings'), headers: admin.headers })).json();
    const back = await t.app.inject({
      method: 'PUT',
      url: api('/access/settings'),
      headers: admin.headers,
      payload: { ...current, elevationApprover: 'operator', elevationThresholds: {} },
    });
    expect(back.statusCode).toBe(202);
    expect(back.json().approval.action).toBe('access.four-eyes.reduce');
  });
});

describe('an elevated operator reading the tenant audit trail', () => {
  it('is audited search by search, with the elevation and the filters; a tenant reader is not', async () => {
    const reader = await tenantAdmin(t, slug, 'reader@elev-co.test', clock);
    const searcher = await operatorSession(t, 'trail-reader@ops.test', clock);
    const asked = await ask(searcher, 'tenant-admin', 30);
    expect(asked.statusCode, asked.body).toBe(201);
    const { id, approver } = asked.json();
    // Whoever this tenant's settings (changed by the tests above) name decides.
    const approved =
      approver === 'tenant'
        ? await t.app.inject({
            method: 'POST',
            url: api(`/access/elevations/${id}/approve`),
            headers: reader.headers,
          })
        : await decide(await operatorSession(t, 'trail-approver@ops.test', clock), id, 'approve');
    expect(approved.statusCode, approved.body).toBe(200);
    const searched = () => audit().then((all) => all.filter((e) => e.action === 'audit.trail.searched'));
    const before = (await searched()).length;

    const own = await t.app.inject({ url: api('/audit/events?limit=5'), headers: reader.headers });
    expect(own.statusCode, own.body).toBe(200);
    expect(await searched()).toHaveLength(before);

    const res = await t.app.inject({
      url: api('/audit/events?limit=5&action=access.role.created'),
      headers: searcher.headers,
    });
    expect(res.statusCode, res.body).toBe(200);
    const after = await searched();
    expect(after).toHaveLength(before + 1);
    const event = after.at(-1);
    expect(event?.actor_id).toBe(searcher.operatorId);
    expect(detailsOf(event?.details)).toMatchObject({
      elevationId: id,
      filters: 'action=access.role.created',
    });
  });
});
