/**
 * Defect (security review): every password-setting path ran the compromised-password lookup (network,
 * seconds of timeout), the history verifications and the argon2id hash (queued behind the bounded
 * hasher) while holding the tenant's transaction. A flood of such requests held every pooled connection
 * and sign-ins stalled. The doubles below run inside that slow work and look at the database: no
 * transaction may be open for the request while they run.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import type { PasswordHasher } from '../src/identity/index.ts';
import { csrfTokenFor } from '../src/identity/session-tokens.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { buildTestApp, engineUnderTest, seedTenant, type TestApp } from './helpers.ts';
import {
  adminSession,
  changeSettingsAsApproved,
  inviteAndAccept,
  linkFromOutbox,
  strongPassword,
} from './identity-helpers.ts';

let t: TestApp;
let admin: Awaited<ReturnType<typeof adminSession>>;
const slug = 'hash-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
const post = (url: string, payload: object, headers: Record<string, string> = {}) =>
  t.app.inject({ method: 'POST', url, payload, headers });

/** What each double saw: which slow step ran, and what held the database then (null: nothing). */
const seen: { step: string; held: string | null }[] = [];
let watching = false;

/**
 * Whether the app holds a transaction right now. Called from inside the doubles while one request runs.
 * PGlite is one backend behind a lock that a transaction holds until it ends: a query from here would
 * wait for it for ever, so a held lock is reported instead, and a free one proven by a query completing.
 * On PostgreSQL a transaction waiting for the hasher shows as 'idle in transaction', and its pooled
 * connection as checked out.
 */
/**
 * What holds the database while a hash runs, or null. The app's background jobs (checkpoints, alerts,
 * mail) also take connections for a moment, so a busy answer is asked again a few times before it
 * counts: the request's own transaction (the old code) stays open through the hash, a job's does not.
 */
async function heldNow(): Promise<string | null> {
  let held: string | null = null;
  for (let attempt = 0; attempt < 25; attempt++) {
    held = await heldOnce();
    if (held === null) return null;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return held;
}

async function heldOnce(): Promise<string | null> {
  const engine = t.database.engine;
  if (engine.kind === 'pglite') {
    if (engine.stats().idle === 0) return 'the embedded database is held';
    await t.db.ping();
    return null;
  }
  const stats = engine.stats();
  const rows = await engine.asOwner((owner) =>
    owner.query<{ state: string }>(
      `SELECT state FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'rampart'
          AND state LIKE 'idle in transaction%'`,
    ),
  );
  if (rows.length > 0) return `${rows.length} app session(s) idle in transaction`;
  if (stats.total !== stats.idle) return `${stats.total - stats.idle} pooled connection(s) checked out`;
  return null;
}

async function watch(step: string) {
  if (watching) seen.push({ step, held: await heldNow() });
}

/**
 * Holds the first hash until a second one arrives, so two redemptions of one link are both screened
 * before either is stored. It lets go early when the second request is blocked on the database instead
 * (the old code: the first held the link's transaction while hashing), which the test then reports.
 */
const gate = {
  armed: false,
  arrived: 0,
  overlapped: false,
  release: () => {},
  async pass() {
    if (!this.armed) return;
    this.arrived += 1;
    if (this.arrived >= 2) {
      this.overlapped = true;
      this.release();
      return;
    }
    const released = new Promise<void>((resolve) => {
      this.release = resolve;
    });
    let open = true;
    void released.then(() => {
      open = false;
    });
    while (open && !(await secondIsBlocked())) {
      await Promise.race([released, new Promise((r) => setTimeout(r, 20))]);
    }
  },
};

async function secondIsBlocked(): Promise<boolean> {
  const engine = t.database.engine;
  if (engine.kind === 'pglite') return engine.stats().waiting > 0;
  const rows = await engine.asOwner((owner) =>
    owner.query(
      `SELECT 1 FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = 'rampart' AND wait_event_type = 'Lock'`,
    ),
  );
  return rows.length > 0;
}

/**
 * Something another request does while the next hash runs (once). Only when nothing is held: with the
 * old code the request's own transaction was open here, and the change would have waited for it.
 */
const meanwhile = {
  run: null as (() => Promise<void>) | null,
  ran: false,
  async pass() {
    const run = this.run;
    if (!run) return;
    this.run = null;
    if ((await heldNow()) !== null) return;
    await run();
    this.ran = true;
  },
  set(run: () => Promise<void>) {
    this.run = run;
    this.ran = false;
  },
};

const watchedHasher = (real: PasswordHasher): PasswordHasher => ({
  ...real,
  async hash(password) {
    await watch('hash');
    await gate.pass();
    await meanwhile.pass();
    return real.hash(password);
  },
  async verify(stored, password) {
    await watch('verify');
    return real.verify(stored, password);
  },
});

beforeAll(async () => {
  t = await buildTestApp({
    hasher: watchedHasher,
    breached: (real) => ({
      async check(password) {
        await watch('breached');
        return real.check(password);
      },
    }),
  });
  await seedTenant(t, slug);
  admin = await adminSession(t, slug);
});
afterAll(async () => {
  await t?.close();
});

/** Runs one request with the doubles watching; returns what they saw. */
async function watched<R>(run: () => Promise<R>): Promise<{ result: R; steps: typeof seen }> {
  seen.length = 0;
  watching = true;
  try {
    const result = await run();
    return { result, steps: [...seen] };
  } finally {
    watching = false;
  }
}

const tenantId = async () => asTenantId((await t.app.services.tenancy.get(slug)).id);

async function events(action: string) {
  return t.db.withTenant<AuditTables, { outcome: string; target_id: string | null; details: unknown }[]>(
    await tenantId(),
    (tx) =>
      tx
        .selectFrom('audit_events')
        .select(['outcome', 'target_id', 'details'])
        .where('action', '=', action)
        .execute(),
  );
}

function expectNothingHeld(steps: typeof seen, expected: string[]) {
  for (const step of expected) expect(steps.map((s) => s.step)).toContain(step);
  expect(steps.filter((s) => s.held !== null)).toEqual([]);
}

describe(`no transaction open while a new password is screened and hashed (${engineUnderTest})`, () => {
  it('accepting an invitation', async () => {
    const email = 'invited@hash-co.test';
    const invited = await post(api('/users'), { email, role: 'member' }, admin.headers);
    expect(invited.statusCode).toBe(201);
    const { token } = await linkFromOutbox(t, email);
    const { result, steps } = await watched(() =>
      post(api('/invitations/accept'), { token, password: strongPassword }),
    );
    expect(result.statusCode).toBe(200);
    expectNothingHeld(steps, ['breached', 'hash']);
  });

  it('signing up', async () => {
    await changeSettingsAsApproved(t, slug, (s) => {
      s.selfSignup = true;
    });
    const { result, steps } = await watched(() =>
      post(api('/signup'), { email: 'self@hash-co.test', displayName: 'Self', password: strongPassword }),
    );
    expect(result.statusCode).toBeLessThan(300);
    expectNothingHeld(steps, ['breached', 'hash']);
    expect((await events('identity.user.signup')).map((e) => e.outcome)).toEqual(['success']);
  });

  it('resetting a forgotten password (history checked too)', async () => {
    const email = 'forgetful@hash-co.test';
    await inviteAndAccept(t, slug, admin, email);
    expect((await post(api('/password/forgot'), { email })).statusCode).toBeLessThan(300);
    const { token } = await linkFromOutbox(t, email);
    const { result, steps } = await watched(() =>
      post(api('/password/reset'), { token, password: 'Quiet-Harbour-Lantern-58' }),
    );
    expect(result.statusCode).toBe(200);
    expectNothingHeld(steps, ['breached', 'verify', 'hash']);
  });

  it('changing the password (current password, history and hash)', async () => {
    const email = 'changer@hash-co.test';
    await inviteAndAccept(t, slug, admin, email);
    const session = await t.app.services.identity.signIn(
      { id: await tenantId(), slug },
      email,
      strongPassword,
      'cookie',
      systemContext('test'),
    );
    const headers = {
      cookie: `rampart_session=${session.token}`,
      'x-csrf-token': csrfTokenFor(t.app.services.identity.deps, session.sessionId),
    };
    const { result, steps } = await watched(() =>
      post(
        api('/me/password'),
        { currentPassword: strongPassword, newPassword: 'Amber-Glacier-Violin-73' },
        headers,
      ),
    );
    expect(result.statusCode).toBeLessThan(300);
    expectNothingHeld(steps, ['breached', 'verify', 'hash']);
  });

  it('setting up an operator', async () => {
    const issued = await t.app.services.operators.create(systemContext('test'), 'new-op@ops.test', 'Op');
    const token = new URL(issued.setupLink).searchParams.get('token') ?? '';
    const { result, steps } = await watched(() =>
      post('/api/v1/operator/setup', { token, password: 'Operator-Long-Passphrase-9' }),
    );
    expect(result.statusCode).toBe(200);
    expectNothingHeld(steps, ['breached', 'hash']);
  });
});

describe(`a reset link used twice at once (${engineUnderTest})`, () => {
  it('sets the password once, though both requests passed the link check and were screened', async () => {
    const email = 'twice@hash-co.test';
    const { user } = await inviteAndAccept(t, slug, admin, email);
    expect((await post(api('/password/forgot'), { email })).statusCode).toBeLessThan(300);
    const { token } = await linkFromOutbox(t, email);
    const tenant = await tenantId();
    const history = () =>
      t.db.withTenant<TenantIdentityTables, number>(tenant, async (tx) =>
        Number(
          (
            await tx
              .selectFrom('password_history')
              .select((eb) => eb.fn.countAll().as('n'))
              .where('user_id', '=', user.id)
              .executeTakeFirstOrThrow()
          ).n,
        ),
      );
    const before = await history();
    const passwords = ['First-Winter-Orchard-64', 'Second-Summer-Meadow-27'];
    gate.armed = true;
    let answers: Awaited<ReturnType<typeof post>>[];
    try {
      answers = await Promise.all(
        passwords.map((password) => post(api('/password/reset'), { token, password })),
      );
    } finally {
      gate.armed = false;
      gate.release();
    }
    // Both were screened before either stored: the race was really run (the old code never got here).
    expect(gate.overlapped).toBe(true);
    expect(answers.map((a) => a.statusCode).sort()).toEqual([200, 400]);
    const loser = answers.find((a) => a.statusCode === 400);
    expect(loser?.json().code).toBe('token_invalid');
    expect(await history()).toBe(before + 1);
    expect((await events('identity.password.reset')).filter((e) => e.target_id === user.id)).toHaveLength(1);
    const refused = (await events('identity.link.refused')).filter((e) => e.target_id === user.id);
    expect(refused.map((e) => e.details)).toEqual([{ purpose: 'reset_password', reason: 'used' }]);
    const winner = passwords[answers.findIndex((a) => a.statusCode === 200)] ?? '';
    const other = passwords.find((p) => p !== winner) ?? '';
    expect((await post(api('/auth/signin'), { email, password: winner })).statusCode).toBe(200);
    expect((await post(api('/auth/signin'), { email, password: other })).statusCode).toBe(401);
  });
});

describe(`the write re-checks what the screening relied on (${engineUnderTest})`, () => {
  it('a policy tightened while the password was hashed: screened again, the rule named, the link kept', async () => {
    const email = 'policy@hash-co.test';
    await inviteAndAccept(t, slug, admin, email);
    expect((await post(api('/password/forgot'), { email })).statusCode).toBeLessThan(300);
    const { token } = await linkFromOutbox(t, email);
    const tenant = { id: await tenantId(), slug };
    const settings = t.app.services.identity.settings;
    const before = await settings.get(tenant);
    meanwhile.set(async () => {
      await settings.update(tenant, systemContext('test'), {
        ...before,
        passwordPolicy: { ...before.passwordPolicy, minLength: 30 },
      });
    });
    try {
      const refused = await post(api('/password/reset'), { token, password: 'Quiet-Harbour-Lantern-58' });
      expect(meanwhile.ran).toBe(true);
      expect(refused.statusCode).toBe(422);
      expect(refused.json().errors).toEqual([
        { pointer: '/policy/min_length', message: 'Use at least 30 characters.' },
      ]);
      // The refused attempt did not use the link up.
      const long = 'Quiet-Harbour-Lantern-Meadow-Signal-58';
      expect((await post(api('/password/reset'), { token, password: long })).statusCode).toBe(200);
      expect((await post(api('/auth/signin'), { email, password: long })).statusCode).toBe(200);
    } finally {
      meanwhile.run = null;
      await settings.update(tenant, systemContext('test'), before);
    }
  });

  it('a password reset while a change was hashed: the change is refused and audited, the reset stands', async () => {
    const email = 'raced@hash-co.test';
    const { user } = await inviteAndAccept(t, slug, admin, email);
    const tenant = { id: await tenantId(), slug };
    const identity = t.app.services.identity;
    const session = await identity.signIn(tenant, email, strongPassword, 'cookie', systemContext('test'));
    const headers = {
      cookie: `rampart_session=${session.token}`,
      'x-csrf-token': csrfTokenFor(identity.deps, session.sessionId),
    };
    const viaReset = 'Copper-Lighthouse-Thistle-19';
    meanwhile.set(async () => {
      await identity.accounts.forgotPassword(tenant, systemContext('test'), email);
      const { token } = await linkFromOutbox(t, email);
      await identity.accounts.resetPassword(tenant, systemContext('test'), token, viaReset);
    });
    const change = await post(
      api('/me/password'),
      { currentPassword: strongPassword, newPassword: 'Amber-Glacier-Violin-73' },
      headers,
    );
    expect(meanwhile.ran).toBe(true);
    expect(change.statusCode).toBe(401);
    expect(change.json().code).toBe('invalid_credentials');
    const changed = (await events('identity.password.changed')).filter((e) => e.target_id === user.id);
    expect(changed.map((e) => [e.outcome, e.details])).toEqual([
      ['failure', { reason: 'changed_meanwhile' }],
    ]);
    expect((await post(api('/auth/signin'), { email, password: viaReset })).statusCode).toBe(200);
  });
});
