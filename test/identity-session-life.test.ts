import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toTenantRef } from '../src/identity/index.ts';
import { csrfTokenFor } from '../src/identity/session-tokens.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import {
  adminSession,
  changeSettingsAsApproved,
  inviteAndAccept,
  inviteTenantAdmin,
  linkFromOutbox,
  strongPassword,
  totpCode,
} from './identity-helpers.ts';

// Session lifetime and privilege after sign-in: limits and 2FA enforcement that change while a session
// lives, rotation at a second factor, step-up and enrolment. On a fake clock, so hours pass instantly.
const clock = fakeClock(new Date('2026-03-02T08:00:00Z'));
const at = () => clock.now().getTime();
const HOUR = 3_600_000;
let t: TestApp;

beforeAll(async () => {
  t = await buildTestApp({ clock });
});
afterAll(async () => {
  await t?.close();
});

type Admin = Awaited<ReturnType<typeof adminSession>>;
const api = (slug: string, path: string) => `/api/v1/t/${slug}${path}`;
const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

async function tenantWithAdmin(slug: string): Promise<Admin> {
  await seedTenant(t, slug);
  return adminSession(t, slug, undefined, at);
}

async function signIn(slug: string, email: string) {
  const res = await t.app.inject({
    method: 'POST',
    url: api(slug, '/auth/signin'),
    payload: { email, password: strongPassword },
  });
  expect(res.statusCode).toBe(200);
  return res.json() as { stage: string; token: string };
}

/** A fresh second factor for the admin (a new time step, since a code is accepted once). */
async function stepUp(slug: string, admin: Admin) {
  clock.advance(30_000);
  const res = await t.app.inject({
    method: 'POST',
    url: api(slug, '/auth/second-factor'),
    headers: admin.headers,
    payload: { code: totpCode(admin.secret, at()) },
  });
  expect(res.statusCode, res.body).toBe(200);
  admin.headers = bearer((res.json() as { token: string }).token);
}

async function changeSettings(
  slug: string,
  admin: Admin,
  change: (s: { session: { idleMinutes: number; absoluteHours: number }; mfaRequired: string }) => void,
) {
  const current = (await t.app.inject({ url: api(slug, '/settings') })).json();
  change(current);
  return t.app.inject({
    method: 'PUT',
    url: api(slug, '/settings'),
    headers: admin.headers,
    payload: current,
  });
}

const currentSession = (slug: string, token: string) =>
  t.app.inject({ url: api(slug, '/me/session'), headers: bearer(token) });

describe('absolute session limit', () => {
  it('applies a shortened limit to sessions that already exist (bug: it was fixed at sign-in)', async () => {
    const slug = 'life-absolute';
    const admin = await tenantWithAdmin(slug);
    // A longer idle limit is a weakening (four-eyes): set as an approved change would run.
    await changeSettingsAsApproved(t, slug, (s) => {
      s.session = { idleMinutes: 1440, absoluteHours: 12 };
    });
    await inviteAndAccept(t, slug, admin, 'member@life-absolute.test');
    const member = await signIn(slug, 'member@life-absolute.test');
    expect(member.stage).toBe('active');

    clock.advance(2 * HOUR);
    await stepUp(slug, admin);
    // Cached on this node from here on.
    expect((await currentSession(slug, member.token)).statusCode).toBe(200);

    const shorter = await changeSettings(slug, admin, (s) => {
      s.session.absoluteHours = 1;
    });
    expect(shorter.statusCode, shorter.body).toBe(200);
    // Signed in 2 h ago, the limit is now 1 h: over, on the next request.
    expect((await currentSession(slug, member.token)).statusCode).toBe(401);
    // A fresh sign-in gets the new limit in full, and not more.
    const again = await signIn(slug, 'member@life-absolute.test');
    expect((await currentSession(slug, again.token)).statusCode).toBe(200);
    clock.advance(HOUR - 60_000);
    expect((await currentSession(slug, again.token)).statusCode).toBe(200);
    const mine = await t.app.inject({ url: api(slug, '/me/sessions'), headers: bearer(again.token) });
    expect(mine.json()).toHaveLength(1);
    clock.advance(60_000);
    expect((await currentSession(slug, again.token)).statusCode).toBe(401);
  });
});

describe('rotation at a second factor', () => {
  it('keeps the sign-in time and absolute expiry (bug: each step-up gave a fresh full lifetime)', async () => {
    const slug = 'life-rotate';
    const admin = await tenantWithAdmin(slug);
    const signedInAt = (await currentSession(slug, admin.headers.authorization.slice(7))).json().createdAt;
    await changeSettingsAsApproved(t, slug, (s) => {
      s.session = { idleMinutes: 1440, absoluteHours: 12 };
    });
    clock.advance(11 * HOUR);
    await stepUp(slug, admin);
    const rotated = admin.headers.authorization.slice(7);
    const now = await currentSession(slug, rotated);
    expect(now.statusCode).toBe(200);
    expect(now.json().createdAt).toBe(signedInAt);
    clock.advance(HOUR);
    // 12 h after the password sign-in, whatever happened in between.
    expect((await currentSession(slug, rotated)).statusCode).toBe(401);
  });
});

describe('rotation of an ended session', () => {
  it('issues no token for a session revoked while the second factor was checked (bug: it did)', async () => {
    const slug = 'life-revoked';
    const admin = await tenantWithAdmin(slug);
    const tenant = toTenantRef(await t.app.services.tenancy.requireActive(slug));
    const token = admin.headers.authorization.slice(7);
    // The session as the step-up request read it, before a sign-out elsewhere committed.
    const stale = await t.app.services.identity.sessions.validate(tenant, token);
    expect(stale).not.toBeNull();
    const out = await t.app.inject({
      method: 'POST',
      url: api(slug, '/auth/signout'),
      headers: admin.headers,
    });
    expect(out.statusCode).toBe(200);
    clock.advance(30_000);
    const ctx = {
      actor: { type: 'user' as const, id: stale?.userId ?? '' },
      ip: null,
      userAgent: null,
      requestId: null,
    };
    const verify = t.app.services.identity.mfa.verify(
      tenant,
      stale as NonNullable<typeof stale>,
      totpCode(admin.secret, at()),
      ctx,
    );
    await expect(verify).rejects.toMatchObject({ code: 'unauthenticated', spec: { status: 401 } });
    // Nothing was issued: a new sign-in is this user's only live session.
    await signIn(slug, admin.email);
    const rows = await t.db.withTenant<TenantIdentityTables, { id: string }[]>(tenant.id, (tx) =>
      tx.selectFrom('sessions').select('id').where('revoked_at', 'is', null).execute(),
    );
    expect(rows).toHaveLength(1);
  });
});

describe('2FA enforcement for sessions already signed in', () => {
  // The default enforcement is `staff`: members sign in without a second factor.
  const me = (slug: string, token: string) => t.app.inject({ url: api(slug, '/me'), headers: bearer(token) });

  it('sends a session without a second factor to enrolment once 2FA is required (bug: it stayed in)', async () => {
    const slug = 'life-enforce';
    const admin = await tenantWithAdmin(slug);
    await inviteAndAccept(t, slug, admin, 'member@life-enforce.test');
    const member = await signIn(slug, 'member@life-enforce.test');
    expect(member.stage).toBe('active');
    expect((await me(slug, member.token)).statusCode).toBe(200);

    const all = await changeSettings(slug, admin, (s) => {
      s.mfaRequired = 'all';
    });
    expect(all.statusCode, all.body).toBe(200);
    const refused = await me(slug, member.token);
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({
      code: 'step_up_required',
      detail: 'Enrol a second factor first.',
    });
    // Enrolling is what the session may still do; it then continues with a second factor.
    const start = await t.app.inject({
      method: 'POST',
      url: api(slug, '/me/mfa/totp'),
      headers: bearer(member.token),
    });
    expect(start.statusCode, start.body).toBe(200);
    const confirm = await t.app.inject({
      method: 'POST',
      url: api(slug, '/me/mfa/totp/confirm'),
      headers: bearer(member.token),
      payload: { code: totpCode((start.json() as { secret: string }).secret, at()) },
    });
    expect(confirm.statusCode, confirm.body).toBe(200);
    expect((await me(slug, (confirm.json() as { token: string }).token)).statusCode).toBe(200);
  });

  it('asks for the code of an authenticator enrolled in another session', async () => {
    const slug = 'life-enforce-code';
    const admin = await tenantWithAdmin(slug);
    await inviteAndAccept(t, slug, admin, 'member@life-enforce-code.test');
    const phone = await signIn(slug, 'member@life-enforce-code.test');
    const laptop = await signIn(slug, 'member@life-enforce-code.test');
    expect((await me(slug, laptop.token)).statusCode).toBe(200);
    const start = await t.app.inject({
      method: 'POST',
      url: api(slug, '/me/mfa/totp'),
      headers: bearer(phone.token),
    });
    const { secret } = start.json() as { secret: string };
    const confirm = await t.app.inject({
      method: 'POST',
      url: api(slug, '/me/mfa/totp/confirm'),
      headers: bearer(phone.token),
      payload: { code: totpCode(secret, at()) },
    });
    expect(confirm.statusCode, confirm.body).toBe(200);
    expect((await me(slug, laptop.token)).statusCode).toBe(200);

    await changeSettings(slug, admin, (s) => {
      s.mfaRequired = 'all';
    });
    const refused = await me(slug, laptop.token);
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ detail: 'Enter the code from your authenticator first.' });
    clock.advance(30_000);
    const code = await t.app.inject({
      method: 'POST',
      url: api(slug, '/auth/second-factor'),
      headers: bearer(laptop.token),
      payload: { code: totpCode(secret, at()) },
    });
    expect(code.statusCode, code.body).toBe(200);
    expect((await me(slug, (code.json() as { token: string }).token)).statusCode).toBe(200);
  });

  it('applies 2FA for staff to a member granted a staff role while signed in (bug: it did not)', async () => {
    const slug = 'life-promote';
    const admin = await tenantWithAdmin(slug);
    const staff = await changeSettings(slug, admin, (s) => {
      s.mfaRequired = 'staff';
    });
    expect(staff.statusCode, staff.body).toBe(200);
    const { user } = await inviteAndAccept(t, slug, admin, 'member@life-promote.test');
    const member = await signIn(slug, 'member@life-promote.test');
    expect(member.stage).toBe('active');
    expect((await me(slug, member.token)).statusCode).toBe(200);

    const grant = await t.app.inject({
      method: 'PUT',
      url: api(slug, `/access/users/${user.id}/roles/staff`),
      headers: admin.headers,
    });
    expect(grant.statusCode, grant.body).toBe(200);
    const refused = await me(slug, member.token);
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({
      code: 'step_up_required',
      detail: 'Enrol a second factor first.',
    });

    const revoke = await t.app.inject({
      method: 'DELETE',
      url: api(slug, `/access/users/${user.id}/roles/staff`),
      headers: admin.headers,
    });
    expect(revoke.statusCode, revoke.body).toBe(200);
    expect((await me(slug, member.token)).statusCode).toBe(200);
  });
});

describe('step-up for sensitive changes', () => {
  it('asks a session signed in before the admin enrolled TOTP for the code (bug: it skipped step-up)', async () => {
    const slug = 'life-stepup';
    const first = await tenantWithAdmin(slug);
    const second = await adminSession(t, slug, `second@${slug}.test`, at);
    // Lowering the enforcement to off takes a second administrator's approval.
    const asked = await changeSettings(slug, first, (s) => {
      s.mfaRequired = 'off';
    });
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json() as { approval: { id: string; params: unknown } };
    const approve = await t.app.inject({
      method: 'POST',
      url: api(slug, `/access/approvals/${approval.id}/approve`),
      headers: second.headers,
    });
    expect(approve.statusCode, approve.body).toBe(200);
    const run = await t.app.inject({
      method: 'POST',
      url: api(slug, `/access/approvals/${approval.id}/execute`),
      headers: first.headers,
      payload: { params: approval.params },
    });
    expect(run.statusCode, run.body).toBe(200);
    const email = `third@${slug}.test`;
    // Not the tenant's first administrator: invited as its own admins would (the helper), not by an operator.
    await inviteTenantAdmin(t, slug, email, 'Tam Third');
    const { token } = await linkFromOutbox(t, email);
    const accepted = await t.app.inject({
      method: 'POST',
      url: api(slug, '/invitations/accept'),
      payload: { token, password: strongPassword },
    });
    expect(accepted.statusCode, accepted.body).toBe(200);
    const old = await signIn(slug, email);
    expect(old.stage).toBe('active');
    const asOld = { headers: bearer(old.token), secret: '' } as Admin;
    // No authenticator yet: nothing to step up with, the change goes through.
    const before = await changeSettings(slug, asOld, (s) => {
      s.session.idleMinutes -= 1;
    });
    expect(before.statusCode, before.body).toBe(200);

    const other = await signIn(slug, email);
    const start = await t.app.inject({
      method: 'POST',
      url: api(slug, '/me/mfa/totp'),
      headers: bearer(other.token),
    });
    const { secret } = start.json() as { secret: string };
    const confirm = await t.app.inject({
      method: 'POST',
      url: api(slug, '/me/mfa/totp/confirm'),
      headers: bearer(other.token),
      payload: { code: totpCode(secret, at()) },
    });
    expect(confirm.statusCode, confirm.body).toBe(200);

    const refused = await changeSettings(slug, asOld, (s) => {
      s.session.idleMinutes -= 1;
    });
    expect(refused.statusCode).toBe(403);
    expect(refused.json()).toMatchObject({ code: 'step_up_required' });
    asOld.secret = secret;
    await stepUp(slug, asOld);
    const after = await changeSettings(slug, asOld, (s) => {
      s.session.idleMinutes -= 1;
    });
    expect(after.statusCode, after.body).toBe(200);
  });
});

describe('TOTP enrolment re-authenticates', () => {
  it('asks an older session for the password before binding an authenticator (bug: any session could)', async () => {
    const slug = 'life-enrol';
    const admin = await tenantWithAdmin(slug);
    await inviteAndAccept(t, slug, admin, 'member@life-enrol.test');
    const member = await signIn(slug, 'member@life-enrol.test');
    const start = (payload?: object) =>
      t.app.inject({
        method: 'POST',
        url: api(slug, '/me/mfa/totp'),
        headers: bearer(member.token),
        ...(payload ? { payload } : {}),
      });
    // Fresh from the password sign-in: no need to ask again.
    expect((await start()).statusCode).toBe(200);

    clock.advance(6 * 60_000);
    const asked = await start();
    expect(asked.statusCode).toBe(403);
    expect(asked.json()).toMatchObject({ code: 'reauthentication_required' });
    const wrong = await start({ currentPassword: 'not-the-password' });
    expect(wrong.statusCode).toBe(401);
    expect(wrong.json()).toMatchObject({ code: 'invalid_credentials' });
    const right = await start({ currentPassword: strongPassword });
    expect(right.statusCode, right.body).toBe(200);
  });

  it('counts a wrong password there like a wrong sign-in: five lock the account (bug: it was a free oracle)', async () => {
    const slug = 'life-enrol-lock';
    const admin = await tenantWithAdmin(slug);
    await inviteAndAccept(t, slug, admin, 'member@life-enrol-lock.test');
    const member = await signIn(slug, 'member@life-enrol-lock.test');
    const start = (currentPassword: string) =>
      t.app.inject({
        method: 'POST',
        url: api(slug, '/me/mfa/totp'),
        headers: bearer(member.token),
        payload: { currentPassword },
      });
    clock.advance(6 * 60_000);
    for (let i = 0; i < 5; i++) {
      const wrong = await start(`not-the-password-${i}`);
      expect(wrong.statusCode).toBe(401);
      expect(wrong.json()).toMatchObject({ code: 'invalid_credentials' });
    }
    // Locked now: the right password is refused there and at sign-in, alike.
    expect((await start(strongPassword)).json()).toMatchObject({ code: 'invalid_credentials' });
    const signInAgain = await t.app.inject({
      method: 'POST',
      url: api(slug, '/auth/signin'),
      payload: { email: 'member@life-enrol-lock.test', password: strongPassword },
    });
    expect(signInAgain.statusCode).toBe(401);
  });

  it('shows the password field on the hosted page only once the sign-in is older than 5 minutes', async () => {
    const slug = 'life-enrol-page';
    const admin = await tenantWithAdmin(slug);
    await inviteAndAccept(t, slug, admin, 'member@life-enrol-page.test');
    const origin = new URL(t.config.publicUrl).origin;
    const post = (url: string, fields: Record<string, string>, cookie: string) =>
      t.app.inject({
        method: 'POST',
        url,
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin, cookie },
        payload: new URLSearchParams(fields).toString(),
      });
    const signedIn = await post(
      `/t/${slug}/signin`,
      { email: 'member@life-enrol-page.test', password: strongPassword },
      '',
    );
    const value = signedIn.cookies.find((c) => c.name === 'rampart_session')?.value ?? '';
    const cookie = `rampart_session=${value}`;
    const enrolPage = () => t.app.inject({ url: `/t/${slug}/mfa/enrol`, headers: { cookie } });
    const fresh = await enrolPage();
    expect(fresh.statusCode).toBe(200);
    expect(fresh.body).not.toContain('name="currentPassword"');
    const csrf = /name="_csrf" value="([^"]+)"/.exec(fresh.body)?.[1] ?? '';
    expect((await post(`/t/${slug}/mfa/enrol/start`, { _csrf: csrf }, cookie)).statusCode).toBe(200);

    clock.advance(6 * 60_000);
    const later = await enrolPage();
    expect(later.body).toContain('name="currentPassword"');
    const without = await post(`/t/${slug}/mfa/enrol/start`, { _csrf: csrf }, cookie);
    expect(without.statusCode).toBe(403);
    expect(without.body).toContain('name="currentPassword"');
    const withPassword = await post(
      `/t/${slug}/mfa/enrol/start`,
      { _csrf: csrf, currentPassword: strongPassword },
      cookie,
    );
    expect(withPassword.statusCode).toBe(200);
    expect(withPassword.body).toContain('id="totp-secret"');
  });
});

describe('password maximum age', () => {
  it('holds a session whose password passed the maximum age to the password change, then lets it go on', async () => {
    const slug = 'aged-co';
    const admin = await tenantWithAdmin(slug);
    // The longer idle limit is a weakening (four-eyes): set as an approved change would run.
    await changeSettingsAsApproved(t, slug, (s) => {
      s.passwordPolicy.maxAgeDays = 30;
      s.session.idleMinutes = 1440;
    });
    const email = 'aged@aged-co.test';
    await inviteAndAccept(t, slug, admin, email);

    // An hour before the password turns 30 days old: an ordinary session.
    clock.advance(30 * 24 * HOUR - HOUR);
    const early = await signIn(slug, email);
    expect(early.stage).toBe('active');
    const session = () => t.app.inject({ url: api(slug, '/me/session'), headers: bearer(early.token) });
    expect((await session()).statusCode).toBe(200);

    // Two hours later the same, still live session may do nothing but change the password or sign out.
    clock.advance(2 * HOUR);
    const held = await session();
    expect(held.statusCode).toBe(403);
    expect(held.json()).toMatchObject({ code: 'password_expired' });
    expect(held.json().detail).toContain(`/t/${slug}/account/password`);
    const late = await t.app.inject({
      method: 'POST',
      url: api(slug, '/auth/signin'),
      payload: { email, password: strongPassword },
    });
    expect(late.json()).toMatchObject({ stage: 'password', passwordExpired: true });

    // In a browser: every page leads to the password page, which works.
    const tenant = toTenantRef(await t.app.services.tenancy.requireActive(slug));
    const ctx = {
      actor: { type: 'system' as const, id: 'test' },
      ip: null,
      userAgent: null,
      requestId: null,
    };
    const web = await t.app.services.identity.signIn(tenant, email, strongPassword, 'cookie', ctx);
    expect(web.stage).toBe('password');
    const cookie = { cookie: `rampart_session=${web.token}` };
    const account = await t.app.inject({ url: `/t/${slug}/account`, headers: cookie });
    expect(account.statusCode).toBe(303);
    expect(account.headers.location).toBe(`/t/${slug}/account/password`);
    expect((await t.app.inject({ url: `/t/${slug}/account/password`, headers: cookie })).statusCode).toBe(
      200,
    );
    const changed = await t.app.inject({
      method: 'POST',
      url: api(slug, '/me/password'),
      headers: { ...cookie, 'x-csrf-token': csrfTokenFor(t.app.services.identity.deps, web.sessionId) },
      payload: { currentPassword: strongPassword, newPassword: 'Renewed-Harbour-Signal-42' },
    });
    expect(changed.statusCode).toBe(200);
    // The session that changed it goes on, under the new token its cookie now holds; the password is
    // young again.
    const renewed = changed.cookies.find((c) => c.name === 'rampart_session')?.value;
    expect(renewed).toBeDefined();
    const after = await t.app.inject({
      url: api(slug, '/me/session'),
      headers: { cookie: `rampart_session=${renewed}` },
    });
    expect(after.statusCode).toBe(200);
    expect(after.json().stage).toBe('active');
  });
});
