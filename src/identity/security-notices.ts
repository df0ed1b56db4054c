import type { OutboundMail } from '../mail/index.ts';
import type { TenantRef } from './deps.ts';

/**
 * Changes to how a user signs in that the user is told of by mail: an authenticator confirmed on the
 * account, removed by the user or reset by an administrator, the password changed or reset. Someone who got
 * in with a phished password and enrolled their own authenticator, or an administrator's reset the user
 * did not ask for, then does not go unnoticed.
 */
export type SecurityNotice = 'mfa_enrolled' | 'mfa_removed' | 'mfa_reset' | 'password_changed';

const notices: Record<SecurityNotice, { subject: string; what: string; ifNotYou: string }> = {
  mfa_enrolled: {
    subject: 'An authenticator was added to your account',
    what: 'An authenticator app (two-factor sign-in) was set up on your account. From now on, signing in asks for a code from it.',
    ifNotYou:
      'If you did not set it up, someone else may know your password: ask an administrator of your organisation to reset your authenticator and end your sessions, then change your password.',
  },
  mfa_removed: {
    subject: 'The authenticator was removed from your account',
    what: 'The authenticator app (two-factor sign-in) and the recovery codes were removed from your account, and all your sessions were ended. If your organisation requires two-factor sign-in, you will be asked to set up an authenticator again the next time you sign in.',
    ifNotYou:
      'If you did not remove it, someone else may know your password and have had your authenticator: use "Forgot password" on the sign-in page to set a new one, and tell an administrator of your organisation.',
  },
  mfa_reset: {
    subject: 'Your authenticator was reset by an administrator',
    what: 'An administrator removed the authenticator app (two-factor sign-in) and the recovery codes from your account, and ended your sessions. If your organisation requires two-factor sign-in, you will be asked to set up an authenticator again the next time you sign in.',
    ifNotYou:
      'If you did not ask for this, contact an administrator of your organisation and change your password.',
  },
  password_changed: {
    subject: 'Your password was changed',
    what: 'The password of your account was changed.',
    ifNotYou:
      'If you did not change it, use "Forgot password" on the sign-in page to set a new one, and tell an administrator of your organisation.',
  },
};

/**
 * The notice, plain text: what changed, where and when, what to do if it was not you. It carries no
 * secret and no link (nothing that signs in, nothing a phisher could imitate with a button): the user
 * goes to the sign-in page they know. Queued in the changing transaction's outbox (`withMail`), so it
 * leaves only after the change committed, and never holds the transaction open.
 */
export function securityNotice(kind: SecurityNotice, tenant: TenantRef, to: string, at: Date): OutboundMail {
  const n = notices[kind];
  return {
    to,
    subject: `${n.subject} (${tenant.slug})`,
    text:
      `${n.what}\n\nAccount: ${to}\nOrganisation: ${tenant.slug}\nTime: ${at.toISOString()}\n\n` +
      `${n.ifNotYou}\n\nThis is an automatic notice; there is nothing to confirm.`,
  };
}
