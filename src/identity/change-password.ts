import type { ActionContext } from '../platform/context.ts';
import { platformError } from '../platform/http/errors.ts';
import {
  readPasswordSubject,
  screenNewPassword,
  settingPassword,
  settingsForWrite,
  storePassword,
} from './credentials.ts';
import { createCurrentPasswordCheck, stillVerified, wrongCurrentPassword } from './current-password.ts';
import { audit, inTenant, type ServiceDeps, type TenantRef } from './deps.ts';
import { identityError } from './errors.ts';
import type { createLinks } from './links.ts';
import { withMail } from './outgoing-mail.ts';
import { securityNotice } from './security-notices.ts';
import { revokeAllInTx, revokeSessionInTx } from './session-revocation.ts';
import type { ValidSession } from './session-stage.ts';
import { createSession } from './session-tokens.ts';
import { loadSettings } from './settings.ts';
import { createUserRepository } from './users.ts';

/**
 * Changing the password checks the current one, which counts like a sign-in password
 * (current-password.ts). Web only (cookie sessions), as the fact sheets promise.
 */
export function createChangePassword(deps: ServiceDeps, links: ReturnType<typeof createLinks>) {
  const current = createCurrentPasswordCheck(deps);
  const wrong = wrongCurrentPassword;

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

  return async function changePassword(
    tenant: TenantRef,
    ctx: ActionContext,
    session: ValidSession,
    currentPassword: string,
    next: string,
  ): Promise<{ token: string }> {
    if (session.kind !== 'cookie')
      throw identityError('web_only', 'Passwords are changed on the web only, signed in with a browser.');
    const verified = await current.verify(
      tenant,
      ctx,
      session.userId,
      currentPassword,
      'identity.password.changed',
    );
    try {
      return await settingPassword({
        read: () =>
          inTenant(deps, tenant, async (tx) => {
            const user = await createUserRepository(tx).byId(session.userId);
            if (user?.status !== 'active') throw wrong();
            const subject = await readPasswordSubject(tx, tenant.id, user);
            // A password set since the current one was verified makes that verification stale. Decided
            // on password_changed_at, as sign-in does, not on the hash: the background job that wraps
            // legacy hashes in argon2id (wrap-legacy.ts) rewrites the hash of the same password.
            if (!stillVerified(verified, user.password_changed_at)) throw new PasswordChangedMeanwhile();
            return subject;
          }),
        screen: (subject) => screenNewPassword(deps, subject, next),
        write: (subject, newHash) =>
          withMail(deps, tenant, async (tx, outbox) => {
            await settingsForWrite(tx, subject);
            // Reset links go first: a disable takes the links' row locks before the user's, and so do we.
            await links.voidLinks(tx, session.userId, 'reset_password');
            const user = await createUserRepository(tx).lockById(session.userId);
            if (user?.status !== 'active') throw wrong();
            if (!stillVerified(verified, user.password_changed_at)) throw new PasswordChangedMeanwhile();
            await storePassword(deps, tx, user, newHash);
            // Every session ends, this one too: it goes on under a new token (same sign-in time, expiry
            // and second factor), so a copy of the old cookie, the likely reason for the change, is dead.
            const carried = await revokeSessionInTx(deps, tx, session.id);
            if (!carried) throw platformError('unauthenticated', 'This session has ended; sign in again.');
            await revokeAllInTx(deps, tx, user.id);
            const rotated = await createSession(
              deps,
              tx,
              await loadSettings(tx, tenant.id),
              {
                tenantId: tenant.id,
                userId: user.id,
                stage: 'active',
                kind: session.kind,
                mfaAt: session.mfaAt,
                carried,
              },
              ctx,
            );
            await audit(deps, tx, tenant, ctx, {
              action: 'identity.password.changed',
              outcome: 'success',
              target: { type: 'user', id: user.id },
            });
            outbox.push(securityNotice('password_changed', tenant, user.email, deps.clock.now()));
            return { token: rotated.token };
          }),
      });
    } catch (error) {
      await current.clearFailures(tenant, session.userId, 'all');
      if (error instanceof PasswordChangedMeanwhile) return changedMeanwhile(tenant, ctx, session.userId);
      throw error;
    }
  };
}

/** The write found another password than the one the current password was verified against. */
class PasswordChangedMeanwhile extends Error {}
