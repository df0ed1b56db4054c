// The second-factor lock escalates (security review, 2026-11-27): after 5 wrong codes a user's second
// factor (and an operator's sign-in) was locked for a fixed 15 minutes and the count then started afresh,
// so whoever held the password could guess codes without end, 480 a day. Each lock now doubles the one
// before it (15 min, 30, 60, … at most 24 h) until a right code or a second-factor reset (migration 0081;
// an administrator's unlock lifts the password lock only, security review).
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { createOperatorAdmin, toTenantRef } from '../src/identity/index.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId, type TenantTx } from '../src/platform/db/index.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { adminSession, strongPassword, totpCode } from './identity-helpers.ts';

const clock = fakeClock(new Date('2026-03-02T08:00:00Z'));
const at = () => clock.now().getTime();
const minutes = (n: number) => clock.advance(n * 60_000);
const slug = 'mfa-lock-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const operatorPassword = 'Operator-Long-Passphrase-1';
let t: TestApp;

beforeAll(async () => {
  t = await buildTestApp({
    clock,
    env: { RATE_LIMITS: 'signin.ip=100000/60,signin.account=100000/60' },
  });
  await seedTenant(t, slug);
});
afterAll(async () => {
  await t?.close();
});

const post = (url: string, payload: object, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url, payload, headers });

/** A six-digit code that is none of the secret's codes accepted now (±1 step). */
function wrongCode(secret: string): string {
  const valid = [-30_000, 0, 30_000].map((d) => totpCode(secret, at() + d));
  return ['000000', '111111', '222222', '333333'].find((c) => !valid.includes(c)) ?? '444444';
}

type Tables = TenantIdentityTables & AuditTables;
async function inTenant<R>(fn: (tx: TenantTx<Tables>) => Promise<R>) {
  const id = asTenantId((await t.app.services.tenancy.get(slug)).id);
  return t.db.withTenant<Tables, R>(id, fn);
}

describe('a user’s second-factor lock doubles with each lockout', () => {
  async function enrolledUser(email: string) {
    const { secret } = await adminSession(t, slug, email, at);
    /** A fresh sign-in (an mfa-stage session ends after 30 idle minutes) and one code. */
    const code = async (value: string) => {
      const signIn = await post(api('/auth/signin'), { email, password: strongPassword });
      expect(signIn.json().stage).toBe('mfa');
      return post(
        api('/auth/second-factor'),
        { code: value },
        { authorization: `Bearer ${signIn.json().token}` },
      );
    };
    const lockOut = async () => {
      for (let i = 0; i < 5; i++) {
        const res = await code(wrongCode(secret));
        expect(res.statusCode).toBe(401);
        expect(res.json().code).toBe('invalid_code');
      }
    };
    /** The right code, in a time step not used before (a used step is refused as a replay). */
    const right = async () => {
      clock.advance(30_000);
      return code(totpCode(secret, at()));
    };
    const user = await inTenant((tx) =>
      tx.selectFrom('users').select('id').where('email', '=', email).executeTakeFirstOrThrow(),
    );
    return { id: user.id, lockOut, right };
  }

  /** The user's locks as the administrators' user view shows them. */
  const shown = async (userId: string) => {
    const tenant = toTenantRef(await t.app.services.tenancy.get(slug));
    const { locked, secondFactorLocked } = await t.app.services.identity.accounts.get(tenant, userId);
    return { locked, secondFactorLocked };
  };

  const lockEvents = (userId: string) =>
    inTenant((tx) =>
      tx
        .selectFrom('audit_events')
        .select('details')
        .where('action', '=', 'identity.signin.second_factor')
        .where('outcome', '=', 'failure')
        .where('target_id', '=', userId)
        .where(sql<boolean>`(details->>'locked')::boolean`)
        .orderBy('chain_seq')
        .execute(),
    );

  it('locks 15 minutes, then 30, then 60: a right code inside a later lock is refused', async () => {
    const user = await enrolledUser('twice@mfa-lock-co.test');
    await user.lockOut();
    // What an administrator sees: the second factor locked, the password not.
    expect(await shown(user.id)).toEqual({ locked: false, secondFactorLocked: true });
    minutes(14);
    expect((await user.right()).json().code).toBe('invalid_code');
    minutes(2); // the first lock (15 minutes) is over
    expect(await shown(user.id)).toEqual({ locked: false, secondFactorLocked: false });
    await user.lockOut();
    minutes(16);
    // Regression: the second lock lasted 15 minutes too, and this code was accepted.
    const inside = await user.right();
    expect(inside.statusCode).toBe(401);
    expect(inside.json().code).toBe('invalid_code');
    minutes(15); // 31 minutes after the second lock
    await user.lockOut();
    minutes(31);
    expect((await user.right()).json().code).toBe('invalid_code');
    minutes(30); // 61 minutes after the third lock
    expect((await user.right()).statusCode).toBe(200);
    expect((await lockEvents(user.id)).map((e) => e.details)).toEqual([
      { locked: true, lockouts: 1, lockSeconds: 900 },
      { locked: true, lockouts: 2, lockSeconds: 1800 },
      { locked: true, lockouts: 3, lockSeconds: 3600 },
    ]);
  });

  it('a right code resets the escalation: the next lock is 15 minutes again', async () => {
    const user = await enrolledUser('reset@mfa-lock-co.test');
    await user.lockOut();
    minutes(16);
    await user.lockOut();
    minutes(16);
    expect((await user.right()).json().code).toBe('invalid_code'); // the second lock: 30 minutes
    minutes(15);
    expect((await user.right()).statusCode).toBe(200);
    await user.lockOut();
    minutes(16);
    expect((await user.right()).statusCode).toBe(200);
  });

  it('an administrator’s unlock lifts the password lock only; the second-factor reset ends the lock', async () => {
    const user = await enrolledUser('unlock@mfa-lock-co.test');
    await user.lockOut();
    minutes(16);
    await user.lockOut();
    minutes(16);
    expect((await user.right()).json().code).toBe('invalid_code'); // the second lock: 30 minutes
    const tenant = { id: asTenantId((await t.app.services.tenancy.get(slug)).id), slug };
    // Security review: any users:write holder's unlock gave whoever had the password 5 more codes, as
    // often as they liked. The unlock leaves the second factor's lock and its escalation alone.
    await t.app.services.identity.accounts.unlock(tenant, systemContext('test'), user.id);
    expect(await shown(user.id)).toEqual({ locked: false, secondFactorLocked: true });
    expect((await user.right()).json().code).toBe('invalid_code');
    minutes(15); // the second lock is over; the next is the third, 60 minutes
    await user.lockOut();
    minutes(31);
    expect((await user.right()).json().code).toBe('invalid_code');
    // The administrator's reset removes the authenticator and ends the lock and its escalation.
    await t.app.services.identity.mfa.reset(tenant, systemContext('test'), user.id);
    expect(await shown(user.id)).toEqual({ locked: false, secondFactorLocked: false });
  });
});

describe('an operator’s sign-in lock doubles with each lockout', () => {
  async function enrolledOperator(email: string) {
    const issued = await t.app.services.operators.create(systemContext('test'), email, 'Op');
    const token = new URL(issued.setupLink).searchParams.get('token') ?? '';
    const begin = await post('/api/v1/operator/setup', { token, password: operatorPassword });
    expect(begin.statusCode, begin.body).toBe(200);
    const { secret } = begin.json() as { secret: string };
    const confirm = await post('/api/v1/operator/setup/confirm', { token, code: totpCode(secret, at()) });
    expect(confirm.statusCode).toBe(200);
    const signIn = (code: string) =>
      post('/api/v1/operator/signin', { email, password: operatorPassword, code });
    const lockOut = async () => {
      for (let i = 0; i < 5; i++) {
        const res = await signIn(wrongCode(secret));
        expect(res.statusCode).toBe(401);
        expect(res.json().code).toBe('invalid_credentials');
      }
    };
    const right = () => {
      clock.advance(30_000);
      return signIn(totpCode(secret, at()));
    };
    return { id: issued.operatorId, lockOut, right };
  }

  const lockEvents = async (operatorId: string) => {
    const rows = await t.db.withSystem((tx) =>
      sql<{ details: unknown }>`SELECT details FROM audit_events
        WHERE action = 'identity.operator.locked' AND target_id = ${operatorId} ORDER BY chain_seq`.execute(
        tx,
      ),
    );
    return rows.rows.map((r) => r.details);
  };

  it('locks 15 minutes, then 30: a right code inside the second lock is refused', async () => {
    const op = await enrolledOperator('twice@ops.test');
    await op.lockOut();
    minutes(16);
    await op.lockOut();
    minutes(16);
    // Regression: the second lock lasted 15 minutes too, and this sign-in succeeded.
    const inside = await op.right();
    expect(inside.statusCode).toBe(401);
    expect(inside.json().code).toBe('invalid_credentials');
    minutes(15);
    expect((await op.right()).statusCode).toBe(200);
    expect(await lockEvents(op.id)).toEqual([
      { reason: 'password_failures', lockouts: 1, lockSeconds: 900 },
      { reason: 'password_failures', lockouts: 2, lockSeconds: 1800 },
    ]);
  });

  it('a successful sign-in resets the escalation, and so does an unlock', async () => {
    const op = await enrolledOperator('reset@ops.test');
    await op.lockOut();
    minutes(16);
    await op.lockOut();
    minutes(16);
    expect((await op.right()).statusCode).toBe(401); // the second lock: 30 minutes
    minutes(15);
    expect((await op.right()).statusCode).toBe(200);
    await op.lockOut();
    minutes(16);
    expect((await op.right()).statusCode).toBe(200);
    // Two locks, then an unlock: the next lock is the first again.
    await op.lockOut();
    minutes(16);
    await op.lockOut();
    const admin = createOperatorAdmin({ db: t.db, clock, bus: t.app.services.bus });
    await admin.unlock(systemContext('cli:test'), op.id);
    await op.lockOut();
    minutes(16);
    expect((await op.right()).statusCode).toBe(200);
  });
});
