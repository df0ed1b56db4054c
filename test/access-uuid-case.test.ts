/**
 * Regressions from the access review (HIGH): ids in upper case. The access routes' id pattern and ajv's
 * `uuid` format took A-F as well as a-f; PostgreSQL matches a uuid in any case, but the checks around
 * the queries compare text. Naming a user in upper case got past "not yourself" (a deputy gave
 * themselves a role), "always keep an administrator" (the only administrator's tenant-admin removed,
 * after which an elevated operator could invite themselves as the tenant's first administrator) and
 * "the user a grant is for does not approve it"; and the decision API cached a tenant named in upper
 * case under a key its invalidation never dropped (a removed role still allowed). Every id a client
 * sends must now be in the one form Rampart writes: lower case (app/fastify.ts), else 400.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemContext } from '../src/platform/context.ts';
import { member, type Person, tenantAdmin, withSecondFactor } from './access-helpers.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

let t: TestApp;
const slug = 'upper-co';
const lone = 'lone-co';
const api = (s: string, path: string) => `/api/v1/t/${s}${path}`;
let tenantId: string;
let ada: Person;
let pat: Person;
let cy: Person;
let solo: Person;

beforeAll(async () => {
  t = await buildTestApp();
  tenantId = (await seedTenant(t, slug)).id;
  await seedTenant(t, lone);
  ada = await tenantAdmin(t, slug, 'ada@upper-co.test');
  pat = await member(t, slug, ada, 'pat@upper-co.test');
  cy = await member(t, slug, ada, 'cy@upper-co.test');
  solo = await tenantAdmin(t, lone, 'solo@lone-co.test');
  const { roles } = t.app.services.access;
  const sys = systemContext('test');
  await roles.create(tenantId, sys, 'deputy', {
    name: 'Deputy',
    permissions: ['roles:assign', 'roles:read', 'users:read'],
  });
  await roles.create(tenantId, sys, 'lister', { name: 'Lister', permissions: ['roles:read', 'users:read'] });
  await roles.assign(tenantId, sys, pat.userId, 'deputy');
  pat = await withSecondFactor(t, slug, pat);
  cy = await withSecondFactor(t, slug, cy);
});
afterAll(async () => {
  await t?.close();
});

const rolesOf = async (s: string, who: Person, userId: string) =>
  (await t.app.inject({ url: api(s, `/access/users/${userId}/roles`), headers: who.headers })).json().roles;

/** A 400 naming the parameter, with the form it must take. */
function refusedAsNotCanonical(
  res: { statusCode: number; body: string; json: () => unknown },
  pointer: string,
) {
  expect(res.statusCode, res.body).toBe(400);
  expect((res.json() as { errors: unknown[] }).errors).toEqual([
    { pointer, message: expect.stringMatching(/lower case/) },
  ]);
}

describe('an id in upper case is refused, and changes nothing', () => {
  it('a role holder naming themselves in upper case gets no role', async () => {
    const res = await t.app.inject({
      method: 'PUT',
      url: api(slug, `/access/users/${pat.userId.toUpperCase()}/roles/lister`),
      headers: pat.headers,
    });
    refusedAsNotCanonical(res, '/path/userId');
    expect(await rolesOf(slug, ada, pat.userId)).not.toContain('lister');
  });

  it("the tenant's only administrator keeps tenant-admin", async () => {
    const res = await t.app.inject({
      method: 'DELETE',
      url: api(lone, `/access/users/${solo.userId.toUpperCase()}/roles/tenant-admin`),
      headers: solo.headers,
    });
    refusedAsNotCanonical(res, '/path/userId');
    expect(await rolesOf(lone, solo, solo.userId)).toContain('tenant-admin');
    // In its own form the rule still holds: 409.
    const same = await t.app.inject({
      method: 'DELETE',
      url: api(lone, `/access/users/${solo.userId}/roles/tenant-admin`),
      headers: solo.headers,
    });
    expect(same.statusCode, same.body).toBe(409);
  });

  it('no grant of tenant-admin is asked for a user named in upper case', async () => {
    const asked = await t.app.inject({
      method: 'PUT',
      url: api(slug, `/access/users/${cy.userId.toUpperCase()}/roles/tenant-admin`),
      headers: ada.headers,
    });
    refusedAsNotCanonical(asked, '/path/userId');
    const pending = await t.app.inject({ url: api(slug, '/access/approvals'), headers: ada.headers });
    expect(JSON.stringify(pending.json())).not.toContain(cy.userId.toUpperCase());
  });

  it('the decision API refuses a tenant or user named in upper case; a removed role is refused at once', async () => {
    const decide = (checks: object[]) =>
      t.app.inject({
        method: 'POST',
        url: '/api/v1/access/decisions',
        headers: t.asOperator,
        payload: { checks },
      });
    const lower = [{ tenantId, userId: pat.userId, permission: 'users:read' }];
    expect((await decide(lower)).json().allowed).toEqual([true]);
    refusedAsNotCanonical(
      await decide([{ tenantId: tenantId.toUpperCase(), userId: pat.userId, permission: 'users:read' }]),
      '/body/checks/0/tenantId',
    );
    refusedAsNotCanonical(
      await decide([{ tenantId, userId: pat.userId.toUpperCase(), permission: 'users:read' }]),
      '/body/checks/0/userId',
    );
    await t.app.services.access.roles.unassign(tenantId, systemContext('test'), pat.userId, 'deputy');
    expect((await decide(lower)).json().allowed).toEqual([false]);
  });
});
