import type { AuditInput } from '../audit/index.ts';
import type { ActionContext } from '../platform/context.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef } from './deps.ts';
import { identityError } from './errors.ts';
import { attemptGivenBack } from './lockout.ts';
import { HasherBusyError } from './passwords/index.ts';

/**
 * Sign-in attempts refused before any verdict on their password. Every sign-in attempt writes an audit
 * event, these too: each is an `identity.signin.password` failure shaped like a wrong password's, written
 * in a transaction of its own so that nothing rolls it back. A flood of them is what they record, so
 * each costs one short transaction and no verification.
 */

/**
 * The failure event of a tenant sign-in: the address as normalised ('' for input that is no address:
 * recorded as null, never as typed), the account (if named) as target.
 */
export const failedSignIn = (email: string, reason: string, userId: string | null): AuditInput => ({
  action: 'identity.signin.password',
  outcome: 'failure',
  ...(userId ? { target: { type: 'user', id: userId } } : {}),
  details: { email: email === '' ? null : email, reason },
});

/**
 * The per-address failure budget was used up (429 `throttled`). The account the address names is read
 * for the trail only (one indexed read; invited users, who have no password yet, count as unknown, as in
 * the reservation): the caller's answer is the same whether it exists.
 */
export function auditThrottledSignIn(
  deps: Pick<IdentityDeps, 'db' | 'clock'>,
  tenant: TenantRef,
  ctx: ActionContext,
  email: string,
): Promise<void> {
  return inTenant(deps, tenant, async (tx) => {
    const user = await tx
      .selectFrom('users')
      .select('id')
      .where('email', '=', email)
      .where('status', '!=', 'invited')
      .executeTakeFirst();
    await audit(deps, tx, tenant, ctx, failedSignIn(email, 'throttled', user?.id ?? null));
  });
}

/** Whom an attempt the hasher never evaluated was for, and whether it holds a reserved slot. */
export interface Unevaluated {
  email: string;
  /** The target its failure would name (null: an unknown account, as fail() names them). */
  userId: string | null;
  /** The reservation counted it against the account (a slot to give back). */
  reserved: boolean;
}

/**
 * The hasher never evaluated the attempt: at capacity (503 `busy`) or failing. It must not count against
 * the account (five busy answers would lock the user out), so a reserved slot is given back, in the
 * transaction that audits the refusal, as operator sign-in does.
 */
export async function refuseUnevaluated(
  deps: Pick<IdentityDeps, 'db' | 'clock'>,
  tenant: TenantRef,
  ctx: ActionContext,
  attempt: Unevaluated,
  error: unknown,
): Promise<never> {
  const busy = error instanceof HasherBusyError;
  await inTenant(deps, tenant, async (tx) => {
    if (attempt.reserved && attempt.userId) {
      await tx.updateTable('users').set(attemptGivenBack()).where('id', '=', attempt.userId).execute();
    }
    await audit(deps, tx, tenant, ctx, failedSignIn(attempt.email, busy ? 'busy' : 'error', attempt.userId));
  });
  if (busy) {
    throw identityError('busy', 'The server is handling many sign-ins; try again shortly.', {
      retryAfterSeconds: error.retryAfterSeconds,
    });
  }
  throw error;
}
