/**
 * An administrator's reset of a user's second factor (security review: a confirmed authenticator could
 * never be removed, and nobody was told when one was added): the authenticator and recovery codes go,
 * every session of the user ends, the next sign-in asks the password only (or leads to enrolment where
 * the tenant requires 2FA), it is audited and needs users:write and the caller's recent second factor;
 * and the user is mailed a notice when an authenticator is confirmed, reset, or the password changes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isPrivileged } from '../src/audit/alert-rules.ts';
import type { AuditTables } from '../src/audit/index.ts';
import { csrfTokenFor } from '../src/identity/session-tokens.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import {
  databaseState,
  member,
  operatorSession,
  type Person,
  tenantAdmin,
  withSecondFactor,
} from './access-helpers.ts';
import { buildTestApp, engineUnderTest, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import {
  changeSettingsAsApproved,
  factorRows,
  linkFromOutbox,
  strongPassword,
  totpCode,
} from './identity-helpers.ts';
import { rowHolder } from './race-helpers.ts';

const slug = 'mfareset-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const clock = fakeClock(new Date());
let t: TestApp;
let tenantId: string;
let admin: Person & { secret: string };

beforeAll(async () => {
  t = await buildTestApp({ clock });
  tenantId = (await seedTenant(t, slug)).id;
  admin = await tenantAdmin(t, slug, `admin@${slug}.test`, clock);
});
afterAll(async () => {
  await t?.close();
});

const resetMfa = (headers: Record<string, string>, userId: string) =>
  t.app.inject({ method: 'DELETE', url: api(`/users/${userId}/mfa`), headers });
const signIn = (email: string, password = strongPassword) =>
  t.app.inject({ method: 'POST', url: api('/auth/signin'), payload: { email, password } });
const me = (headers: Record<string, string>) => t.app.inject({ url: api('/me'), headers });
const mailsTo = async (to: string) => (await t.app.services.mailer.outbox(200)).filter((m) => m.to === to);
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
/** A member who enrolled an authenticator, with a second bearer session that used it too. */
async function enrolledMember(email: string) {
  const person = await withSecondFactor(t, slug, await member(t, slug, admin, email), clock);
  clock.advance(30_000);
  const other = (await signIn(email)).json().token as string;
  const otherHeaders = { authorization: `Bearer ${other}` };
  const second = await t.app.inject({
    method: 'POST',
    url: api('/auth/second-factor'),
    headers: otherHeaders,
    payload: { code: totpCode(person.secret, clock.now().getTime()) },
  });
  expect(second.statusCode, second.body).toBe(200);
  return { ...person, other: { authorization: `Bearer ${second.json().token}` } };
}

describe(`an administrator resets a user's second factor (${engineUnderTest})`, () => {
  it('without 2FA enforcement: the factor and codes go, every session ends, sign-in asks the password only; audited and mailed', async () => {
    await changeSettingsAsApproved(t, slug, (s) => {
      s.mfaRequired = 'off';
    });
    const pat = await enrolledMember(`pat@${slug}.test`);
    // Enrolling told the owner.
    const enrolNotice = (await mailsTo(pat.email)).filter((m) => /authenticator was added/.test(m.subject));
    expect(enrolNotice).toHaveLength(1);
    expect(enrolNotice[0]?.text).not.toMatch(/https?:\/\//);
    expect(await factorRows(t, pat.userId)).toEqual({ totp: 1, recoveryCodes: 10 });

    const reset = await resetMfa(admin.headers, pat.userId);
    expect(reset.statusCode, reset.body).toBe(200);
    expect(reset.json()).toEqual({ sessionsEnded: 2 });
    expect(await factorRows(t, pat.userId)).toEqual({ totp: 0, recoveryCodes: 0 });
    expect((await me(pat.headers)).statusCode).toBe(401);
    expect((await me(pat.other)).statusCode).toBe(401);

    const again = await signIn(pat.email);
    expect(again.statusCode).toBe(200);
    expect(again.json().stage).toBe('active');
    expect((await me({ authorization: `Bearer ${again.json().token}` })).statusCode).toBe(200);

    const [event] = await events('identity.mfa.reset');
    expect(event).toMatchObject({
      actor_id: admin.userId,
      target_id: pat.userId,
      details: { sessionsEnded: 2, recoveryRemoved: 10 },
    });
    const resetNotice = (await mailsTo(pat.email)).filter((m) => /reset by an administrator/.test(m.subject));
    expect(resetNotice).toHaveLength(1);
    expect(resetNotice[0]?.text).not.toMatch(/https?:\/\//);

    // Nothing left to reset: 409, nothing audited.
    const twice = await resetMfa(admin.headers, pat.userId);
    expect(twice.statusCode).toBe(409);
    expect(twice.json().code).toBe('mfa_not_enrolled');
    expect(await events('identity.mfa.reset')).toHaveLength(1);
  });

  it('with 2FA enforcement: the next sign-in leads to enrolment of a new authenticator', async () => {
    const kim = await enrolledMember(`kim@${slug}.test`);
    await changeSettingsAsApproved(t, slug, (s) => {
      s.mfaRequired = 'all';
    });
    try {
      clock.advance(30_000);
      const stepped = await t.app.inject({
        method: 'POST',
        url: api('/auth/second-factor'),
        headers: admin.headers,
        payload: { code: totpCode(admin.secret, clock.now().getTime()) },
      });
      expect(stepped.statusCode, stepped.body).toBe(200);
      admin = { ...admin, headers: { authorization: `Bearer ${stepped.json().token}` } };
      expect((await resetMfa(admin.headers, kim.userId)).statusCode).toBe(200);
      const again = await signIn(kim.email);
      expect(again.json().stage).toBe('enrol');
      const headers = { authorization: `Bearer ${again.json().token}` };
      // Only enrolment is open to that session, and it enrols a new authenticator.
      expect((await me(headers)).json().code).toBe('step_up_required');
      const enrol = await t.app.inject({ method: 'POST', url: api('/me/mfa/totp'), headers });
      expect(enrol.statusCode, enrol.body).toBe(200);
    } finally {
      await changeSettingsAsApproved(t, slug, (s) => {
        s.mfaRequired = 'off';
      });
    }
  });

  it('needs users:write: a member gets 403 and nothing changes', async () => {
    const sam = await enrolledMember(`sam@${slug}.test`);
    const other = await member(t, slug, admin, `other@${slug}.test`);
    const before = await databaseState(t);
    const res = await resetMfa(other.headers, sam.userId);
    expect(res.statusCode).toBe(403);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(res.json().code).toBe('forbidden');
    expect((await databaseState(t)).tables).toEqual(before.tables);
    expect((await me(sam.headers)).statusCode).toBe(200);
  });

  it("needs the caller's second factor within 5 minutes, and refuses unknown users and oneself", async () => {
    const lee = await enrolledMember(`lee@${slug}.test`);
    clock.advance(6 * 60_000);
    const resets = (await events('identity.mfa.reset')).length;
    const stale = await resetMfa(admin.headers, lee.userId);
    expect(stale.statusCode).toBe(403);
    expect(stale.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(stale.json().code).toBe('step_up_required');
    expect(await factorRows(t, lee.userId)).toEqual({ totp: 1, recoveryCodes: 10 });
    expect((await me(lee.headers)).statusCode).toBe(200);

    const stepped = await t.app.inject({
      method: 'POST',
      url: api('/auth/second-factor'),
      headers: admin.headers,
      payload: { code: totpCode(admin.secret, clock.now().getTime()) },
    });
    expect(stepped.statusCode, stepped.body).toBe(200);
    admin = { ...admin, headers: { authorization: `Bearer ${stepped.json().token}` } };

    const unknown = await resetMfa(admin.headers, '0b7c4f6e-9f1a-4c2b-8d3e-5a6f7b8c9d0e');
    expect(unknown.statusCode).toBe(404);
    expect(unknown.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(unknown.json().code).toBe('user_not_found');

    const self = await resetMfa(admin.headers, admin.userId);
    expect(self.statusCode).toBe(409);
    expect(self.json().code).toBe('cannot_reset_own_mfa');
    expect(await factorRows(t, admin.userId)).toEqual({ totp: 1, recoveryCodes: 10 });
    expect((await me(admin.headers)).statusCode).toBe(200);
    expect(await events('identity.mfa.reset')).toHaveLength(resets);
  });
});

// Review: users:write alone reset a tenant-admin's factor, and whoever held that admin's password then
// enrolled their own: the powers changed hands without a second person, where an enable needs one.
describe("an administrator's second factor", () => {
  it("is reset only with another person's approval, which the administrator may not give", async () => {
    const asker = await tenantAdmin(t, slug, `asker@${slug}.test`, clock);
    const target = await tenantAdmin(t, slug, `target@${slug}.test`, clock);
    const approver = await tenantAdmin(t, slug, `approver@${slug}.test`, clock);
    const asked = await resetMfa(asker.headers, target.userId);
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    expect(approval.action).toBe('access.grant-tenant-admin');
    expect(approval.summary).toMatch(/^Reset the second factor of target@/);
    expect(await factorRows(t, target.userId)).toEqual({ totp: 1, recoveryCodes: 10 });
    const decide = (who: Person) =>
      t.app.inject({
        method: 'POST',
        url: api(`/access/approvals/${approval.id}/approve`),
        headers: who.headers,
      });
    expect((await decide(target)).statusCode).toBe(403);
    expect((await decide(approver)).statusCode).toBe(200);
    const run = await t.app.inject({
      method: 'POST',
      url: api(`/access/approvals/${approval.id}/execute`),
      headers: asker.headers,
      payload: { params: { via: 'mfa-reset', userId: target.userId } },
    });
    expect(run.statusCode, run.body).toBe(200);
    expect(await factorRows(t, target.userId)).toEqual({ totp: 0, recoveryCodes: 0 });
    expect((await me(target.headers)).statusCode).toBe(401);
  });
});

// A confirmation holds the pending row, then takes the user's row (its session rotation); the reset takes
// the user's row, then deletes the confirmed authenticator only. Were it to wait for the pending row, the
// two would deadlock (PostgreSQL only: PGlite runs one transaction at a time).
describe.skipIf(engineUnderTest !== 'postgres')('a reset racing an enrolment confirmation', () => {
  it('answers 409 at once, without waiting for the pending row the confirmation holds', async () => {
    const una = await member(t, slug, admin, `una@${slug}.test`);
    const begin = await t.app.inject({ method: 'POST', url: api('/me/mfa/totp'), headers: una.headers });
    expect(begin.statusCode, begin.body).toBe(200);
    const holder = await rowHolder(t);
    try {
      await holder.hold(
        'UPDATE user_totp SET enrol_failures = enrol_failures + 1 WHERE user_id = $1 AND confirmed_at IS NULL',
        [una.userId],
      );
      const answer = await Promise.race([
        resetMfa(admin.headers, una.userId),
        new Promise<null>((resolve) => setTimeout(() => resolve(null), 5_000)),
      ]);
      expect(answer?.statusCode).toBe(409);
      expect(answer?.json().code).toBe('mfa_not_enrolled');
    } finally {
      await holder.close();
    }
  });
});

describe(`an elevated operator resets a user's second factor (${engineUnderTest})`, () => {
  it('needs a sign-in token at most 5 minutes old, and is audited under the elevation', async () => {
    const alice = await operatorSession(t, `alice@ops-${slug}.test`, clock);
    const bob = await operatorSession(t, `bob@ops-${slug}.test`, clock);
    const asked = await t.app.inject({
      method: 'POST',
      url: '/api/v1/access/elevations',
      headers: alice.headers,
      payload: { tenant: slug, role: 'tenant-admin', reason: 'Ticket 4711: lost phone', durationMinutes: 60 },
    });
    expect(asked.statusCode, asked.body).toBe(201);
    const approved = await t.app.inject({
      method: 'POST',
      url: `/api/v1/access/elevations/${asked.json().id}/approve`,
      headers: bob.headers,
    });
    expect(approved.json().status).toBe('active');
    const ray = await enrolledMember(`ray@${slug}.test`);

    clock.advance(6 * 60_000);
    const stale = await resetMfa(alice.headers, ray.userId);
    expect(stale.statusCode).toBe(403);
    expect(stale.json().code).toBe('step_up_required');
    expect(await factorRows(t, ray.userId)).toEqual({ totp: 1, recoveryCodes: 10 });

    const fresh = await resetMfa(await alice.signInAgain(), ray.userId);
    expect(fresh.statusCode, fresh.body).toBe(200);
    expect(await factorRows(t, ray.userId)).toEqual({ totp: 0, recoveryCodes: 0 });
    const mine = await t.db.withTenant<AuditTables, { actor_elevation_id: string | null }[]>(
      asTenantId(tenantId),
      (tx) =>
        tx
          .selectFrom('audit_events')
          .select(['actor_elevation_id'])
          .where('action', '=', 'identity.mfa.reset')
          .where('target_id', '=', ray.userId)
          .execute(),
    );
    expect(mine).toEqual([{ actor_elevation_id: asked.json().id }]);
  });
});

describe(`security notices (${engineUnderTest})`, () => {
  it('mails the user when their password is changed, or reset with a link', async () => {
    const email = `changer@${slug}.test`;
    await member(t, slug, admin, email);
    const tenant = { id: asTenantId(tenantId), slug };
    const ctx = {
      actor: { type: 'anonymous', id: null },
      ip: null,
      userAgent: null,
      requestId: null,
    } as const;
    const browser = await t.app.services.identity.signIn(tenant, email, strongPassword, 'cookie', ctx);
    const changed = await t.app.inject({
      method: 'POST',
      url: api('/me/password'),
      headers: {
        cookie: `rampart_session=${browser.token}`,
        'x-csrf-token': csrfTokenFor(t.app.services.identity.deps, browser.sessionId),
      },
      payload: { currentPassword: strongPassword, newPassword: 'Fresh-Meadow-Signal-31' },
    });
    expect(changed.statusCode, changed.body).toBe(200);
    const notices = async () => (await mailsTo(email)).filter((m) => /password was changed/.test(m.subject));
    expect(await notices()).toHaveLength(1);
    expect((await notices())[0]?.text).not.toMatch(/https?:\/\//);

    const forgot = await t.app.inject({ method: 'POST', url: api('/password/forgot'), payload: { email } });
    expect(forgot.statusCode, forgot.body).toBe(202);
    const { token } = await linkFromOutbox(t, email);
    const reset = await t.app.inject({
      method: 'POST',
      url: api('/password/reset'),
      payload: { token, password: 'Another-Quiet-River-77' },
    });
    expect(reset.statusCode, reset.body).toBe(200);
    expect(await notices()).toHaveLength(2);
  });
});

describe('anomaly rules', () => {
  it("count an administrator's second-factor reset as a privileged action (privileged.off_hours)", () => {
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
    expect(isPrivileged({ ...event, action: 'identity.mfa.reset' })).toBe(true);
  });
});
