/**
 * Defect (security review, low): "every sign-in attempt writes an audit event" did not hold for two kinds
 * of refusal. The per-address failure budget's refusal (429 `throttled`) recorded nothing, so once a
 * credential-stuffing run had used up its address's budget the trail no longer named the accounts it
 * went on trying; and a busy hasher's refusal (503 `busy`) gave the attempt back without recording it
 * (operator sign-in already audited its own). Both held for the current-password check too (password
 * change, enrolment start, authenticator removal). Each refusal is now a failure of the path's action
 * with `reason: 'throttled'` or `'busy'`, shaped like a wrong password's event; the throttled ones join
 * the address's open `signin.failures` alert instead of raising another.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { HasherBusyError } from '../src/identity/passwords/index.ts';
import { csrfTokenFor } from '../src/identity/session-tokens.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId, type TenantTx } from '../src/platform/db/index.ts';
import { buildTestApp, engineUnderTest, seedTenant, type TestApp } from './helpers.ts';
import { adminSession, inviteAndAccept, strongPassword } from './identity-helpers.ts';

let t: TestApp;
let admin: Awaited<ReturnType<typeof adminSession>>;
const slug = 'refusal-co';
/** A tenant of its own for the alert, so that the other tests' failures stay out of its counts. */
const alertSlug = 'refusal-alert-co';
const api = (path: string, tenant = slug) => `/api/v1/t/${tenant}${path}`;

beforeAll(async () => {
  t = await buildTestApp();
  await seedTenant(t, slug);
  await seedTenant(t, alertSlug);
  admin = await adminSession(t, slug);
});
afterAll(async () => {
  await t?.close();
});

type Tables = TenantIdentityTables & AuditTables;
const tenantIdOf = async (tenant: string) => (await t.app.services.tenancy.get(tenant)).id;
async function inTenant<R>(tenant: string, fn: (tx: TenantTx<Tables>) => Promise<R>) {
  return t.db.withTenant<Tables, R>(asTenantId(await tenantIdOf(tenant)), fn);
}

interface Event {
  id: string;
  outcome: string;
  target_id: string | null;
  details: unknown;
}
/** The events of an action naming `email` (sign-in) or targeting `userId` (current password), oldest first. */
const events = (action: string, tenant = slug) =>
  inTenant(tenant, (tx) =>
    tx
      .selectFrom('audit_events')
      .select(['id', 'outcome', 'target_id', 'details'])
      .where('action', '=', action)
      .orderBy('chain_seq')
      .execute(),
  ) as Promise<Event[]>;
const signInEvents = async (email: string, tenant = slug) =>
  (await events('identity.signin.password', tenant)).filter(
    (e) => (e.details as { email?: string } | null)?.email === email,
  );
const failuresOf = (email: string) =>
  inTenant(slug, (tx) =>
    tx.selectFrom('users').select('password_failures').where('email', '=', email).executeTakeFirstOrThrow(),
  );

const signIn = (email: string, password: string, ip: string, tenant = slug) =>
  t.app.inject({
    method: 'POST',
    url: api('/auth/signin', tenant),
    payload: { email, password },
    remoteAddress: ip,
  });

/** Uses up the address's failed sign-in budget (50 per 5 minutes) with unknown addresses. */
async function exhaustBudget(ip: string, tenant = slug) {
  for (let i = 0; i < 50; i++) {
    expect((await signIn(`nobody-${i}@${tenant}.test`, 'not-the-password', ip, tenant)).statusCode).toBe(401);
  }
}

/** Runs `work` with the hasher refusing every verification as busy (the bounded queue full). */
async function withBusyHasher<R>(work: () => Promise<R>): Promise<R> {
  const identity = t.app.services.identity;
  const real = identity.deps.hasher;
  const busy = () => Promise.reject(new HasherBusyError(2));
  identity.deps.hasher = { ...real, verify: busy, verifyDummy: busy };
  try {
    return await work();
  } finally {
    identity.deps.hasher = real;
  }
}

describe(`refused sign-in attempts are audited (${engineUnderTest})`, () => {
  it('records the attempts the per-address budget refuses (429 throttled), known account or not', async () => {
    const ip = '198.51.100.77';
    const member = 'stuffed@refusal-co.test';
    const { user } = await inviteAndAccept(t, slug, admin, member);
    await exhaustBudget(ip);
    const known = await signIn(member, 'a-stuffed-guess', ip);
    const unknown = await signIn('never-was@refusal-co.test', 'a-stuffed-guess', ip);
    // The caller reads the same refusal either way; only the trail names the account.
    for (const refused of [known, unknown]) {
      expect(refused.statusCode).toBe(429);
      expect(refused.json().code).toBe('throttled');
    }
    const answer = (res: typeof known) => {
      const { requestId: _, retryAfterSeconds: __, ...rest } = res.json();
      return rest;
    };
    expect(answer(known)).toEqual(answer(unknown));
    expect(await signInEvents(member)).toEqual([
      expect.objectContaining({
        outcome: 'failure',
        target_id: user.id,
        details: { email: member, reason: 'throttled' },
      }),
    ]);
    expect(await signInEvents('never-was@refusal-co.test')).toEqual([
      expect.objectContaining({
        outcome: 'failure',
        target_id: null,
        details: { email: 'never-was@refusal-co.test', reason: 'throttled' },
      }),
    ]);
    // Refused before the reservation: the account's lockout count is untouched.
    expect((await failuresOf(member)).password_failures).toBe(0);
  });

  it('records the attempt a busy hasher refuses (503), gives its slot back, as operator sign-in does', async () => {
    const member = 'busy-member@refusal-co.test';
    const { user } = await inviteAndAccept(t, slug, admin, member);
    const res = await withBusyHasher(() => signIn(member, 'some-guess-123', '198.51.100.78'));
    expect(res.statusCode).toBe(503);
    expect(res.json().code).toBe('busy');
    expect(await signInEvents(member)).toEqual([
      expect.objectContaining({
        outcome: 'failure',
        target_id: user.id,
        details: { email: member, reason: 'busy' },
      }),
    ]);
    expect((await failuresOf(member)).password_failures).toBe(0);
  });

  it('records the busy refusal of the dummy verification too (unknown address), without a target', async () => {
    const email = 'busy-nobody@refusal-co.test';
    const res = await withBusyHasher(() => signIn(email, 'some-guess-123', '198.51.100.79'));
    expect(res.statusCode).toBe(503);
    expect(await signInEvents(email)).toEqual([
      expect.objectContaining({ outcome: 'failure', target_id: null, details: { email, reason: 'busy' } }),
    ]);
  });

  it('records throttled and busy current-password checks under the checking action (password change)', async () => {
    const ip = '198.51.100.80';
    const member = 'changer@refusal-co.test';
    const { user } = await inviteAndAccept(t, slug, admin, member);
    const tenant = { id: asTenantId(await tenantIdOf(slug)), slug };
    const session = await t.app.services.identity.signIn(
      tenant,
      member,
      strongPassword,
      'cookie',
      systemContext('test'),
    );
    const change = () =>
      t.app.inject({
        method: 'POST',
        url: api('/me/password'),
        payload: { currentPassword: 'a-guessed-password', newPassword: 'Amber-Glacier-Violin-73' },
        headers: {
          cookie: `rampart_session=${session.token}`,
          'x-csrf-token': csrfTokenFor(t.app.services.identity.deps, session.sessionId),
        },
        remoteAddress: ip,
      });
    const ofMember = async () =>
      (await events('identity.password.changed')).filter((e) => e.target_id === user.id);

    const busy = await withBusyHasher(change);
    expect(busy.statusCode).toBe(503);
    expect(busy.json().code).toBe('busy');
    expect((await failuresOf(member)).password_failures).toBe(0);

    await exhaustBudget(ip);
    const throttled = await change();
    expect(throttled.statusCode).toBe(429);
    expect(throttled.json().code).toBe('throttled');

    expect(await ofMember()).toEqual([
      expect.objectContaining({ outcome: 'failure', details: { reason: 'busy' } }),
      expect.objectContaining({ outcome: 'failure', details: { reason: 'throttled' } }),
    ]);
  });

  it('counts throttled attempts in the address’s signin.failures alert, not in a second one', async () => {
    const ip = '198.51.100.81';
    await exhaustBudget(ip, alertSlug);
    for (const i of [1, 2, 3]) {
      expect((await signIn(`past-budget-${i}@x.test`, 'guess', ip, alertSlug)).statusCode).toBe(429);
    }
    const throttled = (await events('identity.signin.password', alertSlug)).filter(
      (e) => (e.details as { reason?: string }).reason === 'throttled',
    );
    expect(throttled).toHaveLength(3);
    const tenantId = await tenantIdOf(alertSlug);
    await t.app.services.alerts.evaluateChain(tenantId);
    const alerts = await t.database.engine.asOwner((o) =>
      o.query<{ keys: string[]; last_event_id: string }>(
        `SELECT keys, last_event_id FROM audit_alerts WHERE tenant_id = $1 AND rule = 'signin.failures'`,
        [tenantId],
      ),
    );
    // One alert for the address, which the throttled attempts joined (the last of them is its last event).
    expect(alerts).toHaveLength(1);
    expect(alerts[0]?.keys).toContain(`ip:${ip}`);
    expect(alerts[0]?.last_event_id).toBe(throttled.at(-1)?.id);
  });
});
