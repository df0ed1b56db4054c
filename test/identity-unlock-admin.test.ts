/**
 * Security review (2026-11-28): users:write, which is no administrator power, lifted a tenant-admin's
 * password lock as often as it liked: a "helpdesk" role (or whoever controls one such account) gave
 * whoever guesses the administrator's password `threshold` more guesses per unlock, even where the tenant
 * locks accounts until an administrator unlocks them. Lifting the lock of a user whose roles give
 * administrator powers is now four-eyes (`access.grant-tenant-admin`, `via: "unlock"`), like enabling
 * them or resetting their second factor; the locked user may not approve it. PGlite and PostgreSQL.
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asTenantId } from '../src/platform/db/index.ts';
import { member, type Person, tenantAdmin, withSecondFactor } from './access-helpers.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

const slug = 'unlock-admin';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
let t: TestApp;
let tenantId: string;
let admin: Person;
let desk: Person;
let round = 0;

beforeAll(async () => {
  t = await buildTestApp();
  tenantId = (await seedTenant(t, slug)).id;
  admin = await tenantAdmin(t, slug);
  desk = await withSecondFactor(t, slug, await member(t, slug, admin, `desk@${slug}.test`));
  const role = await t.app.inject({
    method: 'POST',
    url: api('/access/roles'),
    headers: admin.headers,
    payload: {
      key: 'helpdesk',
      name: 'Helpdesk',
      permissions: ['users:read', 'users:write', 'approvals:request'],
    },
  });
  expect(role.statusCode, role.body).toBe(201);
  const assign = await t.app.inject({
    method: 'PUT',
    url: api(`/access/users/${desk.userId}/roles/helpdesk`),
    headers: admin.headers,
  });
  expect(assign.statusCode, assign.body).toBe(200);
  // The tenant chose the strictest lockout: locked until an administrator unlocks.
  await t.db.withTenant(asTenantId(tenantId), (tx) =>
    sql`UPDATE identity_settings SET lockout_mode = 'admin'`.execute(tx),
  );
});
afterAll(async () => {
  await t?.close();
});

/** Five wrong passwords for `email`, each from an address of its own (the per-address budget aside). */
async function lockOut(email: string) {
  round += 1;
  for (let i = 0; i < 5; i++) {
    const r = await t.app.inject({
      method: 'POST',
      url: api('/auth/signin'),
      payload: { email, password: `wrong-guess-${round}-${i}` },
      remoteAddress: `10.${round}.0.${i + 1}`,
    });
    expect(r.statusCode).toBe(401);
  }
}

const isLocked = async (userId: string) =>
  (await t.app.inject({ url: api(`/users/${userId}`), headers: admin.headers })).json().locked as boolean;

const unlock = (who: Person, userId: string) =>
  t.app.inject({ method: 'POST', url: api(`/users/${userId}/unlock`), headers: who.headers });

/** Password verifications that ran against the user (not answered as locked). */
const verifiedGuesses = async (userId: string) => {
  const { rows } = await t.db.withTenant(asTenantId(tenantId), (tx) =>
    sql<{ n: number }>`SELECT count(*)::int AS n FROM audit_events
      WHERE action = 'identity.signin.password' AND target_id = ${userId}
        AND details->>'reason' = 'wrong_password'`.execute(tx),
  );
  return rows[0]?.n;
};

describe("lifting an administrator's password lock", () => {
  it('a helpdesk user is asked for approval, again and again: the guesses stay at the threshold', async () => {
    const target = await tenantAdmin(t, slug, `target@${slug}.test`);
    const answers: number[] = [];
    for (let i = 0; i < 3; i++) {
      await lockOut(target.email);
      expect(await isLocked(target.userId)).toBe(true);
      const asked = await unlock(desk, target.userId);
      answers.push(asked.statusCode);
      if (asked.statusCode === 202) {
        const { approval } = asked.json();
        expect(approval.action).toBe('access.grant-tenant-admin');
        expect(approval.summary).toMatch(/^Lift the password lock of target@unlock-admin\.test, whose roles/);
      }
    }
    expect(answers).toEqual([202, 202, 202]);
    expect(await isLocked(target.userId)).toBe(true);
    expect(await verifiedGuesses(target.userId)).toBe(5);
  });

  it('runs once another person approves; the locked administrator may not approve it', async () => {
    const target = await tenantAdmin(t, slug, `target2@${slug}.test`);
    const approver = await tenantAdmin(t, slug, `approver@${slug}.test`);
    await lockOut(target.email);
    const asked = await unlock(desk, target.userId);
    expect(asked.statusCode, asked.body).toBe(202);
    const { approval } = asked.json();
    const decide = (who: Person) =>
      t.app.inject({
        method: 'POST',
        url: api(`/access/approvals/${approval.id}/approve`),
        headers: who.headers,
      });
    expect((await decide(target)).statusCode).toBe(403);
    expect(await isLocked(target.userId)).toBe(true);
    expect((await decide(approver)).statusCode).toBe(200);
    const run = await t.app.inject({
      method: 'POST',
      url: api(`/access/approvals/${approval.id}/execute`),
      headers: desk.headers,
      payload: { params: { via: 'unlock', userId: target.userId } },
    });
    expect(run.statusCode, run.body).toBe(200);
    expect(await isLocked(target.userId)).toBe(false);
    // Once: the approval is used up.
    const again = await t.app.inject({
      method: 'POST',
      url: api(`/access/approvals/${approval.id}/execute`),
      headers: desk.headers,
      payload: { params: { via: 'unlock', userId: target.userId } },
    });
    expect(again.statusCode).toBe(409);
  });

  it('a user without administrator powers is unlocked at once, as before', async () => {
    const plain = await member(t, slug, admin, `plain@${slug}.test`);
    await lockOut(plain.email);
    expect(await isLocked(plain.userId)).toBe(true);
    const done = await unlock(desk, plain.userId);
    expect(done.statusCode, done.body).toBe(200);
    expect(done.json().locked).toBe(false);
  });
});
