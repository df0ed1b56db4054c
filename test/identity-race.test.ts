import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { buildTestApp, engineUnderTest, seedTenant, type TestApp } from './helpers.ts';
import { adminSession, inviteAndAccept, strongPassword } from './identity-helpers.ts';

let t: TestApp;
const slug = 'race-co';
beforeAll(async () => {
  t = await buildTestApp();
  await seedTenant(t, slug);
});
afterAll(async () => {
  await t?.close();
});

describe(`lockout under concurrency (${engineUnderTest})`, () => {
  it('50 parallel wrong passwords get at most 5 verifications, and the right one is then refused', async () => {
    const admin = await adminSession(t, slug);
    const email = 'target@race-co.test';
    await inviteAndAccept(t, slug, admin, email);

    const hasher = t.app.services.identity.deps.hasher;
    const before = hasher.stats().verifications;
    // Distinct client addresses, so the per-IP throttle does not mask the per-account lock.
    const attempts = Array.from({ length: 50 }, (_, i) =>
      t.app.inject({
        method: 'POST',
        url: `/api/v1/t/${slug}/auth/signin`,
        remoteAddress: `198.51.100.${i + 1}`,
        payload: { email, password: `wrong-password-${i}` },
      }),
    );
    const answers = await Promise.all(attempts);
    expect(new Set(answers.map((a) => a.statusCode))).toEqual(new Set([401]));
    const right = await t.app.inject({
      method: 'POST',
      url: `/api/v1/t/${slug}/auth/signin`,
      remoteAddress: '203.0.113.9',
      payload: { email, password: strongPassword },
    });
    expect(right.statusCode).toBe(401);
    const verifications = hasher.stats().verifications - before;
    expect(verifications).toBeGreaterThan(0);
    expect(verifications).toBeLessThanOrEqual(5);

    const locked = await t.app.inject({ url: `/api/v1/t/${slug}/users?limit=200`, headers: admin.headers });
    const user = (locked.json().items as { email: string; locked: boolean }[]).find((u) => u.email === email);
    expect(user?.locked).toBe(true);
    const tenantId = asTenantId((await t.app.services.tenancy.get(slug)).id);
    const events = await t.db.withTenant<AuditTables, { action: string; outcome: string }[]>(tenantId, (tx) =>
      tx.selectFrom('audit_events').select(['action', 'outcome']).execute(),
    );
    expect(
      events.filter((e) => e.action === 'identity.signin.password' && e.outcome === 'failure').length,
    ).toBeGreaterThanOrEqual(51);
    expect(events.filter((e) => e.action === 'identity.user.locked')).toHaveLength(1);
  });

  it('throttles one address trying many accounts (credential stuffing)', async () => {
    const results: number[] = [];
    for (let i = 0; i < 60; i++) {
      const res = await t.app.inject({
        method: 'POST',
        url: `/api/v1/t/${slug}/auth/signin`,
        remoteAddress: '192.0.2.77',
        payload: { email: `victim${i}@race-co.test`, password: 'Spring2024!' },
      });
      results.push(res.statusCode);
    }
    expect(results.slice(0, 10).every((s) => s === 401)).toBe(true);
    expect(results.at(-1)).toBe(429);
  });
});
