import { createInvalidatedCache } from '../platform/bus/index.ts';
import type { ActionContext } from '../platform/context.ts';
import { audit, type IdentityDeps, inTenant, type ServiceDeps, type TenantRef, type Tx } from './deps.ts';
import { controlCharactersError, hasControlCharacters, normaliseEmail } from './email.ts';
import { createEmailVerification } from './email-verification.ts';
import { identityError } from './errors.ts';
import { chargedAttempt } from './failure-budget.ts';
import { createLinks } from './links.ts';
import { attemptAllowed, countAttempt, lockOverThreshold } from './lockout.ts';
import { HasherBusyError, UnsupportedHashFormatError } from './passwords/index.ts';
import type { IdentitySettings } from './policy.ts';
import { SESSIONS_TOPIC } from './session-cache.ts';
import { type SessionStage, secondFactorRequired } from './session-stage.ts';
import { createSession } from './session-tokens.ts';
import { loadSettings } from './settings.ts';
import {
  auditThrottledSignIn,
  failedSignIn,
  refuseUnevaluated,
  type Unevaluated,
} from './sign-in-refusals.ts';
import type { UserRole } from './tables.ts';

export interface SignInResult {
  stage: SessionStage;
  sessionId: string;
  token: string;
  passwordExpired: boolean;
}

/** What the reservation learnt about the account, so that success needs no second read. */
interface Account {
  userId: string;
  hash: string;
  email: string;
  role: UserRole;
  passwordChangedAt: Date | null;
  totpEnrolled: boolean;
  /** Self-signed-up and not yet confirmed: the right password gets no session (email-verification.ts). */
  mustVerifyEmail: boolean;
  /** The tenant's identity settings the reservation read (its refusal's wording, for one). */
  settings: IdentitySettings;
}

type Outcome =
  | { kind: 'unknown' }
  | { kind: 'disabled' | 'locked'; userId: string }
  | ({ kind: 'verify' } & Account);

/**
 * Identity settings per tenant, read once and kept: every sign-in needs them (lockout threshold, 2FA
 * enforcement, session lifetime). A settings change publishes `tenant:<id>` on the sessions topic
 * (settings.ts), which drops the copy on every node; the TTL bounds a lost message.
 */
function settingsCache(deps: IdentityDeps) {
  const cache = createInvalidatedCache<IdentitySettings>({
    bus: deps.bus,
    topic: SESSIONS_TOPIC,
    maxEntries: 10_000,
    ttlMs: 30_000,
    onMessage(key, c) {
      if (key.startsWith('tenant:')) c.delete(key.slice('tenant:'.length));
    },
  });
  return async (tx: Tx, tenantId: string): Promise<IdentitySettings> => {
    const nowMs = deps.clock.now().getTime();
    const cached = cache.get(tenantId, nowMs);
    if (cached) return cached;
    const mark = cache.mark();
    const settings = await loadSettings(tx, tenantId);
    cache.put(tenantId, settings, mark, nowMs);
    return settings;
  };
}

/**
 * Password sign-in. Race-safe lockout: each attempt first reserves a slot by incrementing the failure
 * counter in one UPDATE guarded by the threshold, so concurrent wrong guesses cannot get more than
 * `threshold` verifications before the lock; success resets the counter. Unknown, disabled and locked
 * accounts answer exactly like a wrong password, after a dummy verification of the same cost.
 */
export function createSignIn(deps: ServiceDeps) {
  // Across accounts, per client address: credential stuffing spreads over many accounts (createIdentityService
  // gives every flow the same budget: Protect's shared limiter, or one per process without it).
  const perIp = deps.failedSignIns;
  const settingsOf = settingsCache(deps);
  const verification = createEmailVerification(deps, createLinks(deps));

  /**
   * A count left at the threshold without a lock (an attempt whose verdict never came: the process
   * died, or an error after the reservation) would refuse every attempt for good, in either lockout
   * mode, while the account shows as unlocked. The refused attempt turns it into the lock the tenant's
   * mode gives, as the last failure would have.
   */
  async function lockLeftOver(tx: Tx, tenant: TenantRef, userId: string, ctx: ActionContext) {
    const locked = await lockOverThreshold(tx, await settingsOf(tx, tenant.id), deps.clock.now(), userId);
    if (locked.length === 0) return;
    await audit(deps, tx, tenant, ctx, {
      action: 'identity.user.locked',
      outcome: 'success',
      target: { type: 'user', id: userId },
      details: { reason: 'password_failures' },
    });
  }

  async function reserve(tenant: TenantRef, email: string, ctx: ActionContext): Promise<Outcome> {
    return inTenant(deps, tenant, async (tx) => {
      const settings = await settingsOf(tx, tenant.id);
      const now = deps.clock.now();
      // The reservation also returns what a successful sign-in needs (role, 2FA enrolment), so the
      // success transaction only writes.
      const row = await tx
        .updateTable('users')
        .set(countAttempt(now))
        .where('email', '=', email)
        .where('status', '=', 'active')
        .where('password_hash', 'is not', null)
        .where(attemptAllowed(now, settings.lockout_threshold))
        .returning([
          'id',
          'password_hash',
          'email',
          'role',
          'password_changed_at',
          'email_verification_required',
          'email_verified_at',
        ])
        .returning((eb) =>
          eb
            .exists(
              eb
                .selectFrom('user_totp as t')
                .select('t.user_id')
                .whereRef('t.user_id', '=', 'users.id')
                .where('t.confirmed_at', 'is not', null),
            )
            .as('totp_enrolled'),
        )
        .executeTakeFirst();
      if (row?.password_hash) {
        return {
          kind: 'verify',
          userId: row.id,
          hash: row.password_hash,
          email: row.email,
          role: row.role,
          passwordChangedAt: row.password_changed_at,
          totpEnrolled: Boolean(row.totp_enrolled),
          mustVerifyEmail: row.email_verification_required && row.email_verified_at === null,
          settings,
        };
      }
      // Only for the audit trail's reason: the caller answers all three alike.
      const exists = await tx
        .selectFrom('users')
        .select(['id', 'status'])
        .where('email', '=', email)
        .where('status', '!=', 'invited')
        .executeTakeFirst();
      if (!exists) return { kind: 'unknown' };
      if (exists.status === 'disabled') return { kind: 'disabled', userId: exists.id };
      await lockLeftOver(tx, tenant, exists.id, ctx);
      return { kind: 'locked', userId: exists.id };
    });
  }

  async function fail(
    tenant: TenantRef,
    ctx: ActionContext,
    email: string,
    reason: string,
    userId: string | null,
  ): Promise<never> {
    const settings = await inTenant(deps, tenant, async (tx) => {
      const settings = await settingsOf(tx, tenant.id);
      const locked =
        userId !== null &&
        reason === 'wrong_password' &&
        (await lockOverThreshold(tx, settings, deps.clock.now(), userId)).length > 0;
      await audit(deps, tx, tenant, ctx, failedSignIn(email, reason, userId));
      if (locked && userId) {
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.user.locked',
          outcome: 'success',
          target: { type: 'user', id: userId },
          details: { reason: 'password_failures' },
        });
      }
      return settings;
    });
    throw wrongCredentials(settings);
  }

  return async function signIn(
    tenant: TenantRef,
    rawEmail: string,
    rawPassword: string,
    kind: 'cookie' | 'bearer',
    ctx: ActionContext,
  ): Promise<SignInResult> {
    // Input refused before any check is no attempt: answered before the budget is charged, so that the
    // event of a throttled attempt names an address fit for the trail.
    if (hasControlCharacters(rawEmail)) throw controlCharactersError();
    // Not an address: no account has it, and the text is never written anywhere (it may be a password
    // typed into the wrong field, which the trail would keep for every reader): '' looks up nothing and
    // its failure records no address (failedSignIn).
    const email = normaliseEmail(rawEmail) ?? '';
    return chargedAttempt(
      perIp,
      ctx,
      () => attempt(tenant, email, rawPassword, kind, ctx),
      () => auditThrottledSignIn(deps, tenant, ctx, email),
    );
  };

  /** The dummy verification of an attempt with no hash to verify; a hasher that cannot run it refuses it. */
  async function runDummy(tenant: TenantRef, ctx: ActionContext, password: string, attempt: Unevaluated) {
    try {
      await deps.hasher.verifyDummy(password);
    } catch (error) {
      await refuseUnevaluated(deps, tenant, ctx, attempt, error);
    }
  }

  async function attempt(
    tenant: TenantRef,
    email: string,
    rawPassword: string,
    kind: 'cookie' | 'bearer',
    ctx: ActionContext,
  ): Promise<SignInResult> {
    // As received: the hasher tries the forms each stored hash may have been made from (an imported
    // hash of a system that did not normalise is of the password as typed; its own hashes are NFKC).
    const password = rawPassword;
    const outcome = await reserve(tenant, email, ctx);
    if (outcome.kind !== 'verify') {
      // A locked or disabled account is named as the target (the trail's per-account rules count the
      // attempts at it); the caller's answer is the same as for an unknown one.
      const userId = outcome.kind === 'unknown' ? null : outcome.userId;
      await runDummy(tenant, ctx, password, { email, userId, reserved: false });
      return fail(tenant, ctx, email, outcome.kind === 'unknown' ? 'unknown_user' : outcome.kind, userId);
    }
    const reserved: Unevaluated = { email, userId: outcome.userId, reserved: true };
    let verdict: Awaited<ReturnType<IdentityDeps['hasher']['verify']>>;
    try {
      verdict = await deps.hasher.verify(outcome.hash, password);
    } catch (error) {
      if (!(error instanceof UnsupportedHashFormatError)) {
        return refuseUnevaluated(deps, tenant, ctx, reserved, error);
      }
      // A stored hash nobody can verify (damaged or tampered with): refused like a wrong password,
      // after a dummy verification so it takes as long, and named in the audit trail as a data error.
      await runDummy(tenant, ctx, password, reserved);
      return fail(tenant, ctx, email, 'unusable_hash', outcome.userId);
    }
    if (!verdict.ok) {
      return fail(tenant, ctx, email, 'wrong_password', outcome.userId);
    }
    // Only now, with the right password: a new verification link (email-verification.ts), no session, and
    // the answer of a wrong password (its message, where sign-up is open, says to confirm the address).
    if (outcome.mustVerifyEmail) {
      const unverified = await verification.refuseUnverified(tenant, ctx, outcome.userId, email);
      if (unverified === 'disabled') return fail(tenant, ctx, email, 'disabled', outcome.userId);
      if (unverified === 'refused') {
        throw wrongCredentials(outcome.settings);
      }
    }
    const rehash = verdict.needsRehash ? await upgradedHash(deps, password) : null;
    const result = await succeed(deps, tenant, outcome, rehash, kind, ctx, settingsOf);
    // Disabled, or given another password, between the reservation and now: no session, and the same
    // answer as a wrong password.
    return typeof result === 'string' ? fail(tenant, ctx, email, result, outcome.userId) : result;
  }
}

/**
 * The answer of every failed sign-in in a tenant, whatever the reason. Where self sign-up is open it
 * also covers the right password of an address not yet confirmed: sign-up lets anyone choose the
 * password of a new address, so an answer of its own would tell, after a sign-up and a sign-in, which
 * addresses already had an account (the one signed up is refused as unconfirmed, the other's password is
 * wrong). The person who signed up reads, in the same words, to confirm first, and is mailed a new link.
 */
function wrongCredentials(settings: IdentitySettings) {
  return identityError(
    'invalid_credentials',
    settings.self_signup
      ? 'The email or password is not correct. If you signed up recently, confirm your email address ' +
          'first: check your inbox for the link we sent you.'
      : 'The email or password is not correct.',
  );
}

/**
 * The password's hash at the current parameters, or null when the hasher is at capacity: the upgrade
 * waits for a later sign-in instead of refusing this one, whose password is right (its reservation is
 * then cleared by the success like any other).
 */
async function upgradedHash(deps: IdentityDeps, password: string): Promise<string | null> {
  try {
    return await deps.hasher.hash(password);
  } catch (error) {
    if (error instanceof HasherBusyError) return null;
    throw error;
  }
}

async function succeed(
  deps: IdentityDeps,
  tenant: TenantRef,
  account: Account,
  rehash: string | null,
  kind: 'cookie' | 'bearer',
  ctx: ActionContext,
  settingsOf: (tx: Tx, tenantId: string) => Promise<IdentitySettings>,
): Promise<SignInResult | 'disabled' | 'password_changed'> {
  const { userId } = account;
  return inTenant(deps, tenant, async (tx) => {
    const settings = await settingsOf(tx, tenant.id);
    // The guards wait for a disable or a password change that holds the row and then see it (no extra
    // round trip): a password replaced while this one was verified (a reset after a compromise) signs
    // nobody in, and the upgrade of the old hash must not write it back over the new one. "Replaced" is
    // password_changed_at, which every password-setting path moves, not the hash: the background job
    // that wraps a legacy hash (wrap-legacy.ts) changes the hash of the same password, and the upgrade
    // written over its wrapped form is still right.
    const changedAt = account.passwordChangedAt;
    const reset = await tx
      .updateTable('users')
      .set({ password_failures: 0, password_lockouts: 0, ...(rehash ? { password_hash: rehash } : {}) })
      .where('id', '=', userId)
      .where('status', '=', 'active')
      .where((eb) =>
        changedAt === null
          ? eb('password_changed_at', 'is', null)
          : eb('password_changed_at', '=', changedAt),
      )
      .executeTakeFirst();
    if (reset.numUpdatedRows === 0n) {
      const now = await tx.selectFrom('users').select('status').where('id', '=', userId).executeTakeFirst();
      return now?.status === 'active' ? 'password_changed' : 'disabled';
    }
    const required = secondFactorRequired(settings.mfa_required, account.role);
    const stage: SessionStage = account.totpEnrolled ? 'mfa' : required ? 'enrol' : 'active';
    const session = await createSession(
      deps,
      tx,
      settings,
      { tenantId: tenant.id, userId, stage, kind, mfaAt: null },
      ctx,
    );
    const now = deps.clock.now();
    const passwordExpired =
      settings.max_age_days !== null &&
      account.passwordChangedAt !== null &&
      now.getTime() - account.passwordChangedAt.getTime() > settings.max_age_days * 86_400_000;
    await audit(
      deps,
      tx,
      tenant,
      { ...ctx, actor: { type: 'user', id: userId } },
      {
        action: 'identity.signin.password',
        outcome: 'success',
        target: { type: 'user', id: userId },
        details: { email: account.email, next: stage, upgraded: rehash !== null, sessionId: session.id },
      },
    );
    // An expired password leaves the session only the password change (stage `password`, computed again
    // at each request: sessions.ts); a second factor or enrolment still comes first.
    const reported: SessionStage = passwordExpired && stage === 'active' ? 'password' : stage;
    return { stage: reported, sessionId: session.id, token: session.token, passwordExpired };
  });
}
