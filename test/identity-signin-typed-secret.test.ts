/**
 * Security review (2026-11-28): a sign-in whose "email" was not an address was audited with that input
 * verbatim (lower-cased) as details.email. A person who types the password into the email field
 * (autofill, a tab slip) left it in the audit trail, readable by every audit:read holder (the built-in
 * `staff` role, not an administrator), exported and forwarded to SIEM sinks; the secret check of
 * audit/details.ts catches hashes and long random runs, not ordinary passwords, and the next event from
 * the same address names the account. Now such an attempt is recorded with no address at all.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { member, type Person, tenantAdmin, withSecondFactor } from './access-helpers.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';
import { strongPassword } from './identity-helpers.ts';

const slug = 'typed-secret';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
let t: TestApp;
let admin: Person;

beforeAll(async () => {
  t = await buildTestApp();
  await seedTenant(t, slug);
  admin = await tenantAdmin(t, slug);
});
afterAll(async () => {
  await t?.close();
});

it('a password typed into the email field is not recorded in the audit trail (readable by staff)', async () => {
  const victim = await member(t, slug, admin, 'victim@typed-secret.test');
  const staff = await withSecondFactor(t, slug, await member(t, slug, admin, 'staff@typed-secret.test'));
  const assign = await t.app.inject({
    method: 'PUT',
    url: api(`/access/users/${staff.userId}/roles/staff`),
    headers: admin.headers,
  });
  expect(assign.statusCode, assign.body).toBe(200);
  // The victim's browser puts the password in the email field and submits (hosted form or API alike).
  const slip = await t.app.inject({
    method: 'POST',
    url: api('/auth/signin'),
    payload: { email: 'Spring-Garden-1987', password: 'Spring-Garden-1987' },
    remoteAddress: '203.0.113.7',
  });
  expect(slip.statusCode).toBe(401);
  // ...then signs in properly from the same address.
  await t.app.inject({
    method: 'POST',
    url: api('/auth/signin'),
    payload: { email: victim.email, password: strongPassword },
    remoteAddress: '203.0.113.7',
  });

  // A staff member (audit:read, no administrator power) reads the trail.
  const read = await t.app.inject({
    url: api('/audit/events?action=identity.signin.password&limit=50'),
    headers: staff.headers,
  });
  expect(read.statusCode, read.body).toBe(200);
  const recorded = JSON.stringify(read.json());
  expect(recorded, 'the typed-in password is readable in the audit trail').not.toContain(
    'spring-garden-1987',
  );
  // The attempt itself is still in the trail (every sign-in attempt is), as a failure with no address.
  const failures = (
    read.json() as { items: { outcome: string; ip: string; details: Record<string, unknown> }[] }
  ).items.filter((e) => e.outcome === 'failure' && e.ip === '203.0.113.7');
  expect(failures.map((e) => e.details)).toEqual([{ email: null, reason: 'unknown_user' }]);
});
