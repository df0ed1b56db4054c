import type { ActionContext } from '../platform/context.ts';
import { audit, type ServiceDeps, type TenantRef } from './deps.ts';
import { identityError } from './errors.ts';
import { withMail } from './outgoing-mail.ts';
import { confirmPasswordUnlessFresh } from './reauth.ts';
import { securityNotice } from './security-notices.ts';
import { revokeAllInTx } from './session-revocation.ts';
import { hasRecentSecondFactor, type ValidSession } from './session-stage.ts';
import { createUserRepository } from './users.ts';

/**
 * A user removes their own authenticator, to replace it (a new phone) or to stop using one where the
 * tenant does not require it: Keycloak's "remove" in the account console. It takes both factors at
 * once: a second factor within the last 5 minutes (step-up) and the password unless the session was
 * signed in within 5 minutes (as enrolment asks), so a copied session alone cannot strip the account's
 * second factor. Removes the authenticator (and a pending enrolment) and every recovery code, ends every
 * session of the user, this one included, and mails a notice, in one transaction with its audit. The
 * next sign-in leads to enrolment where the tenant requires a second factor.
 */
export async function removeOwnAuthenticator(
  deps: ServiceDeps,
  tenant: TenantRef,
  session: ValidSession,
  ctx: ActionContext,
  currentPassword?: string,
): Promise<{ sessionsEnded: number }> {
  if (!hasRecentSecondFactor(deps, session)) {
    throw identityError('step_up_required', 'Confirm with your second factor within the last 5 minutes.');
  }
  await confirmPasswordUnlessFresh(deps, tenant, session, currentPassword, ctx, 'identity.mfa.removed');
  return withMail(deps, tenant, async (tx, outbox) => {
    // The user's row first, as the admin reset and every revocation take it.
    const user = await createUserRepository(tx).lockById(session.userId);
    if (!user) throw identityError('user_not_found', 'No user has this id in this tenant.');
    const removed = await tx
      .deleteFrom('user_totp')
      .where('user_id', '=', session.userId)
      .returning('confirmed_at')
      .execute();
    if (!removed.some((r) => r.confirmed_at !== null)) {
      throw identityError('mfa_not_enrolled', 'You have no authenticator to remove.');
    }
    const codes = await tx
      .deleteFrom('recovery_codes')
      .where('user_id', '=', session.userId)
      .executeTakeFirst();
    const sessionsEnded = await revokeAllInTx(deps, tx, session.userId);
    await audit(deps, tx, tenant, ctx, {
      action: 'identity.mfa.removed',
      outcome: 'success',
      target: { type: 'user', id: session.userId },
      details: { sessionsEnded, recoveryRemoved: Number(codes.numDeletedRows) },
    });
    outbox.push(securityNotice('mfa_removed', tenant, user.email, deps.clock.now()));
    return { sessionsEnded };
  });
}
