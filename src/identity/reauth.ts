import type { ActionContext } from '../platform/context.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef } from './deps.ts';
import { identityError } from './errors.ts';
import type { ValidSession } from './sessions.ts';

// A session signed in this recently gave the password moments ago: asking again adds nothing, and the
// enrolment a sign-in leads to (2FA required, none enrolled) works without it.
const FRESH_SIGN_IN_MS = 5 * 60_000;

/** The session was signed in with the password within the last 5 minutes (a rotation keeps that time). */
export const signedInRecently = (deps: Pick<IdentityDeps, 'clock'>, session: ValidSession) =>
  deps.clock.now().getTime() - session.createdAt.getTime() <= FRESH_SIGN_IN_MS;

/**
 * Binding an authenticator to the account asks for the password again unless the session is fresh:
 * whoever merely holds a session (a copied cookie, a computer left unlocked) must not be able to add
 * their own second factor. The hash is verified outside any transaction, like a sign-in's; a wrong
 * password is audited in a transaction of its own, so the refusal cannot roll it back.
 */
export async function confirmPasswordUnlessFresh(
  deps: IdentityDeps,
  tenant: TenantRef,
  session: ValidSession,
  password: string | undefined,
  ctx: ActionContext,
): Promise<void> {
  if (signedInRecently(deps, session)) return;
  if (password === undefined) {
    throw identityError(
      'reauthentication_required',
      'Enter your current password: this session was signed in more than 5 minutes ago.',
    );
  }
  const user = await inTenant(deps, tenant, (tx) =>
    tx.selectFrom('users').select('password_hash').where('id', '=', session.userId).executeTakeFirst(),
  );
  if (user?.password_hash && (await deps.hasher.verify(user.password_hash, password)).ok) return;
  await inTenant(deps, tenant, (tx) =>
    audit(deps, tx, tenant, ctx, {
      action: 'identity.mfa.enrolment_started',
      outcome: 'failure',
      target: { type: 'user', id: session.userId },
      details: { reason: 'wrong_password' },
    }),
  );
  throw identityError('invalid_credentials', 'The current password is not correct.');
}
