import type { Browser, BrowserContext, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_CSP } from '../../src/identity/pages/index.ts';
import { seedTenant, type TestApp } from '../helpers.ts';
import { linkFromOutbox, strongPassword, totpCode } from '../identity-helpers.ts';
import { errorText, launchChromium, startServer, Watcher } from './support.ts';

const slug = 'acme-bank';
const adminEmail = 'ada@acme-bank.test';
const memberEmail = 'mo@acme-bank.test';
let t: TestApp;
let origin: string;
let browser: Browser;
const watcher = new Watcher();
const contexts: BrowserContext[] = [];
const state = { secret: '', recoveryCodes: [] as string[], adminToken: '', memberId: '' };

beforeAll(async () => {
  ({ t, origin } = await startServer());
  await seedTenant(t, slug);
  browser = await launchChromium();
});
afterAll(async () => {
  await browser?.close();
  await t?.close();
});

async function newPage(): Promise<Page> {
  const context = await browser.newContext();
  contexts.push(context);
  return watcher.page(context);
}

const url = (path: string) => `${origin}/t/${slug}${path}`;
const heading = async (page: Page) => (await page.textContent('h1'))?.trim();
/** Follows a mailed link the way a person would: the path and query, on the server's own origin. */
const openLink = async (page: Page, to: string) => {
  const { url: link } = await linkFromOutbox(t, to);
  expect(link.origin).toBe(origin);
  await page.goto(`${origin}${link.pathname}${link.search}`);
};

async function signIn(page: Page, email: string, password: string) {
  await page.goto(url('/signin'));
  await page.fill('#f-email', email);
  await page.fill('#f-password', password);
  await Promise.all([page.waitForLoadState('load'), page.click('button[type=submit]')]);
}

const api = (method: 'GET' | 'POST', path: string, token: string, payload?: object) =>
  t.app.inject({
    method,
    url: `/api/v1/t/${slug}${path}`,
    headers: { authorization: `Bearer ${token}` },
    ...(payload ? { payload } : {}),
  });

describe('hosted pages in headless Chromium', () => {
  it('renders the sign-in page accessibly, styled, under the CSP', async () => {
    const page = await newPage();
    const response = await page.goto(url('/signin'));
    expect(response?.status()).toBe(200);
    expect(await page.getAttribute('html', 'lang')).toBe('en');
    expect(await page.getAttribute('#f-email', 'autocomplete')).toBe('username');
    expect(await page.getAttribute('#f-password', 'autocomplete')).toBe('current-password');
    expect(await page.textContent('label[for=f-email]')).toContain('Email');
    expect(await page.getAttribute('#form-error', 'aria-live')).toBe('assertive');
    // The stylesheet applied: the card has its border radius from rampart.css, not from inline style.
    const radius = await page.evaluate(
      "getComputedStyle(document.querySelector('main.card')).borderTopLeftRadius",
    );
    expect(radius).toBe('8px');
    await page.screenshot({ path: '/tmp/signin.png', fullPage: true });
  });

  it('accepts an invitation, naming each password rule a rejected password breaks', async () => {
    const invite = await t.app.inject({
      method: 'POST',
      url: `/api/v1/tenants/${slug}/admins`,
      headers: t.asOperator,
      payload: { email: adminEmail, displayName: 'Ada Admin' },
    });
    expect(invite.statusCode).toBe(201);
    const page = await newPage();
    await openLink(page, adminEmail);
    expect(await heading(page)).toBe('Accept your invitation');
    expect(await page.textContent('#policy-rules')).toMatch(/Between 8 and 72 characters/);
    expect(await page.getAttribute('#f-newPassword', 'autocomplete')).toBe('new-password');
    await page.fill('#f-newPassword', 'short');
    await page.fill('#f-confirmPassword', 'short');
    await page.click('button[type=submit]');
    expect(await errorText(page)).toMatch(/Use at least \d+ characters/);
    await page.fill('#f-newPassword', strongPassword);
    await page.fill('#f-confirmPassword', strongPassword);
    await page.click('button[type=submit]');
    expect(new URL(page.url()).pathname).toBe(`/t/${slug}/signin`);
    expect(await page.textContent('.notice')).toContain('Your password is set');
  });

  it('signs in, enrols TOTP from the shown key, signs out, and signs in again with a code', async () => {
    const page = await newPage();
    await signIn(page, adminEmail, strongPassword);
    // Administrators must have a second factor: sign-in leads to enrolment.
    expect(new URL(page.url()).pathname).toBe(`/t/${slug}/mfa/enrol`);
    await page.click('text=Set up an authenticator app');
    expect(await page.getAttribute('img.qr', 'src')).toMatch(/^data:image\/svg\+xml;base64,/);
    await page.screenshot({ path: '/tmp/enrol.png', fullPage: true });
    state.secret = ((await page.textContent('#totp-secret')) ?? '').replace(/\s+/g, '');
    expect(state.secret).toMatch(/^[A-Z2-7]{32}$/);
    expect(await page.getAttribute('#f-code', 'autocomplete')).toBe('one-time-code');
    await page.fill('#f-code', '000000');
    await page.click('form[action$="/mfa/enrol"] button[type=submit]');
    expect(await errorText(page)).toMatch(/does not match/);
    await page.fill('#f-code', totpCode(state.secret));
    await page.click('form[action$="/mfa/enrol"] button[type=submit]');
    state.recoveryCodes = await page.$$eval('#recovery-codes code', (els) =>
      els.map((e) => e.textContent ?? ''),
    );
    expect(state.recoveryCodes).toHaveLength(10);
    await page.click('text=I have saved them, continue');
    expect(await page.textContent('#signed-in-as')).toBe(adminEmail);

    await page.click('button:has-text("Sign out")');
    expect(await page.textContent('.notice')).toContain('You are signed out');
    await page.goto(url('/account'));
    expect(new URL(page.url()).pathname).toBe(`/t/${slug}/signin`);

    await signIn(page, adminEmail, strongPassword);
    expect(new URL(page.url()).pathname).toBe(`/t/${slug}/signin/code`);
    // The enrolment used this time step's code; the next step's code is accepted once.
    await page.fill('#f-code', totpCode(state.secret, Date.now() + 30_000));
    await page.click('form[action$="/signin/code"] button[type=submit]');
    expect(await page.textContent('#signed-in-as')).toBe(adminEmail);
  });

  it('locks a member after five wrong passwords with the wrong-password message; the admin unlocks', async () => {
    // The admin's API session: password, then a recovery code shown on the enrolment page.
    const first = await t.app.inject({
      method: 'POST',
      url: `/api/v1/t/${slug}/auth/signin`,
      payload: { email: adminEmail, password: strongPassword },
    });
    const second = await api('POST', '/auth/second-factor', first.json().token, {
      code: state.recoveryCodes[0],
    });
    expect(second.statusCode).toBe(200);
    state.adminToken = second.json().token;
    const invited = await api('POST', '/users', state.adminToken, {
      email: memberEmail,
      role: 'member',
      displayName: 'Mo Member',
    });
    expect(invited.statusCode).toBe(201);
    state.memberId = invited.json().id;

    const page = await newPage();
    await openLink(page, memberEmail);
    await page.fill('#f-newPassword', strongPassword);
    await page.fill('#f-confirmPassword', strongPassword);
    await page.click('button[type=submit]');

    await signIn(page, 'nobody@acme-bank.test', strongPassword);
    const unknownMessage = await errorText(page);
    expect(unknownMessage).toBe('The email or password is not correct.');
    for (let i = 0; i < 5; i++) {
      await signIn(page, memberEmail, `Wrong-Password-${i}!`);
      expect(await errorText(page)).toBe(unknownMessage);
      // The address stays filled in; the password never comes back.
      expect(await page.inputValue('#f-email')).toBe(memberEmail);
      expect(await page.inputValue('#f-password')).toBe('');
    }
    await signIn(page, memberEmail, strongPassword);
    expect(await errorText(page)).toBe(unknownMessage);
    expect(new URL(page.url()).pathname).toBe(`/t/${slug}/signin`);

    const unlock = await api('POST', `/users/${state.memberId}/unlock`, state.adminToken);
    expect(unlock.statusCode).toBe(200);
    await signIn(page, memberEmail, strongPassword);
    expect(await page.textContent('#signed-in-as')).toBe(memberEmail);
  });

  it('resets a forgotten password from the outbox link', async () => {
    const page = await newPage();
    await page.goto(url('/signin'));
    await page.click('text=Forgot your password?');
    await page.fill('#f-email', memberEmail);
    await page.click('button[type=submit]');
    expect(await page.textContent('.notice')).toContain('If an account uses this address');
    await openLink(page, memberEmail);
    expect(await heading(page)).toBe('Choose a new password');
    await page.fill('#f-newPassword', 'Fresh-Start-Passphrase-2026');
    await page.fill('#f-confirmPassword', 'Fresh-Start-Passphrase-2026');
    await page.click('button[type=submit]');
    expect(await page.textContent('.notice')).toContain('Your password was changed');
    await signIn(page, memberEmail, strongPassword);
    expect(await errorText(page)).toBe('The email or password is not correct.');
    await signIn(page, memberEmail, 'Fresh-Start-Passphrase-2026');
    expect(await page.textContent('#signed-in-as')).toBe(memberEmail);
  });

  it('lists sessions and revokes another browser’s session, which is then signed out', async () => {
    // Start from none: the earlier tests left this member signed in elsewhere.
    const ended = await t.app.inject({
      method: 'DELETE',
      url: `/api/v1/t/${slug}/users/${state.memberId}/sessions`,
      headers: { authorization: `Bearer ${state.adminToken}` },
    });
    expect(ended.statusCode).toBe(200);
    const mine = await newPage();
    const other = await newPage();
    await signIn(mine, memberEmail, 'Fresh-Start-Passphrase-2026');
    await signIn(other, memberEmail, 'Fresh-Start-Passphrase-2026');
    expect(await other.textContent('#signed-in-as')).toBe(memberEmail);

    await mine.goto(url('/account/sessions'));
    expect(await mine.$$('table.sessions tbody tr')).toHaveLength(2);
    expect(await mine.textContent('tr.current')).toContain('(this browser)');
    await mine.screenshot({ path: '/tmp/sessions.png', fullPage: true });
    await mine.click('tbody tr:not(.current) button:has-text("End session")');
    expect(await mine.textContent('.notice')).toContain('The session was ended');
    expect(await mine.$$('table.sessions tbody tr')).toHaveLength(1);

    await other.goto(url('/account'));
    expect(new URL(other.url()).pathname).toBe(`/t/${slug}/signin`);
    await mine.goto(url('/account'));
    expect(await mine.textContent('#signed-in-as')).toBe(memberEmail);
  });

  it('sent every page with the CSP and security headers, and the browser reported no violation', async () => {
    const pages = watcher.documents.filter((d) => new URL(d.url).pathname.startsWith(`/t/${slug}/`));
    expect(pages.length).toBeGreaterThan(20);
    for (const doc of pages) {
      expect(doc.headers['content-security-policy'], doc.url).toBe(PAGE_CSP);
      expect(doc.headers['x-content-type-options'], doc.url).toBe('nosniff');
      expect(doc.headers['referrer-policy'], doc.url).toBe('same-origin');
      expect(doc.headers['cache-control'], doc.url).toBe('no-store');
      if (doc.status < 300) expect(doc.headers['content-type'], doc.url).toBe('text/html; charset=utf-8');
    }
    expect(watcher.cspViolations()).toEqual([]);
  });

  it('would notice a violation: an injected inline style is refused and reported', async () => {
    const probe = new Watcher();
    const context = await browser.newContext();
    const page = await probe.page(context);
    await page.goto(url('/signin'));
    await page.evaluate(
      "document.head.append(Object.assign(document.createElement('style'), { textContent: 'body { color: red }' }))",
    );
    await expect.poll(() => probe.cspViolations().length).toBeGreaterThan(0);
    await context.close();
  });
});
