import { sql } from 'kysely';
import type { ActionContext } from '../platform/context.ts';
import {
  hashing,
  readPasswordSubject,
  screenNewPassword,
  settingPassword,
  settingsForWrite,
  storePassword,
} from './credentials.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef } from './deps.ts';
import { identityError } from './errors.ts';
import type { createLinks } from './links.ts';
import { attemptAllowed, countAttempt, lockOverThreshold } from './lockout.ts';
import { normalisePassword } from './passwords/index.ts';
import { revokeAllInTx, type ValidSession } from './sessions.ts';
import { loadSettings } from './settings.ts';
import { createUserRepository } from './users.ts';

type FailedAttempts = NonNullable<IdentityDeps['failedSignIns']>;

/**
 * Changing the password checks the current one, so it is a password oracle for whoever holds a session:
 * a wrong current password counts exactly like a wrong sign-in password, against the account's lockout
 * (the same reservation, so concurrent guesses get no more than `threshold` verifications) and against
 * the client address's failed sign-in budget. Web only (cookie sessions), as the fact sheets promise.
 */
export function createChangePassword(
  deps: IdentityDeps,
  links: ReturnType<typeof createLinks>,
  perIp: FailedAttempts,
) {
  const wrong = () => identityError('invalid_credentials', 'The current password is not correct.');

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
        .returning('password_hash')
        .executeTakeFirst();
      return row?.password_hash ?? null;
    });

  /** Recorded in its own transaction, after the attempt's: nothing rolls the failure back. */
  async function fail(tenant: TenantRef, ctx: ActionContext, userId: string, reason: string): Promise<never> {
    if (ctx.ip) await perIp.penalty(ctx.ip, 1);
    await inTenant(deps, tenant, async (tx) => {
      const locked =
        reason === 'wrong_current' &&
        (await lockOverThreshold(tx, await loadSettings(tx, tenant.id), deps.clock.now(), userId)).length > 0;
      const target = { type: 'user', id: userId };
      await audit(deps, tx, tenant, ctx, {
        action: 'identity.password.changed',
        outcome: 'failure',
        target,
        details: { reason },
      });
      if (locked) {
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.user.locked',
          outcome: 'success',
          target,
          details: { reason: 'password_failures' },
        });
      }
    });
    throw wrong();
  }

  /**
   * The password changed (another session, a reset) after the current one was verified: what was verified
   * is no longer the current password, so the change is refused, audited in its own transaction. Not a
   * wrong guess: it counts against neither the account nor the address.
   */
  async function changedMeanwhile(tenant: TenantRef, ctx: ActionContext, userId: string): Promise<never> {
    await inTenant(deps, tenant, (tx) =>
      audit(deps, tx, tenant, ctx, {
        action: 'identity.password.changed',
        outcome: 'failure',
        target: { type: 'user', id: userId },
        details: { reason: 'changed_meanwhile' },
      }),
    );
    throw wrong();
  }

  /** The current password was right: the attempt counts no more, whatever happens to the new one. */
  const clearFailures = (tenant: TenantRef, userId: string, delta: 'all' | 'one') =>
    inTenant(deps, tenant, (tx) =>
      tx
        .updateTable('users')
        .set({ password_failures: delta === 'all' ? 0 : sql`GREATEST(password_failures - 1, 0)` })
        .where('id', '=', userId)
        .execute(),
    );

  async function throttle(ctx: ActionContext) {
    const used = ctx.ip ? await perIp.get(ctx.ip) : null;
    if (used && used.remainingPoints <= 0) {
      throw identityError('throttled', 'Too many failed sign-ins from your network; try again later.', {
        retryAfterSeconds: Math.ceil(used.msBeforeNext / 1000),
      });
    }
  }

  return async function changePassword(
    tenant: TenantRef,
    ctx: ActionContext,
    session: ValidSession,
    current: string,
    next: string,
  ): Promise<void> {
    if (session.kind !== 'cookie')
      throw identityError('web_only', 'Passwords are changed on the web only, signed in with a browser.');
    await throttle(ctx);
    const password = normalisePassword(current);
    const hash = await reserve(tenant, session.userId);
    if (hash === null) {
      await hashing(() => deps.hasher.verifyDummy(password));
      return fail(tenant, ctx, session.userId, 'locked');
    }
    let ok: boolean;
    try {
      ok = (await hashing(() => deps.hasher.verify(hash, password))).ok;
    } catch (error) {
      // Not evaluated (overload): the attempt must not count against the user.
      await clearFailures(tenant, session.userId, 'one');
      throw error;
    }
    if (!ok) return fail(tenant, ctx, session.userId, 'wrong_current');
    try {
      await settingPassword({
        read: () =>
          inTenant(deps, tenant, async (tx) => {
            const user = await createUserRepository(tx).byId(session.userId);
            if (user?.status !== 'active') throw wrong();
            const subject = await readPasswordSubject(tx, tenant.id, user);
            // The current password was verified against this hash: a change since then makes it stale.
            if (subject.currentHash !== hash) throw new PasswordChangedMeanwhile();
            return subject;
          }),
        screen: (subject) => screenNewPassword(deps, subject, next),
        write: (subject, newHash) =>
          inTenant(deps, tenant, async (tx) => {
            await settingsForWrite(tx, subject);
            // Reset links go first: a disable takes the links' row locks before the user's, and so do we.
            await links.voidLinks(tx, session.userId, 'reset_password');
            const user = await createUserRepository(tx).lockById(session.userId);
            if (user?.status !== 'active') throw wrong();
            if (user.password_hash !== hash) throw new PasswordChangedMeanwhile();
            await storePassword(deps, tx, user, newHash);
            // Other sessions end; this one stays.
            await revokeAllInTx(deps, tx, user.id, session.id);
            await audit(deps, tx, tenant, ctx, {
              action: 'identity.password.changed',
              outcome: 'success',
              target: { type: 'user', id: user.id },
            });
          }),
      });
    } catch (error) {
      await clearFailures(tenant, session.userId, 'all');
      if (error instanceof PasswordChangedMeanwhile) return changedMeanwhile(tenant, ctx, session.userId);
      throw error;
    }
  };
}

/** The write found another password than the one the current password was verified against. */
class PasswordChangedMeanwhile extends Error {}
