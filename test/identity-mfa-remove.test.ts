/**
 * A user removes their own authenticator, to replace it (noticed in review: only an administrator could
 * remove one, so a user with a new phone depended on them). It takes a recent second factor and, once
 * the sign-in is older than 5 minutes, the password; it removes the authenticator and the recovery codes,
 * ends every session of the user, is audited and mailed; the next sign-in leads to enrolment where the
 * tenant requires a second factor. PGlite and PostgreSQL.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { member, type Person, tenantAdmin, withSecondFactor } from './access-helpers.ts';
import { buildTestApp, engineUnderTest, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { changeSettingsAsApproved, factorRows, strongPassword, totpCode } from './identity-helpers.ts';

const slug = 'mfaremove-co';
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

const post = (headers: Record<string, string>, path: string, payload?: object) =>
  t.app.inject({ method: 'POST', url: api(path), headers, ...(payload ? { payload } : {}) });
const remove = (headers: Record<string, string>, currentPassword?: string) =>
  post(headers, '/me/mfa/totp/remove', currentPassword === undefined ? {} : { currentPassword });
const me = (headers: Record<string, string>) => t.app.inject({ url: api('/me'), headers });
const events = (action: string) =>
  t.db.withTenant<AuditTables, { outcome: string; target_id: string | null; details: unknown }[]>(
    asTenantId(tenantId),
    (tx) =>
      tx
        .selectFrom('audit_events')
        .select(['outcome', 'target_id', 'details'])
        .where('action', '=', action)
        .orderBy('chain_seq')
        .execute(),
  );
/** A second factor now: the session's token after step-up. */
async function stepUp(person: { headers: Record<string, string>; secret: string }) {
  clock.advance(30_000);
  const res = await post(person.headers, '/auth/second-factor', {
    code: totpCode(person.secret, clock.now().getTime()),
  });
  expect(res.statusCode, res.body).toBe(200);
  return { authorization: `Bearer ${res.json().token}` };
}

describe(`a user removes their own authenticator (${engineUnderTest})`, () => {
  it('a user without an authenticator has nothing to remove (and no second factor to step up with)', async () => {
    const kim = await member(t, slug, admin, `kim@${slug}.test`);
    const before = (await events('identity.mfa.removed')).length;
    const res = await remove(kim.headers, strongPassword);
    expect(res.statusCode, res.body).toBe(403);
    expect(res.json().code).toBe('step_up_required');
    expect(await events('identity.mfa.removed')).toHaveLength(before);
  });

  it('needs a recent second factor and the password; removes factor and codes, ends every session; audited and mailed', async () => {
    const pat = await withSecondFactor(t, slug, await member(t, slug, admin, `pat@${slug}.test`), clock);
    expect(await factorRows(t, pat.userId)).toEqual({ totp: 1, recoveryCodes: 10 });
    clock.advance(6 * 60_000);

    // The session alone, its second factor older than 5 minutes: refused, nothing changed.
    const stale = await remove(pat.headers, strongPassword);
    expect(stale.statusCode, stale.body).toBe(403);
    expect(stale.json().code).toBe('step_up_required');

    const headers = await stepUp(pat);
    // Signed in more than 5 minutes ago: the password too.
    const bare = await remove(headers);
    expect(bare.statusCode, bare.body).toBe(403);
    expect(bare.json().code).toBe('reauthentication_required');
    const wrong = await remove(headers, 'Not-The-Password-99');
    expect(wrong.statusCode, wrong.body).toBe(401);
    expect(wrong.json().code).toBe('invalid_credentials');
    expect(await factorRows(t, pat.userId)).toEqual({ totp: 1, recoveryCodes: 10 });
    expect(await events('identity.mfa.removed')).toEqual([
      { outcome: 'failure', target_id: pat.userId, details: { reason: 'wrong_current' } },
    ]);

    const done = await remove(headers, strongPassword);
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json()).toEqual({ sessionsEnded: 1 });
    expect(await factorRows(t, pat.userId)).toEqual({ totp: 0, recoveryCodes: 0 });
    expect((await me(headers)).statusCode).toBe(401);
    expect((await events('identity.mfa.removed')).at(-1)).toEqual({
      outcome: 'success',
      target_id: pat.userId,
      details: { sessionsEnded: 1, recoveryRemoved: 10 },
    });
    const notices = (await t.app.services.mailer.outbox(200)).filter(
      (m) => m.to === pat.email && /authenticator was removed/.test(m.subject),
    );
    expect(notices).toHaveLength(1);
    expect(notices[0]?.text).not.toMatch(/https?:\/\//);

    // Where the tenant requires a second factor, the next sign-in leads to enrolling a new one.
    await changeSettingsAsApproved(t, slug, (s) => {
      s.mfaRequired = 'all';
    });
    const again = await t.app.inject({
      method: 'POST',
      url: api('/auth/signin'),
      payload: { email: pat.email, password: strongPassword },
    });
    expect(again.statusCode, again.body).toBe(200);
    expect(again.json().stage).toBe('enrol');
  });
});
