import type { ActionContext } from '../platform/context.ts';
import { hasherAnswer } from './credentials.ts';
import { audit, inTenant, type ServiceDeps, type TenantRef, type Tx } from './deps.ts';
import { identityError } from './errors.ts';
import { chargedAttempt } from './failure-budget.ts';
import { attemptAllowed, attemptGivenBack, countAttempt, lockOverThreshold } from './lockout.ts';
import { HasherBusyError, UnsupportedHashFormatError } from './passwords/index.ts';
import { loadSettings } from './settings.ts';

/** The password that was verified: when it was set (null: never changed since the account was made). */
export interface VerifiedPassword {
  changedAt: Date | null;
}

/** Whether the stored password is still the verified one (the same set, whatever its hash's form). */
export const stillVerified = (verified: VerifiedPassword, changedAt: Date | null) =>
  (verified.changedAt?.getTime() ?? null) === (changedAt?.getTime() ?? null);

/** The audited action a wrong current password is recorded under. */
export type CheckedFor =
  | 'identity.password.changed'
  | 'identity.mfa.enrolment_started'
  | 'identity.mfa.removed';

export const wrongCurrentPassword = () =>
  identityError('invalid_credentials', 'The current password is not correct.');

/**
 * Asking for the current password inside a session (changing it, binding a second factor) makes the
 * session a password oracle: a wrong answer counts exactly like a wrong sign-in password, against the
 * account's lockout (the same reservation, so concurrent guesses get no more than `threshold`
 * verifications) and against the client address's failed sign-in budget.
 */
export function createCurrentPasswordCheck(deps: ServiceDeps) {
  const perIp = deps.failedSignIns;

  /** Counts the attempt before verifying; null when the account is locked (or not active). */
  const reserve = (tenant: TenantRef, userId: string) =>
    inTenant(deps, tenant, async (tx) => {
      const settings = await loadSettings(tx, tenant.id);
      const now = deps.clock.now();
      const row = await tx
        .updateTable('users')
        .set(countAttempt(now))
        .where('id', '=', userId)
        .where('status', '=', 'active')
        .where('password_hash', 'is not', null)
        .where(attemptAllowed(now, settings.lockout_threshold))
        .returning(['password_hash', 'password_changed_at'])
        .executeTakeFirst();
      return row?.password_hash ? { hash: row.password_hash, changedAt: row.password_changed_at } : null;
    });

  /** Recorded in its own transaction, after the attempt's: nothing rolls the failure back. */
  async function fail(
    tenant: TenantRef,
    ctx: ActionContext,
    userId: string,
    action: CheckedFor,
    reason: 'locked' | 'wrong_current' | 'unusable_hash',
  ): Promise<never> {
    await inTenant(deps, tenant, async (tx) => {
      const locked =
        reason === 'wrong_current' &&
        (await lockOverThreshold(tx, await loadSettings(tx, tenant.id), deps.clock.now(), userId)).length > 0;
      const target = { type: 'user', id: userId };
      await audit(deps, tx, tenant, ctx, { action, outcome: 'failure', target, details: { reason } });
      if (locked) {
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.user.locked',
          outcome: 'success',
          target,
          details: { reason: 'password_failures' },
        });
      }
    });
    throw wrongCurrentPassword();
  }

  /** The attempt counts no more (`one`: only this attempt's count). */
  const uncount = (tx: Tx, userId: string, delta: 'all' | 'one') =>
    tx
      .updateTable('users')
      .set(delta === 'all' ? { password_failures: 0 } : attemptGivenBack())
      .where('id', '=', userId)
      .execute();

  /** The current password was right: the attempt counts no more. */
  const clearFailures = (tenant: TenantRef, userId: string, delta: 'all' | 'one') =>
    inTenant(deps, tenant, (tx) => uncount(tx, userId, delta));

  /**
   * An attempt refused before any verdict: the address's budget used up (`throttled`), or the hasher at
   * capacity (`busy`) or failing (`error`), whose reserved slot (`reserved`) is given back. Still an
   * attempt at the password, audited like a wrong one, in its own short transaction.
   */
  const refused = (
    tenant: TenantRef,
    ctx: ActionContext,
    userId: string,
    action: CheckedFor,
    reason: 'throttled' | 'busy' | 'error',
    reserved = false,
  ) =>
    inTenant(deps, tenant, async (tx) => {
      if (reserved) await uncount(tx, userId, 'one');
      const target = { type: 'user', id: userId };
      await audit(deps, tx, tenant, ctx, { action, outcome: 'failure', target, details: { reason } });
    });

  /** The hasher never evaluated the attempt (busy: 503): not counted against the user, but audited. */
  async function unevaluated(
    tenant: TenantRef,
    ctx: ActionContext,
    userId: string,
    action: CheckedFor,
    reserved: boolean,
    error: unknown,
  ): Promise<never> {
    await refused(tenant, ctx, userId, action, error instanceof HasherBusyError ? 'busy' : 'error', reserved);
    throw hasherAnswer(error);
  }

  /** The dummy verification of an attempt with no hash to verify (locked, or unusable). */
  async function runDummy(
    tenant: TenantRef,
    ctx: ActionContext,
    userId: string,
    action: CheckedFor,
    reserved: boolean,
    password: string,
  ) {
    try {
      await deps.hasher.verifyDummy(password);
    } catch (error) {
      await unevaluated(tenant, ctx, userId, action, reserved, error);
    }
  }

  return {
    /**
     * Verifies the user's current password outside any transaction, counted as above. Returns when the
     * verified password was set (`password_changed_at`: a later write checks the password did not change
     * meanwhile; not the hash, which the legacy-wrapping job rewrites for the same password); throws
     * invalid_credentials (wrong or locked, alike), throttled, or busy (not counted).
     */
    async verify(
      tenant: TenantRef,
      ctx: ActionContext,
      userId: string,
      current: string,
      action: CheckedFor,
    ): Promise<VerifiedPassword> {
      return chargedAttempt(
        perIp,
        ctx,
        () => check(tenant, ctx, userId, current, action),
        () => refused(tenant, ctx, userId, action, 'throttled'),
      );
    },
    clearFailures,
  };

  async function check(
    tenant: TenantRef,
    ctx: ActionContext,
    userId: string,
    current: string,
    action: CheckedFor,
  ): Promise<VerifiedPassword> {
    // As received: the hasher tries the forms a stored hash may have been made from (sign-in.ts).
    const password = current;
    const reserved = await reserve(tenant, userId);
    if (reserved === null) {
      await runDummy(tenant, ctx, userId, action, false, password);
      return fail(tenant, ctx, userId, action, 'locked');
    }
    let ok: boolean;
    try {
      ok = (await deps.hasher.verify(reserved.hash, password)).ok;
    } catch (error) {
      // Not evaluated (overload): the attempt must not count against the user.
      if (!(error instanceof UnsupportedHashFormatError))
        return unevaluated(tenant, ctx, userId, action, true, error);
      // A stored hash nobody can verify (damaged): refused like a wrong password, never a 500.
      await runDummy(tenant, ctx, userId, action, true, password);
      return fail(tenant, ctx, userId, action, 'unusable_hash');
    }
    if (!ok) return fail(tenant, ctx, userId, action, 'wrong_current');
    return { changedAt: reserved.changedAt };
  }
}
