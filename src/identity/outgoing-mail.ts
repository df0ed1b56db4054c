import type { OutboundMail } from '../mail/index.ts';
import { type IdentityDeps, inTenant, type TenantRef, type Tx } from './deps.ts';

/**
 * Runs fn in the tenant's transaction and hands the mail it queued to the dispatcher only after the
 * commit: a link to a token that was rolled back must never go out. Dispatching never waits for the mail
 * server, so an answer takes as long, and ends the same, whether or not it mailed anything (forgot-password
 * and sign-up must not tell which addresses have accounts).
 */
export async function withMail<R>(
  deps: Pick<IdentityDeps, 'db' | 'mailer'>,
  tenant: TenantRef,
  fn: (tx: Tx, outbox: OutboundMail[]) => Promise<R>,
): Promise<R> {
  const outbox: OutboundMail[] = [];
  const result = await inTenant(deps, tenant, (tx) => fn(tx, outbox));
  for (const mail of outbox) deps.mailer.dispatch(mail);
  return result;
}
