import { expect } from 'vitest';
import { type ActionContext, systemContext } from '../src/platform/context.ts';
import type { TestApp } from './helpers.ts';
import {
  adminSession,
  inviteAndAccept,
  inviteTenantAdmin,
  linkFromOutbox,
  strongPassword,
  totpCode,
} from './identity-helpers.ts';

export interface Person {
  userId: string;
  email: string;
  headers: { authorization: string };
}

/**
 * A tenant admin, through the real invitation and TOTP enrolment, with their user id. With a fake clock
 * that has moved away from real time, pass it so the enrolment code matches the server's time.
 */
export async function tenantAdmin(
  t: TestApp,
  slug: string,
  email = `admin@${slug}.test`,
  clock?: { now(): Date },
): Promise<Person & { secret: string }> {
  if (!clock) {
    const admin = await adminSession(t, slug, email);
    return { ...(await whoAmI(t, slug, admin.headers)), email, secret: admin.secret };
  }
  await inviteTenantAdmin(t, slug, email);
  const { token } = await linkFromOutbox(t, email);
  const post = (url: string, payload: object, headers: Record<string, string> = {}) =>
    t.app.inject({ method: 'POST', url: `/api/v1/t/${slug}${url}`, payload, headers });
  expect((await post('/invitations/accept', { token, password: strongPassword })).statusCode).toBe(200);
  const first = (await post('/auth/signin', { email, password: strongPassword })).json();
  const auth = { authorization: `Bearer ${first.token}` };
  const { secret } = (await post('/me/mfa/totp', {}, auth)).json();
  const done = await post('/me/mfa/totp/confirm', { code: totpCode(secret, clock.now().getTime()) }, auth);
  expect(done.statusCode).toBe(200);
  const headers = { authorization: `Bearer ${done.json().token}` };
  return { ...(await whoAmI(t, slug, headers)), email, secret };
}

async function whoAmI(t: TestApp, slug: string, headers: { authorization: string }) {
  const me = await t.app.inject({ url: `/api/v1/t/${slug}/me`, headers });
  expect(me.statusCode).toBe(200);
  return { userId: me.json().user.id as string, headers };
}

/** A member invited by `admin`, signed in with a bearer session. */
export async function member(t: TestApp, slug: string, admin: Person, email: string): Promise<Person> {
  const { user, accepted } = await inviteAndAccept(t, slug, admin, email);
  expect(accepted.statusCode).toBe(200);
  const signIn = await t.app.inject({
    method: 'POST',
    url: `/api/v1/t/${slug}/auth/signin`,
    payload: { email, password: strongPassword },
  });
  expect(signIn.json().stage).toBe('active');
  return { userId: user.id, email, headers: { authorization: `Bearer ${signIn.json().token}` } };
}

/**
 * An operator signed in interactively (password + TOTP) at the clock's current time: the token kind
 * that may ask for and use elevations. `clock` must be the app's (a fake clock started at real time).
 */
export async function operatorSession(
  t: TestApp,
  email: string,
  clock: { now(): Date; advance(ms: number): void },
): Promise<{
  operatorId: string;
  headers: { authorization: string };
  apiHeaders: { authorization: string };
  expiresAt: Date;
  /** Signs the same operator in again (password + the next TOTP code): a fresh second factor. */
  signInAgain(): Promise<{ authorization: string }>;
}> {
  const password = 'Operator-Long-Passphrase-1';
  const issued = await t.app.services.operators.create(systemContext('test'), email, 'Op');
  const token = new URL(issued.setupLink).searchParams.get('token') ?? '';
  const post = (url: string, payload: object) => t.app.inject({ method: 'POST', url, payload });
  const begin = await post('/api/v1/operator/setup', { token, password });
  expect(begin.statusCode).toBe(200);
  const { secret } = begin.json() as { secret: string };
  const confirm = await post('/api/v1/operator/setup/confirm', {
    token,
    code: totpCode(secret, clock.now().getTime()),
  });
  expect(confirm.statusCode).toBe(200);
  const signInAgain = async () => {
    // A code is accepted once: sign in with the next one.
    clock.advance(30_000);
    const signIn = await post('/api/v1/operator/signin', {
      email,
      password,
      code: totpCode(secret, clock.now().getTime()),
    });
    expect(signIn.statusCode, signIn.body).toBe(200);
    return signIn;
  };
  const signIn = await signInAgain();
  return {
    operatorId: issued.operatorId,
    signInAgain: async () => ({ authorization: `Bearer ${(await signInAgain()).json().token}` }),
    headers: { authorization: `Bearer ${signIn.json().token}` },
    // The same operator's API token: no second factor behind it.
    apiHeaders: { authorization: `Bearer ${issued.token}` },
    expiresAt: new Date(signIn.json().expiresAt as string),
  };
}

const derivedFromTrail = new Set([
  'audit_events',
  'audit_chain_heads',
  'audit_alert_cursors',
  'audit_alerts',
  'audit_alert_deliveries',
]);

/** Every row of every table (as the owner, so row-level security hides nothing), audit events apart. */
export async function databaseState(
  t: TestApp,
): Promise<{ tables: Record<string, unknown>; audit: string[] }> {
  return t.database.engine.asOwner(async (o) => {
    const tables = (await o.query(
      `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`,
    )) as { tablename: string }[];
    const state: Record<string, unknown> = {};
    for (const { tablename } of tables) {
      // The audit trail and what follows from it: events, the chain heads every event moves (see
      // src/audit/chain.ts), and the anomaly rules' cursors, alerts and deliveries (a burst of refused
      // requests is itself an anomaly: src/audit/alert-matchers.ts).
      if (derivedFromTrail.has(tablename)) continue;
      const [row] = (await o.query(
        `SELECT coalesce(json_agg(x ORDER BY x::text), '[]'::json) AS rows FROM "${tablename}" x`,
      )) as { rows: unknown }[];
      state[tablename] = row?.rows;
    }
    // Alerts and read counts are written by background jobs some time after what they are about: leave
    // them out.
    const audit = (await o.query(
      `SELECT action FROM audit_events WHERE action NOT IN ('audit.alert.raised', 'audit.reads.counted')
       ORDER BY occurred_at, id`,
    )) as { action: string }[];
    return { tables: state, audit: audit.map((a) => a.action) };
  });
}

/**
 * The person enrols TOTP and continues with the rotated session, which has given a second factor: a
 * role beyond member brings a user under the default 2FA-for-staff at once, live sessions included, so
 * a member about to be granted one needs this to keep using their session. `clock`: the app's, when fake.
 */
export async function withSecondFactor<P extends Person>(
  t: TestApp,
  slug: string,
  person: P,
  clock?: { now(): Date },
): Promise<P & { secret: string }> {
  const post = (url: string, payload: object) =>
    t.app.inject({ method: 'POST', url: `/api/v1/t/${slug}${url}`, payload, headers: person.headers });
  const { secret } = (await post('/me/mfa/totp', {})).json();
  const now = (clock?.now() ?? new Date()).getTime();
  const done = await post('/me/mfa/totp/confirm', { code: totpCode(secret, now) });
  expect(done.statusCode, done.body).toBe(200);
  return { ...person, secret, headers: { authorization: `Bearer ${done.json().token}` } };
}

/** What a service is called with on behalf of a person outside a request (no address, agent or id). */
export const actingAs = (person: { userId: string }): ActionContext => ({
  actor: { type: 'user', id: person.userId },
  ip: null,
  userAgent: null,
  requestId: null,
});

/** The same for an operator, under the elevation `elevationId` when given. */
export const actingAsOperator = (operatorId: string, elevationId?: string): ActionContext => ({
  actor: { type: 'operator', id: operatorId, ...(elevationId === undefined ? {} : { elevationId }) },
  ip: null,
  userAgent: null,
  requestId: null,
});
