/**
 * An operator invites only a tenant's first administrator (security review, HIGH: the route let any
 * operator add a tenant-admin to any active tenant at any time). Refused while the tenant has an active
 * administrator or a pending invitation for one that can still be accepted; two first invitations at once
 * give at most one.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { linkFromOutbox, strongPassword } from './identity-helpers.ts';

const clock = fakeClock(new Date());
let t: TestApp;

beforeAll(async () => {
  t = await buildTestApp({ clock });
});
afterAll(async () => {
  await t?.close();
});

const invite = (slug: string, email: string) =>
  t.app.inject({
    method: 'POST',
    url: `/api/v1/tenants/${slug}/admins`,
    headers: t.asOperator,
    payload: { email, displayName: 'Admin' },
  });

async function usersOf(slug: string): Promise<string[]> {
  const rows = await t.database.engine.asOwner(
    (o) =>
      o.query(
        `SELECT u.email FROM users u JOIN tenants t ON t.id = u.tenant_id WHERE t.slug = $1 ORDER BY u.email`,
        [slug],
      ) as Promise<{ email: string }[]>,
  );
  return rows.map((r) => r.email);
}

describe("an operator's invitation of a tenant administrator", () => {
  it('is refused while an invitation for the first one can still be accepted, and once it was', async () => {
    await seedTenant(t, 'first-co');
    expect((await invite('first-co', 'one@first-co.test')).statusCode).toBe(201);

    const second = await invite('first-co', 'two@first-co.test');
    expect(second.statusCode).toBe(409);
    expect(second.headers['content-type']).toMatch(/^application\/problem\+json/);
    expect(second.json().code).toBe('tenant_has_admin');
    // The refusal names the way that remains: the tenant's own admins, or an elevation.
    expect(second.json().detail).toMatch(/\/api\/v1\/t\/first-co\/users/);
    expect(second.json().detail).toMatch(/elevation/);
    expect(await usersOf('first-co')).toEqual(['one@first-co.test']);

    // The first invitation lapses unused (7 days): the tenant may be given a first administrator again.
    clock.advance(7 * 86_400_000 + 1);
    expect((await invite('first-co', 'three@first-co.test')).statusCode).toBe(201);
    const { token } = await linkFromOutbox(t, 'three@first-co.test');
    const accepted = await t.app.inject({
      method: 'POST',
      url: '/api/v1/t/first-co/invitations/accept',
      payload: { token, password: strongPassword },
    });
    expect(accepted.statusCode).toBe(200);

    // An active administrator: refused for good, however long after.
    clock.advance(8 * 86_400_000);
    const later = await invite('first-co', 'four@first-co.test');
    expect(later.statusCode).toBe(409);
    expect(later.json().code).toBe('tenant_has_admin');
    expect(await usersOf('first-co')).toEqual(['one@first-co.test', 'three@first-co.test']);
  });

  it('sends at most one of two first invitations made at once', async () => {
    await seedTenant(t, 'race-co');
    const answers = await Promise.all([
      invite('race-co', 'a@race-co.test'),
      invite('race-co', 'b@race-co.test'),
    ]);
    expect(answers.map((a) => a.statusCode).sort()).toEqual([201, 409]);
    expect(await usersOf('race-co')).toHaveLength(1);
  });

  it('is answered for each tenant on its own', async () => {
    await seedTenant(t, 'other-co');
    expect((await invite('other-co', 'admin@other-co.test')).statusCode).toBe(201);
  });
});
