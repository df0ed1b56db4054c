import type { ActionContext } from '../platform/context.ts';
import { type CheckedFor, createCurrentPasswordCheck } from './current-password.ts';
import type { IdentityDeps, ServiceDeps, TenantRef } from './deps.ts';
import { identityError } from './errors.ts';
import type { ValidSession } from './session-stage.ts';

// A session signed in this recently gave the password moments ago: asking again adds nothing, and the
// enrolment a sign-in leads to (2FA required, none enrolled) works without it.
const FRESH_SIGN_IN_MS = 5 * 60_000;

/** The session was signed in with the password within the last 5 minutes (a rotation keeps that time). */
export const signedInRecently = (deps: Pick<IdentityDeps, 'clock'>, session: ValidSession) =>
  deps.clock.now().getTime() - session.createdAt.getTime() <= FRESH_SIGN_IN_MS;

/**
 * Binding an authenticator to the account asks for the password again unless the session is fresh:
 * whoever merely holds a session (a copied cookie, a computer left unlocked) must not be able to add
 * their own second factor. The password is verified outside any transaction and counts like a sign-in
 * password: a wrong one against the account's lockout and the address's budget (current-password.ts),
 * audited as a failed `identity.mfa.enrolment_started`.
 */
export async function confirmPasswordUnlessFresh(
  deps: ServiceDeps,
  tenant: TenantRef,
  session: ValidSession,
  password: string | undefined,
  ctx: ActionContext,
  action: CheckedFor = 'identity.mfa.enrolment_started',
): Promise<void> {
  if (signedInRecently(deps, session)) return;
  if (password === undefined) {
    throw identityError(
      'reauthentication_required',
      'Enter your current password: this session was signed in more than 5 minutes ago.',
    );
  }
  const current = createCurrentPasswordCheck(deps);
  await current.verify(tenant, ctx, session.userId, password, action);
  await current.clearFailures(tenant, session.userId, 'all');
}
