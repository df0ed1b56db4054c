import type { OutboundMail } from '../mail/index.ts';
import type { ActionContext } from '../platform/context.ts';
import { audit, type IdentityDeps, type TenantRef, type Tx } from './deps.ts';
import type { createLinks } from './links.ts';
import { withMail } from './outgoing-mail.ts';
import { createUserRepository } from './users.ts';

/**
 * At most one mail of each kind below per user in this window: a fresh verification link at sign-in,
 * the "someone tried to sign up with your address" notice, and a password reset link. Each can be
 * triggered by anyone who knows (or guesses) the address and, for the verification link, the password:
 * none may flood an inbox.
 */
export const MAIL_COOLDOWN_MS = 5 * 60_000;

/**
 * Claims the user's one mail of a kind per cooldown: true (and the time noted) when none went out
 * within it. One conditional UPDATE, so two requests at once cannot both claim it.
 */
export async function claimMail(
  deps: Pick<IdentityDeps, 'clock'>,
  tx: Tx,
  userId: string,
  column: 'verification_resent_at' | 'signup_notice_at' | 'reset_mail_at',
): Promise<boolean> {
  const now = deps.clock.now();
  const since = new Date(now.getTime() - MAIL_COOLDOWN_MS);
  const done = await tx
    .updateTable('users')
    .set({ [column]: now })
    .where('id', '=', userId)
    .where((eb) => eb.or([eb(column, 'is', null), eb(column, '<=', since)]))
    .executeTakeFirst();
  return done.numUpdatedRows > 0n;
}

/** Why a sign-in with the right password got no session: the caller answers accordingly. */
export type UnverifiedOutcome = 'refused' | 'verified' | 'disabled';

export function createEmailVerification(deps: IdentityDeps, links: ReturnType<typeof createLinks>) {
  return {
    /**
     * A self-signed-up account whose address is not confirmed gave the right password: no session, a new
     * verification link (unless a refused sign-in mailed one within the cooldown; the sign-up's own link
     * does not count, so the first refusal always mails one), audited as a failed sign-in. Earlier
     * unused links stay valid until they expire: the person may still click the first mail, and redeeming
     * any one uses up the others (links.consume). The password was right, so the reserved attempt does
     * not count towards the lockout, as after a successful sign-in. The caller answers `refused` like a
     * wrong password: sign-up lets anyone choose the password of a new address, so a distinct answer
     * would tell which addresses had an account before.
     */
    async refuseUnverified(
      tenant: TenantRef,
      ctx: ActionContext,
      userId: string,
      email: string,
    ): Promise<UnverifiedOutcome> {
      const outcome = await withMail(deps, tenant, async (tx, outbox) => {
        // Locked: two sign-ins at once send one link between them, and a disable or a verification
        // committing meanwhile is seen.
        const user = await createUserRepository(tx).lockById(userId);
        if (user?.status !== 'active') return { kind: 'disabled' as const, sent: false };
        if (user.email_verified_at !== null) return { kind: 'verified' as const, sent: false };
        await createUserRepository(tx).update(userId, { password_failures: 0, password_lockouts: 0 });
        const sent = await claimMail(deps, tx, userId, 'verification_resent_at');
        if (sent) await links.issue(tx, tenant, userId, user.email, 'verify_email', outbox);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.signin.password',
          outcome: 'failure',
          target: { type: 'user', id: userId },
          details: { email, reason: 'email_not_verified', verificationLinkSent: sent },
        });
        return { kind: 'refused' as const, sent };
      });
      return outcome.kind;
    },

    /**
     * Sign-up for an address that has an account: the owner is told (one mail, as a new address gets its
     * verification link), at most once per cooldown. The requester's answer is the same either way.
     */
    async noticeExistingAccount(
      tx: Tx,
      tenant: TenantRef,
      userId: string,
      email: string,
      outbox: OutboundMail[],
    ) {
      if (!(await claimMail(deps, tx, userId, 'signup_notice_at'))) return;
      const pages = `${deps.publicUrl}/t/${tenant.slug}`;
      outbox.push({
        to: email,
        subject: `Someone tried to sign up with your address (${tenant.slug})`,
        text:
          `Someone tried to create an account at ${tenant.slug} with this email address, which already ` +
          'has one. Nothing was changed.\n\n' +
          `If it was you, sign in:\n\n${pages}/signin\n\n` +
          `or, if you forgot your password, reset it:\n\n${pages}/forgot\n\n` +
          'If you were invited and have not accepted yet, use the link in your invitation. ' +
          'If it was not you, you can ignore this message.',
      });
    },
  };
}
