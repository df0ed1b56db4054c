/**
 * Regressions from the identity security review (self sign-up):
 * - a self-signed-up account could sign in before confirming its address; now the right password gets no
 *   session but a new link (at most one per 5 minutes), answered exactly like a wrong password (a later
 *   review: sign-up chooses the password, so a distinct answer told which addresses had an account);
 * - sign-up for a registered address mailed nothing while a new address got a mail; now the owner gets
 *   a notice, so both paths mail once and answer alike.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { importUsers } from '../src/identity/import-users.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import {
  adminSession,
  changeSettingsAsApproved,
  inviteAndAccept,
  strongPassword,
} from './identity-helpers.ts';

let t: TestApp;
let admin: Awaited<ReturnType<typeof adminSession>>;
const clock = fakeClock(new Date());
const slug = 'verify-co';
const origin = 'http://127.0.0.1:3000';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const page = (path: string) => `/t/${slug}${path}`;

beforeAll(async () => {
  t = await buildTestApp({ env: { PUBLIC_URL: origin }, clock });
  await seedTenant(t, slug);
  admin = await adminSession(t, slug, undefined, () => clock.now().getTime());
  await changeSettingsAsApproved(t, slug, (s) => {
    s.selfSignup = true;
  });
});
afterAll(async () => {
  await t?.close();
});

const tenantRef = async () => ({ id: asTenantId((await t.app.services.tenancy.get(slug)).id), slug });
const post = (url: string, payload: object) => t.app.inject({ method: 'POST', url, payload });
const signIn = (email: string, password: string) => post(api('/auth/signin'), { email, password });
const signUp = (email: string, password = strongPassword) =>
  post(api('/signup'), { email, displayName: 'Walk In', password });
const postForm = (url: string, fields: Record<string, string>) =>
  t.app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
    payload: new URLSearchParams(fields).toString(),
  });
/** Mail to one address, oldest first. */
const mailsTo = async (to: string) =>
  (await t.app.services.mailer.outbox(500)).filter((m) => m.to === to).reverse();
const tokenOf = (text: string) =>
  new URL(/https?:\/\/\S+/.exec(text)?.[0] ?? 'http://x').searchParams.get('token');
/** What a client sees of a problem, without what differs per request. */
const problem = (res: { statusCode: number; json(): Record<string, unknown> }) => {
  const { requestId: _r, instance: _i, ...rest } = res.json();
  return { status: res.statusCode, ...rest };
};

async function signInEvents(userEmail: string) {
  const tenant = await tenantRef();
  const rows = await t.db.withTenant<
    AuditTables & TenantIdentityTables,
    { outcome: string; details: unknown }[]
  >(tenant.id, (tx) =>
    tx
      .selectFrom('audit_events')
      .select(['outcome', 'details'])
      .where('action', '=', 'identity.signin.password')
      .orderBy(sql`chain_seq::bigint`)
      .execute(),
  );
  return rows
    .map((r) => r.details as { email: string; reason?: string; verificationLinkSent?: boolean })
    .filter((d) => d.email === userEmail);
}

async function sessionCount(userEmail: string) {
  const tenant = await tenantRef();
  return t.db.withTenant<TenantIdentityTables, number>(tenant.id, async (tx) => {
    const row = await tx
      .selectFrom('sessions as s')
      .innerJoin('users as u', 'u.id', 's.user_id')
      .select((eb) => eb.fn.countAll<number>().as('n'))
      .where('u.email', '=', userEmail)
      .executeTakeFirstOrThrow();
    return Number(row.n);
  });
}

describe('self sign-up must confirm the address before the first session', () => {
  const email = 'walk-in@verify-co.test';

  it('answers the right password like a wrong one, with a new link; a confirmed address signs in', async () => {
    expect((await signUp(email)).statusCode).toBe(202);
    expect(await mailsTo(email)).toHaveLength(1);

    // A wrong password answers exactly as for any account, and mails nothing.
    const wrong = await signIn(email, 'Wrong-Password-123');
    const unknown = await signIn('nobody@verify-co.test', 'Wrong-Password-123');
    expect(problem(wrong)).toEqual(problem(unknown));
    expect(wrong.json().code).toBe('invalid_credentials');
    expect(await mailsTo(email)).toHaveLength(1);

    // Bearer: the right password gets the same answer (whose message, sign-up being open, says to
    // confirm the address), and a new link goes out.
    const refused = await signIn(email, strongPassword);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(problem(refused)).toEqual(problem(wrong));
    expect(refused.json().detail).toContain('confirm your email address first');
    expect(refused.json()).not.toHaveProperty('token');
    const afterBearer = await mailsTo(email);
    expect(afterBearer).toHaveLength(2);
    expect(afterBearer[1]?.subject).toMatch(/^Confirm your email address/);
    expect(tokenOf(afterBearer[1]?.text ?? '')).not.toBe(tokenOf(afterBearer[0]?.text ?? ''));

    // Cookie (hosted page): the same refusal, shown on the page; no cookie, and no second link within
    // five minutes.
    const form = await postForm(page('/signin'), { email, password: strongPassword });
    const wrongForm = await postForm(page('/signin'), { email, password: 'Wrong-Password-123' });
    expect(form.statusCode).toBe(401);
    expect(form.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(form.body).toContain('confirm your email address first');
    expect(form.body).toEqual(wrongForm.body);
    expect(form.cookies.find((c) => c.name === 'rampart_session')).toBeUndefined();
    expect(await mailsTo(email)).toHaveLength(2);

    clock.advance(6 * 60_000);
    expect((await signIn(email, strongPassword)).statusCode).toBe(401);
    expect(await mailsTo(email)).toHaveLength(3);
    expect(await sessionCount(email)).toBe(0);

    expect((await signInEvents(email)).map((d) => [d.reason, d.verificationLinkSent])).toEqual([
      ['wrong_password', undefined],
      ['email_not_verified', true],
      ['email_not_verified', false],
      ['wrong_password', undefined],
      ['email_not_verified', true],
    ]);

    // Earlier links stay valid until used: the first one confirms the address and uses up the others.
    const links = (await mailsTo(email)).map((m) => tokenOf(m.text) ?? '');
    expect((await post(api('/email/verify'), { token: links[0] ?? '' })).statusCode).toBe(200);
    expect((await post(api('/email/verify'), { token: links[2] ?? '' })).json().code).toBe('token_invalid');

    const bearer = await signIn(email, strongPassword);
    expect(bearer.statusCode).toBe(200);
    expect(bearer.json().stage).toBe('active');
    const cookie = await postForm(page('/signin'), { email, password: strongPassword });
    expect(cookie.statusCode).toBe(303);
    expect(cookie.cookies.find((c) => c.name === 'rampart_session')).toBeDefined();
  });

  it('counts wrong passwords on an unconfirmed account towards the lockout like any other', async () => {
    const locky = 'locky@verify-co.test';
    expect((await signUp(locky)).statusCode).toBe(202);
    for (let i = 0; i < 5; i += 1) {
      const res = await signIn(locky, `Wrong-Password-${i}`);
      expect(problem(res)).toEqual(problem(await signIn('nobody@verify-co.test', 'x')));
    }
    // Locked: the right password now gets the wrong-password answer, not the confirmation refusal.
    const locked = await signIn(locky, strongPassword);
    expect(locked.statusCode).toBe(401);
    expect(locked.json().code).toBe('invalid_credentials');
    expect(await mailsTo(locky)).toHaveLength(1);
    expect((await signInEvents(locky)).map((d) => d.reason)).toEqual([
      ...Array(5).fill('wrong_password'),
      'locked',
    ]);
  });

  it('confirms the address by a password reset, whose link reached it', async () => {
    const forgetful = 'forgetful@verify-co.test';
    await signUp(forgetful);
    expect((await post(api('/password/forgot'), { email: forgetful })).statusCode).toBe(202);
    const reset = (await mailsTo(forgetful)).find((m) => m.subject.startsWith('Reset your password'));
    const newPassword = 'Another-Horse-Battery-77';
    const done = await post(api('/password/reset'), {
      token: tokenOf(reset?.text ?? ''),
      password: newPassword,
    });
    expect(done.statusCode).toBe(200);
    expect((await signIn(forgetful, newPassword)).statusCode).toBe(200);
  });

  it('leaves invited and imported users as they were: no confirmation step', async () => {
    const invited = 'invited@verify-co.test';
    const { accepted } = await inviteAndAccept(t, slug, admin, invited);
    expect(accepted.statusCode).toBe(200);
    expect((await signIn(invited, strongPassword)).statusCode).toBe(200);

    const imported = 'imported@verify-co.test';
    const hash = await t.app.services.identity.deps.hasher.hash(strongPassword);
    const file = join(mkdtempSync(join(tmpdir(), 'rampart-import-')), 'users.jsonl');
    writeFileSync(
      file,
      `${JSON.stringify({ email: imported, displayName: 'Im Ported', passwordHash: hash })}\n`,
    );
    const summary = await importUsers(
      t.app.services.identity.deps,
      await tenantRef(),
      systemContext('test'),
      file,
    );
    expect(summary.imported).toBe(1);
    const res = await signIn(imported, strongPassword);
    expect(res.statusCode).toBe(200);
    // Import keeps the address unconfirmed, as before.
    const list = await t.app.inject({ url: api('/users?limit=100'), headers: admin.headers });
    expect(list.json().items.find((u: { email: string }) => u.email === imported)?.emailVerified).toBe(false);
  });
});

describe('sign-up with a registered address', () => {
  it('answers like a new address, and both mail the address once: the owner gets a notice', async () => {
    const owner = 'invited@verify-co.test';
    const fresh = 'fresh@verify-co.test';
    const ownerBefore = (await mailsTo(owner)).length;

    const known = await signUp(owner, 'Attacker-Chosen-Pass-9');
    const unknown = await signUp(fresh, 'Attacker-Chosen-Pass-9');
    expect(known.statusCode).toBe(202);
    expect(known.statusCode).toBe(unknown.statusCode);
    expect(known.body).toBe(unknown.body);
    expect(known.headers['content-type']).toBe(unknown.headers['content-type']);

    const toOwner = (await mailsTo(owner)).slice(ownerBefore);
    expect(toOwner).toHaveLength(1);
    expect(toOwner[0]?.subject).toBe(`Someone tried to sign up with your address (${slug})`);
    expect(toOwner[0]?.text).toContain(`${origin}/t/${slug}/signin`);
    expect(toOwner[0]?.text).toContain(`${origin}/t/${slug}/forgot`);
    expect(toOwner[0]?.text).not.toContain('token=');
    expect(await mailsTo(fresh)).toHaveLength(1);

    // Nothing changed for the owner: their password still works, the attacker's does not.
    expect((await signIn(owner, strongPassword)).statusCode).toBe(200);
    expect((await signIn(owner, 'Attacker-Chosen-Pass-9')).statusCode).toBe(401);

    // The audit trail is as before: a failed sign-up with reason "exists".
    const tenant = await tenantRef();
    const audited = await t.db.withTenant<AuditTables & TenantIdentityTables, { details: unknown }[]>(
      tenant.id,
      (tx) =>
        tx
          .selectFrom('audit_events')
          .select('details')
          .where('action', '=', 'identity.user.signup')
          .where('outcome', '=', 'failure')
          .execute(),
    );
    expect(audited.map((r) => r.details)).toContainEqual({ email: owner, reason: 'exists' });

    // At most one notice per five minutes: sign-up cannot flood a known address.
    const again = await signUp(owner, 'Attacker-Chosen-Pass-9');
    expect(again.body).toBe(unknown.body);
    expect((await mailsTo(owner)).slice(ownerBefore)).toHaveLength(1);
  });
});
