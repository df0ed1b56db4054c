import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_CSP } from '../src/identity/pages/index.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';
import {
  adminSession,
  changeSettingsAsApproved,
  linkFromOutbox,
  strongPassword,
} from './identity-helpers.ts';

// The hosted pages over app.inject(): headers, escaping, login-CSRF and CSRF refusals, redirects.
// test/browser/ drives the same pages in headless Chromium.
let t: TestApp;
const slug = 'pages-co';
const member = 'member@pages-co.test';
const origin = 'http://127.0.0.1:3000';
beforeAll(async () => {
  t = await buildTestApp({ env: { PUBLIC_URL: origin } });
  await seedTenant(t, slug);
  const admin = await adminSession(t, slug);
  await t.app.inject({
    method: 'POST',
    url: `/api/v1/t/${slug}/users`,
    headers: admin.headers,
    payload: { email: member, role: 'member', displayName: 'Mem Ber' },
  });
});
afterAll(async () => {
  await t?.close();
});

const page = (path: string) => `/t/${slug}${path}`;
const postForm = (url: string, fields: Record<string, string>, headers: Record<string, string> = {}) =>
  t.app.inject({
    method: 'POST',
    url,
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin, ...headers },
    payload: new URLSearchParams(fields).toString(),
  });
const sessionCookie = (res: { cookies: { name: string; value: string }[] }) =>
  res.cookies.find((c) => c.name === 'rampart_session')?.value ?? '';

describe('hosted pages', () => {
  it('serves pages with the CSP and security headers, and the stylesheet with a long cache life', async () => {
    const res = await t.app.inject({ url: page('/signin') });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
    expect(res.headers['content-security-policy']).toBe(PAGE_CSP);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body).not.toMatch(/<script|style=|<style/i);
    const href = /<link rel="stylesheet" href="([^"]+)">/.exec(res.body)?.[1] ?? '';
    const css = await t.app.inject({ url: href });
    expect(css.statusCode).toBe(200);
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8');
    expect(css.headers['cache-control']).toBe('public, max-age=31536000, immutable');
  });

  it('escapes what the user typed when the form comes back with an error', async () => {
    const res = await postForm(page('/signin'), { email: '"><script>alert(1)</script>', password: 'x' });
    expect(res.statusCode).toBe(401);
    expect(res.body).toContain('value="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"');
    expect(res.body).not.toContain('<script>');
    expect(res.body).toContain('The email or password is not correct.');
  });

  it('refuses forms posted from another site (login CSRF) and non-form bodies, changing nothing', async () => {
    const before = (await t.app.services.mailer.outbox(500)).length;
    const cross = await postForm(page('/forgot'), { email: member }, { origin: 'https://evil.example' });
    expect(cross.statusCode).toBe(403);
    expect(cross.headers['content-type']).toBe('text/html; charset=utf-8');
    const nullOrigin = await postForm(page('/forgot'), { email: member }, { origin: 'null' });
    expect(nullOrigin.statusCode).toBe(403);
    const json = await t.app.inject({
      method: 'POST',
      url: page('/forgot'),
      headers: { origin },
      payload: { email: member },
    });
    expect(json.statusCode).toBe(415);
    expect((await t.app.services.mailer.outbox(500)).length).toBe(before);
  });

  // Regression: a NUL byte typed into a form reached PostgreSQL (which refuses it in text) and gave a 500.
  it('gives the sign-in and forgot forms back with an error when the email holds a NUL byte', async () => {
    const forms: [string, Record<string, string>][] = [
      ['/signin', { email: `${member}\u0000`, password: 'x' }],
      ['/forgot', { email: `${member}\u0000` }],
    ];
    for (const [path, fields] of forms) {
      const res = await postForm(page(path), fields);
      expect(res.statusCode, path).toBe(400);
      expect(res.headers['content-type']).toBe('text/html; charset=utf-8');
      expect(res.body).toContain('control characters');
      expect(res.body).toContain(`action="${page(path)}"`);
    }
    const outbox = await t.app.services.mailer.outbox(50);
    expect(outbox.filter((m) => m.subject.startsWith('Reset your password'))).toEqual([]);
  });

  it('sends visitors without a session to sign-in, and unknown tenants get an HTML 404', async () => {
    const account = await t.app.inject({ url: page('/account') });
    expect(account.statusCode).toBe(303);
    expect(account.headers.location).toBe(page('/signin'));
    const unknown = await t.app.inject({ url: '/t/no-such-co/signin' });
    expect(unknown.statusCode).toBe(404);
    expect(unknown.body).toContain('<h1>No such tenant</h1>');
  });

  it('names every broken password rule, then accepts the invitation and signs in with a scoped cookie', async () => {
    const { token } = await linkFromOutbox(t, member);
    const weak = await postForm(page('/invite'), { token, newPassword: 'abc', confirmPassword: 'abc' });
    expect(weak.statusCode).toBe(422);
    expect(weak.body).toMatch(/<li>Use at least \d+ characters\.<\/li>/);
    const ok = await postForm(page('/invite'), {
      token,
      newPassword: strongPassword,
      confirmPassword: strongPassword,
    });
    expect(ok.statusCode).toBe(303);
    expect(ok.headers.location).toBe(page('/signin?notice=invited'));
    const signIn = await postForm(page('/signin'), { email: member, password: strongPassword });
    expect(signIn.statusCode).toBe(303);
    expect(signIn.headers.location).toBe(page('/account'));
    const cookie = signIn.cookies.find((c) => c.name === 'rampart_session');
    expect(cookie).toMatchObject({ httpOnly: true, sameSite: 'Lax', path: `/t/${slug}` });
    expect(cookie?.secure).toBeUndefined();
  });

  it('refuses a cookie-authenticated form without the right CSRF token', async () => {
    const signIn = await postForm(page('/signin'), { email: member, password: strongPassword });
    const cookies = { cookie: `rampart_session=${sessionCookie(signIn)}` };
    const forged = await postForm(page('/signout'), { _csrf: 'forged-token' }, cookies);
    expect(forged.statusCode).toBe(403);
    expect(forged.body).toContain('Reload the page and submit the form again.');
    const account = await t.app.inject({ url: page('/account'), headers: cookies });
    expect(account.statusCode).toBe(200);
    const csrf = /name="_csrf" value="([^"]+)"/.exec(account.body)?.[1] ?? '';
    const out = await postForm(page('/signout'), { _csrf: csrf }, cookies);
    expect(out.statusCode).toBe(303);
    expect((await t.app.inject({ url: page('/account'), headers: cookies })).statusCode).toBe(303);
  });

  // Review: a sibling subdomain may plant its own session under the same name and a longer path, which
  // browsers send first; the page then showed the planter's account to the victim (login CSRF).
  it('treats a request carrying the session cookie twice as carrying none', async () => {
    const mine = sessionCookie(await postForm(page('/signin'), { email: member, password: strongPassword }));
    const alone = await t.app.inject({
      url: page('/account'),
      headers: { cookie: `rampart_session=${mine}` },
    });
    expect(alone.statusCode).toBe(200);
    const planted = sessionCookie(
      await postForm(page('/signin'), { email: `admin@${slug}.test`, password: strongPassword }),
    );
    for (const cookie of [
      `rampart_session=${planted}; rampart_session=${mine}`,
      `other=1; rampart_session=${mine};rampart_session=${planted}`,
    ]) {
      const twice = await t.app.inject({ url: page('/account'), headers: { cookie } });
      expect(twice.statusCode).toBe(303);
      expect(twice.headers.location).toBe(page('/signin'));
    }
  });

  it('keeps a session that still needs its second factor on the code page', async () => {
    const signIn = await postForm(page('/signin'), { email: `admin@${slug}.test`, password: strongPassword });
    expect(signIn.headers.location).toBe(page('/signin/code'));
    const cookies = { cookie: `rampart_session=${sessionCookie(signIn)}` };
    const account = await t.app.inject({ url: page('/account'), headers: cookies });
    expect(account.statusCode).toBe(303);
    expect(account.headers.location).toBe(page('/signin/code'));
    const code = await t.app.inject({ url: page('/signin/code'), headers: cookies });
    expect(code.statusCode).toBe(200);
    expect(code.body).toContain('autocomplete="one-time-code"');
  });

  it('offers self sign-up only where the tenant allows it, and confirms the address with a click', async () => {
    const closed = await t.app.inject({ url: page('/signup') });
    expect(closed.body).toContain('does not allow signing up here');
    await changeSettingsAsApproved(t, slug, (s) => {
      s.selfSignup = true;
    });
    const form = await t.app.inject({ url: page('/signup') });
    expect(form.body).toContain('id="policy-rules"');
    const email = 'self@pages-co.test';
    const fields = {
      email,
      displayName: 'Self',
      newPassword: strongPassword,
      confirmPassword: strongPassword,
    };
    const differ = await postForm(page('/signup'), { ...fields, confirmPassword: 'Something-Else-123' });
    expect(differ.statusCode).toBe(422);
    const done = await postForm(page('/signup'), fields);
    expect(done.headers.location).toBe(page('/signin?notice=signup'));
    const { url: link, token } = await linkFromOutbox(t, email);
    expect(link.pathname).toBe(page('/verify-email'));
    // The GET only shows a button: a mail scanner fetching the link must not use up the token.
    const shown = await t.app.inject({ url: `${link.pathname}${link.search}` });
    expect(shown.body).toContain('Confirm my email address');
    const confirmed = await postForm(page('/verify-email'), { token });
    expect(confirmed.headers.location).toBe(page('/signin?notice=verified'));
    const again = await postForm(page('/verify-email'), { token });
    expect(again.statusCode).toBe(400);
    expect(again.body).toContain('invalid, used or expired');
  });
});

describe('hosted pages behind https', () => {
  const secureOrigin = 'https://rampart.example';
  let s: TestApp;
  beforeAll(async () => {
    s = await buildTestApp({ env: { PUBLIC_URL: secureOrigin } });
    await seedTenant(s, slug);
    const admin = await adminSession(s, slug);
    await s.app.inject({
      method: 'POST',
      url: `/api/v1/t/${slug}/users`,
      headers: admin.headers,
      payload: { email: member, role: 'member', displayName: 'Mem Ber' },
    });
    const { token } = await linkFromOutbox(s, member);
    await s.app.inject({
      method: 'POST',
      url: `/api/v1/t/${slug}/invitations/accept`,
      payload: { token, password: strongPassword },
    });
  });
  afterAll(async () => {
    await s?.close();
  });

  // Security review: an unprefixed cookie can be planted by a sibling subdomain or over plain http (login
  // CSRF); a __Secure- one only by a secure origin.
  it('names the session cookie __Secure-, reads only that name, and clears it at sign-out', async () => {
    const form = (path: string, fields: Record<string, string>, headers: Record<string, string> = {}) =>
      s.app.inject({
        method: 'POST',
        url: page(path),
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: secureOrigin, ...headers },
        payload: new URLSearchParams(fields).toString(),
      });
    const signIn = await form('/signin', { email: member, password: strongPassword });
    expect(signIn.statusCode).toBe(303);
    expect(signIn.cookies.map((c) => c.name)).toEqual(['__Secure-rampart_session']);
    const cookie = signIn.cookies[0];
    expect(cookie).toMatchObject({ httpOnly: true, secure: true, sameSite: 'Lax', path: `/t/${slug}` });
    const token = cookie?.value ?? '';
    const withCookie = (name: string) => ({ cookie: `${name}=${token}` });
    // The same live token under the unprefixed name is not a session: a planted cookie is ignored.
    expect(
      (await s.app.inject({ url: page('/account'), headers: withCookie('rampart_session') })).statusCode,
    ).toBe(303);
    const account = await s.app.inject({
      url: page('/account'),
      headers: withCookie('__Secure-rampart_session'),
    });
    expect(account.statusCode).toBe(200);
    const csrf = /name="_csrf" value="([^"]+)"/.exec(account.body)?.[1] ?? '';
    const out = await form('/signout', { _csrf: csrf }, withCookie('__Secure-rampart_session'));
    expect(out.statusCode).toBe(303);
    expect(out.cookies).toEqual([
      expect.objectContaining({
        name: '__Secure-rampart_session',
        value: '',
        secure: true,
        path: `/t/${slug}`,
      }),
    ]);
  });
});
