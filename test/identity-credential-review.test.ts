/** Regressions from the review of identity's credential flows: each block names the defect it pins down. */
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcrypt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { importUsers } from '../src/identity/import-users.ts';
import { HasherBusyError } from '../src/identity/passwords/index.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId, type TenantTx } from '../src/platform/db/index.ts';
import { deriveClass } from '../src/protect/rate-limit/policy.ts';
import { buildTestApp, engineUnderTest, seedTenant, type TestApp } from './helpers.ts';
import {
  adminSession,
  inviteAndAccept,
  linkFromOutbox,
  strongPassword,
  totpCode,
} from './identity-helpers.ts';
import { rowHolder } from './race-helpers.ts';

let t: TestApp;
let admin: Awaited<ReturnType<typeof adminSession>>;
const slug = 'cred-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const dir = mkdtempSync(join(tmpdir(), 'rampart-cred-'));

beforeAll(async () => {
  t = await buildTestApp();
  await seedTenant(t, slug);
  admin = await adminSession(t, slug);
});
afterAll(async () => {
  await t?.close();
});

const tenantRef = async () => ({ id: asTenantId((await t.app.services.tenancy.get(slug)).id), slug });
const post = (url: string, payload: object, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url, payload, headers });
const signIn = (email: string, password: string) => post(api('/auth/signin'), { email, password });

type Tables = TenantIdentityTables & AuditTables;
async function inTenant<R>(fn: (tx: TenantTx<Tables>) => Promise<R>) {
  return t.db.withTenant<Tables, R>((await tenantRef()).id, fn);
}

const userRow = (email: string) =>
  inTenant((tx) =>
    tx
      .selectFrom('users')
      .select(['password_hash', 'password_failures', 'password_locked_until', 'mfa_locked_until'])
      .where('email', '=', email)
      .executeTakeFirstOrThrow(),
  );

const setUser = (email: string, values: Record<string, unknown>) =>
  inTenant((tx) => tx.updateTable('users').set(values).where('email', '=', email).execute());

const lockedEvents = (userId: string) =>
  inTenant((tx) =>
    tx
      .selectFrom('audit_events')
      .select(['details'])
      .where('action', '=', 'identity.user.locked')
      .where('target_id', '=', userId)
      .execute(),
  );

async function importOne(email: string, passwordHash: string) {
  const file = join(dir, `${email}.jsonl`);
  writeFileSync(file, `${JSON.stringify({ email, passwordHash })}\n`);
  const summary = await importUsers(
    t.app.services.identity.deps,
    await tenantRef(),
    systemContext('test'),
    file,
  );
  expect(summary.imported).toBe(1);
}

const sha256Hash = (password: string) => {
  const salt = Buffer.from('0badc0de', 'hex');
  const digest = createHash('sha256')
    .update(Buffer.concat([salt, Buffer.from(password)]))
    .digest('hex');
  return `sha256:${salt.toString('hex')}:${digest}`;
};

describe('identity credential review regressions', () => {
  // Defect: a right password whose hash upgrade met a full hasher queue answered 503 and kept the
  // reserved attempt: at the threshold, a count with no lock that refused every later sign-in for good.
  it('signs in with the right password when the hash upgrade finds the hasher busy, and counts nothing', async () => {
    const email = 'upgrade-busy@cred-co.test';
    await importOne(email, sha256Hash('Legacy-Upgrade-Pass-9'));
    for (let i = 0; i < 4; i++) expect((await signIn(email, `wrong-${i}`)).statusCode).toBe(401);
    const identity = t.app.services.identity;
    const real = identity.deps.hasher;
    identity.deps.hasher = { ...real, hash: () => Promise.reject(new HasherBusyError(3)) };
    try {
      expect((await signIn(email, 'Legacy-Upgrade-Pass-9')).statusCode).toBe(200);
    } finally {
      identity.deps.hasher = real;
    }
    const row = await userRow(email);
    expect(row.password_failures).toBe(0);
    expect(row.password_hash).toMatch(/^sha256:/);
    // The upgrade comes with the next sign-in.
    expect((await signIn(email, 'Legacy-Upgrade-Pass-9')).statusCode).toBe(200);
    expect((await userRow(email)).password_hash).toMatch(/^\$argon2id\$/);
  });

  // Defect: a failure count left at the threshold without a lock (an attempt whose verdict never came)
  // refused the account for good, in either lockout mode, while its admin view showed it unlocked.
  it('turns a count left at the threshold without a lock into the lockout mode’s lock', async () => {
    const email = 'left-over@cred-co.test';
    const { user } = await inviteAndAccept(t, slug, admin, email);
    await setUser(email, { password_failures: 5, password_locked_until: null });
    expect((await signIn(email, strongPassword)).json().code).toBe('invalid_credentials');
    const row = await userRow(email);
    expect(row.password_locked_until?.getTime()).toBeGreaterThan(Date.now());
    expect(await lockedEvents(user.id)).toEqual([{ details: { reason: 'password_failures' } }]);
    const view = await t.app.inject({ url: api(`/users/${user.id}`), headers: admin.headers });
    expect(view.json().locked).toBe(true);
    // The lock ends like any other: here, by moving it into the past.
    await setUser(email, { password_locked_until: new Date(Date.now() - 1000) });
    expect((await signIn(email, strongPassword)).statusCode).toBe(200);
  });

  // Defect: the second factor's lock was written in a transaction of its own after the count: a count at
  // the threshold with no lock refused every code for good.
  it('turns a second-factor count left at the threshold into the lock, with the count', async () => {
    const email = 'mfa-left@cred-co.test';
    const enrolled = await adminSession(t, slug, email);
    await setUser(email, { mfa_failures: 5, mfa_locked_until: null });
    const first = (await signIn(email, strongPassword)).json() as { stage: string; token: string };
    expect(first.stage).toBe('mfa');
    const code = await post(
      api('/auth/second-factor'),
      { code: totpCode(enrolled.secret) },
      { authorization: `Bearer ${first.token}` },
    );
    expect(code.json().code).toBe('invalid_code');
    expect((await userRow(email)).mfa_locked_until?.getTime()).toBeGreaterThan(Date.now());
  });

  // Defect: sign-in normalised the password (NFKC) before the hasher, which tries the form as typed for
  // imported hashes: a legacy hash of a password NFKC changes (ﬁ, µ, ², full-width) never verified.
  it('verifies imported hashes of passwords that NFKC changes, as typed', async () => {
    const typed = '\ufb01sh-Legacy-\u00b5-Pass\u00b2';
    expect(typed.normalize('NFKC')).not.toBe(typed);
    const bcryptEmail = 'nfkc-bcrypt@cred-co.test';
    const shaEmail = 'nfkc-sha@cred-co.test';
    await importOne(bcryptEmail, bcrypt.hashSync(typed, 4));
    await importOne(shaEmail, sha256Hash(typed));
    for (const email of [bcryptEmail, shaEmail]) {
      expect((await signIn(email, typed)).statusCode, email).toBe(200);
      // Upgraded to argon2id of the NFKC form: both forms sign in from now on, like every own hash.
      expect((await userRow(email)).password_hash).toMatch(/^\$argon2id\$/);
      expect((await signIn(email, typed)).statusCode).toBe(200);
      expect((await signIn(email, typed.normalize('NFKC'))).statusCode).toBe(200);
    }
  });

  // Defect: every forgot-password request mailed a new link and voided the older ones, with no pause:
  // an inbox flood, and the owner's link voided between opening and submitting it.
  it('mails one reset link per cooldown and keeps it valid; after the cooldown a new one replaces it', async () => {
    const email = 'reset-cooldown@cred-co.test';
    await inviteAndAccept(t, slug, admin, email);
    const mailsTo = async () =>
      (await t.app.services.mailer.outbox(200)).filter((m) => m.to === email).length;
    const before = await mailsTo();
    for (let i = 0; i < 3; i++) expect((await post(api('/password/forgot'), { email })).statusCode).toBe(202);
    expect((await mailsTo()) - before).toBe(1);
    const first = (await linkFromOutbox(t, email)).token;

    await setUser(email, { reset_mail_at: new Date(Date.now() - 6 * 60_000) });
    expect((await post(api('/password/forgot'), { email })).statusCode).toBe(202);
    expect((await mailsTo()) - before).toBe(2);
    const second = (await linkFromOutbox(t, email)).token;
    expect(second).not.toBe(first);
    expect(
      (await post(api('/password/reset'), { token: first, password: 'Brand-New-Secret-77' })).json().code,
    ).toBe('token_invalid');
    expect(
      (await post(api('/password/reset'), { token: second, password: 'Brand-New-Secret-77' })).statusCode,
    ).toBe(200);
  });

  // Defect: the per-address failure budget was checked before the attempt and charged after its verdict:
  // every attempt of a parallel burst saw the full budget (50), so a burst of 60 all got verified.
  it('charges the address before verifying: a parallel burst gets no more than the budget', async () => {
    const ip = `198.18.${Math.floor(Math.random() * 250)}.${1 + Math.floor(Math.random() * 250)}`;
    const budget = t.app.services.identity.deps.failedSignIns;
    if (!budget) throw new Error('no failure budget');
    const from = (email: string, password: string) =>
      t.app.inject({
        method: 'POST',
        url: api('/auth/signin'),
        payload: { email, password },
        remoteAddress: ip,
      });
    // A right password costs the address nothing.
    const member = 'budget@cred-co.test';
    await inviteAndAccept(t, slug, admin, member);
    expect((await from(member, strongPassword)).statusCode).toBe(200);
    expect((await budget.get(ip))?.remainingPoints ?? 50).toBe(50);
    const answers = await Promise.all(
      Array.from({ length: 60 }, (_, i) => from(`nobody-${i}@cred-co.test`, 'not-the-password')),
    );
    const codes = answers.map((a) => a.json().code as string);
    expect(codes.filter((c) => c === 'invalid_credentials')).toHaveLength(50);
    expect(codes.filter((c) => c === 'throttled')).toHaveLength(10);
    expect(answers.find((a) => a.json().code === 'throttled')?.headers['retry-after']).toBeDefined();
  });

  // Defect: a lapsed invitation could not be renewed (inviting the address again is user_exists, and
  // forgot-password mails only active users); enabling a disabled invited user gave back the dead link.
  it('mails a new invitation link when a disabled invited user is enabled again (renewing a lapsed one)', async () => {
    const email = 'lapsed@cred-co.test';
    const invited = await post(api('/users'), { email, role: 'member' }, admin.headers);
    expect(invited.statusCode).toBe(201);
    const id = invited.json().id as string;
    const old = (await linkFromOutbox(t, email)).token;
    await inTenant((tx) =>
      tx
        .updateTable('user_tokens')
        .set({ expires_at: new Date(Date.now() - 1000) })
        .where('user_id', '=', id)
        .execute(),
    );
    const accept = (token: string) => post(api('/invitations/accept'), { token, password: strongPassword });
    expect((await accept(old)).json().code).toBe('token_invalid');
    expect((await post(api(`/users/${id}/disable`), {}, admin.headers)).statusCode).toBe(200);
    const enabled = await post(api(`/users/${id}/enable`), {}, admin.headers);
    expect(enabled.json().status).toBe('invited');
    const renewed = (await linkFromOutbox(t, email)).token;
    expect(renewed).not.toBe(old);
    expect((await accept(renewed)).statusCode).toBe(200);
    expect((await signIn(email, strongPassword)).statusCode).toBe(200);
  });

  // Defect: starting an enrolment checks the current password (a password oracle) but was limited like any
  // API call or page, not like a sign-in.
  it('limits starting an enrolment like a sign-in', () => {
    expect(deriveClass('POST', `/api/v1/t/${slug}/me/mfa/totp`)).toBe('signin');
    expect(deriveClass('POST', `/t/${slug}/mfa/enrol/start`)).toBe('signin');
    // Its confirmation takes a code: limited like a sign-in too (test/routes.test.ts checks every such form).
    expect(deriveClass('POST', `/api/v1/t/${slug}/me/mfa/totp/confirm`)).toBe('signin');
  });

  // Defect: starting an enrolment read the row unlocked and then deleted it whatever its state, so a
  // confirmation committing in between (another tab) lost its authenticator to a new pending one.
  it.runIf(engineUnderTest === 'postgres')(
    'refuses to start an enrolment over one confirmed while it ran, and keeps the authenticator',
    async () => {
      const email = 'enrol-race@cred-co.test';
      const { user } = await inviteAndAccept(t, slug, admin, email);
      const session = (await signIn(email, strongPassword)).json() as { token: string };
      const auth = { authorization: `Bearer ${session.token}` };
      expect((await post(api('/me/mfa/totp'), {}, auth)).statusCode).toBe(200);
      const lock = await rowHolder(t);
      try {
        // The confirmation in another tab: it holds the pending row and commits it confirmed.
        await lock.hold('UPDATE user_totp SET confirmed_at = now() WHERE user_id = $1', [user.id]);
        const restart = post(api('/me/mfa/totp'), {}, auth);
        await lock.waiting(1);
        await lock.release();
        const answer = await restart;
        expect(answer.statusCode).toBe(409);
        expect(answer.json().code).toBe('mfa_already_enrolled');
      } finally {
        await lock.close();
      }
      const totp = await inTenant((tx) =>
        tx.selectFrom('user_totp').select('confirmed_at').where('user_id', '=', user.id).execute(),
      );
      expect(totp).toHaveLength(1);
      expect(totp[0]?.confirmed_at).not.toBeNull();
    },
  );
});
