/**
 * The hosted page for one's own authenticator (it had none: removing or replacing an authenticator, or
 * new recovery codes, took the JSON API). Both forms take a second factor in the same submission
 * (step-up); removing it ends every session and is audited like the API's removal.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asTenantId } from '../src/platform/db/index.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';
import { adminSession, strongPassword } from './identity-helpers.ts';

let t: TestApp;
const slug = 'two-step-co';
const origin = 'http://127.0.0.1:3000';
let admin: Awaited<ReturnType<typeof adminSession>>;
beforeAll(async () => {
  t = await buildTestApp({ env: { PUBLIC_URL: origin } });
  await seedTenant(t, slug);
  admin = await adminSession(t, slug);
});
afterAll(async () => {
  await t?.close();
});

const page = (path: string) => `/t/${slug}${path}`;
const postForm = (url: string, fields: Record<string, string>, cookie: string) =>
  t.app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin, cookie },
    payload: new URLSearchParams(fields).toString(),
  });
const get = (url: string, cookie: string) => t.app.inject({ url, headers: { cookie } });
const sessionOf = (res: { cookies: { name: string; value: string }[] }, before: string) => {
  const set = res.cookies.find((c) => c.name === 'rampart_session')?.value;
  return set ? `rampart_session=${set}` : before;
};
const csrfIn = (body: string) => /name="_csrf" value="([^"]+)"/.exec(body)?.[1] ?? '';
const codesIn = (body: string) =>
  [...body.matchAll(/<li><code>([^<]+)<\/code><\/li>/g)].map((m) => m[1] ?? '');

describe('the two-step sign-in page', () => {
  it('makes new recovery codes and removes the authenticator, each with a code', async () => {
    const [first, second] = admin.recoveryCodes;
    const signIn = await postForm(page('/signin'), { email: admin.email, password: strongPassword }, '');
    let cookie = sessionOf(signIn, '');
    const codePage = await get(page('/signin/code'), cookie);
    const signedIn = await postForm(
      page('/signin/code'),
      { _csrf: csrfIn(codePage.body), code: first ?? '' },
      cookie,
    );
    expect(signedIn.headers.location).toBe(page('/account'));
    cookie = sessionOf(signedIn, cookie);

    const account = await get(page('/account'), cookie);
    expect(account.body).toContain(`href="${page('/account/two-step')}"`);
    const twoStep = await get(page('/account/two-step'), cookie);
    expect(twoStep.statusCode).toBe(200);
    expect(twoStep.body).toContain('with 9 recovery codes left');

    // A wrong code: refused on the page, nothing changed.
    const wrong = await postForm(
      page('/account/two-step/recovery-codes'),
      { _csrf: csrfIn(twoStep.body), code: '000000' },
      cookie,
    );
    expect(wrong.statusCode).toBe(401);
    expect(wrong.body).toContain('with 9 recovery codes left');

    const renewed = await postForm(
      page('/account/two-step/recovery-codes'),
      { _csrf: csrfIn(wrong.body), code: second ?? '' },
      cookie,
    );
    expect(renewed.statusCode, renewed.body).toBe(200);
    expect(renewed.headers['cache-control']).toBe('no-store');
    const fresh = codesIn(renewed.body);
    expect(fresh).toHaveLength(10);
    expect(fresh).not.toContain(admin.recoveryCodes[2]);
    // The step-up rotated the session: the old cookie is dead, the new one carries on.
    expect((await get(page('/account'), cookie)).statusCode).toBe(303);
    cookie = sessionOf(renewed, cookie);

    // An old recovery code no longer counts as the second factor.
    const stale = await postForm(
      page('/account/two-step/remove'),
      { _csrf: csrfIn(renewed.body), code: admin.recoveryCodes[2] ?? '' },
      cookie,
    );
    expect(stale.statusCode).toBe(401);
    const removed = await postForm(
      page('/account/two-step/remove'),
      { _csrf: csrfIn(stale.body), code: fresh[0] ?? '' },
      cookie,
    );
    expect(removed.statusCode, removed.body).toBe(303);
    expect(removed.headers.location).toBe(page('/signin?notice=authenticator'));
    cookie = sessionOf(removed, cookie);
    expect((await get(page('/account'), cookie)).statusCode).toBe(303);

    const tenantId = (await t.app.services.tenancy.get(slug)).id;
    const rows = await t.db.withTenant(asTenantId(tenantId), (tx) =>
      sql<{ action: string }>`SELECT action FROM audit_events
        WHERE action IN ('identity.mfa.recovery_regenerated', 'identity.mfa.removed') ORDER BY chain_seq`.execute(
        tx,
      ),
    );
    expect(rows.rows.map((r) => r.action)).toEqual([
      'identity.mfa.recovery_regenerated',
      'identity.mfa.removed',
    ]);
    // The next sign-in leads to enrolment (tenant admins must use a second factor).
    const again = await postForm(page('/signin'), { email: admin.email, password: strongPassword }, '');
    expect(again.headers.location).toBe(page('/mfa/enrol'));
  });
});
