import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PAGE_CSP } from '../src/identity/pages/index.ts';
import { API_CSP } from '../src/protect/index.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

let t: TestApp;
beforeAll(async () => {
  t = await buildTestApp();
  await seedTenant(t, 'acme');
});
afterAll(async () => {
  await t?.close();
});

const common = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

describe('security headers', () => {
  it('API answers, errors included, carry the strict defaults', async () => {
    for (const res of [
      await t.app.inject({ url: '/api/v1/tenants', headers: t.asOperator }),
      await t.app.inject({ url: '/api/v1/tenants' }),
      await t.app.inject({ url: '/no/such/route' }),
      await t.app.inject({ url: '/healthz' }),
    ]) {
      expect(res.headers).toMatchObject({
        ...common,
        'content-security-policy': API_CSP,
        'referrer-policy': 'no-referrer',
      });
    }
    expect(API_CSP).toContain("frame-ancestors 'none'");
  });

  // Regression: API answers carrying secrets (sign-in tokens, TOTP secrets, recovery codes, operator
  // tokens) had no Cache-Control, so a browser or proxy cache could keep them.
  it('API answers, the sign-in answer and errors included, say Cache-Control: no-store', async () => {
    for (const res of [
      await t.app.inject({ url: '/api/v1/tenants', headers: t.asOperator }),
      await t.app.inject({
        method: 'POST',
        url: '/api/v1/t/acme/auth/signin',
        payload: { email: 'nobody@acme.test', password: 'not-the-password' },
      }),
      await t.app.inject({ method: 'POST', url: '/api/v1/operator/signin', payload: {} }),
    ]) {
      expect(res.headers['cache-control'], res.body.slice(0, 100)).toBe('no-store');
    }
  });

  it('hosted pages keep their own CSP (no unsafe-inline, framing refused) and the same-origin referrer policy', async () => {
    const res = await t.app.inject({ url: '/t/acme/signin' });
    expect(res.statusCode).toBe(200);
    expect(res.headers).toMatchObject({
      ...common,
      'content-security-policy': PAGE_CSP,
      'referrer-policy': 'same-origin',
    });
    expect(PAGE_CSP).not.toContain('unsafe-inline');
    expect(PAGE_CSP).toContain("frame-ancestors 'none'");
    // And no inline script or style that the policy would have to allow.
    expect(res.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>|<style|\sstyle="|\son[a-z]+="/i);
  });

  it('sends no HSTS over plain HTTP', async () => {
    const res = await t.app.inject({ url: '/healthz' });
    expect(res.headers['strict-transport-security']).toBeUndefined();
  });
});

describe('HSTS behind a TLS-terminating proxy', () => {
  let proxied: TestApp;
  beforeAll(async () => {
    proxied = await buildTestApp({ env: { PUBLIC_URL: 'https://rampart.example', HSTS_MAX_AGE: '600' } });
  });
  afterAll(async () => {
    await proxied?.close();
  });

  it('is sent when PUBLIC_URL is https, with the configured max-age', async () => {
    const res = await proxied.app.inject({ url: '/healthz' });
    expect(res.headers['strict-transport-security']).toBe('max-age=600; includeSubDomains');
  });
});
