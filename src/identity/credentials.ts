import type { IdentityDeps, Tx } from './deps.ts';
import { identityError } from './errors.ts';
import { HasherBusyError, normalisePassword } from './passwords/index.ts';
import { checkPasswordRules, type IdentitySettings, type PolicyViolation, policyOf } from './policy.ts';
import type { UserRow } from './users.ts';

/**
 * Runs argon2 work through the bounded hasher. A full queue is overload, not a fault: the caller gets
 * 503 `busy` with Retry-After (as sign-in does), never a 500.
 */
export async function hashing<R>(work: () => Promise<R>): Promise<R> {
  try {
    return await work();
  } catch (error) {
    if (error instanceof HasherBusyError) {
      throw identityError('busy', 'The server is checking many passwords right now; try again shortly.', {
        retryAfterSeconds: error.retryAfterSeconds,
      });
    }
    throw error;
  }
}

/**
 * Every path that sets a password comes through here: policy rules, the compromised-password screen
 * and password history, then an argon2id hash. Returns the new hash; throws password_rejected with
 * every violated rule named, or `busy` (503) when the hasher's queue is full.
 */
export async function acceptNewPassword(
  deps: IdentityDeps,
  tx: Tx,
  settings: IdentitySettings,
  user: Pick<UserRow, 'id' | 'email' | 'display_name' | 'password_hash'>,
  rawPassword: string,
): Promise<string> {
  const password = normalisePassword(rawPassword);
  const policy = policyOf(settings);
  const violations: PolicyViolation[] = checkPasswordRules(policy, password, {
    email: user.email,
    name: user.display_name,
  });
  if (violations.length === 0) {
    const screen = await deps.breached.check(password);
    if (screen.breached) {
      violations.push({
        rule: screen.source === 'common' ? 'common' : 'breached',
        message:
          screen.source === 'common'
            ? 'This password is among the most common ones; choose another.'
            : screen.onlineUnavailable
              ? 'The compromised-password check is unavailable right now; try again in a few minutes.'
              : 'This password appears in a known data breach; choose another.',
      });
    }
  }
  if (violations.length === 0 && policy.historyCount > 0) {
    if (await inHistory(deps, tx, user, password, policy.historyCount)) {
      violations.push({
        rule: 'history',
        message: `Do not reuse any of your last ${policy.historyCount} passwords.`,
      });
    }
  }
  if (violations.length > 0) {
    throw identityError('password_rejected', violations.map((v) => v.message).join(' '), {
      errors: violations.map((v) => ({ pointer: `/policy/${v.rule}`, message: v.message })),
    });
  }
  return hashing(() => deps.hasher.hash(password));
}

async function inHistory(
  deps: IdentityDeps,
  tx: Tx,
  user: Pick<UserRow, 'id' | 'password_hash'>,
  password: string,
  count: number,
): Promise<boolean> {
  const previous = await tx
    .selectFrom('password_history')
    .select('password_hash')
    .where('user_id', '=', user.id)
    .orderBy('created_at', 'desc')
    .limit(count)
    .execute();
  const hashes = [user.password_hash, ...previous.map((p) => p.password_hash)].filter(
    (h): h is string => !!h,
  );
  for (const hash of hashes.slice(0, count)) {
    if ((await hashing(() => deps.hasher.verify(hash, password))).ok) return true;
  }
  return false;
}

/** Stores the new hash, keeps the old one in history, clears lockout. */
export async function storePassword(deps: IdentityDeps, tx: Tx, user: UserRow, hash: string): Promise<void> {
  if (user.password_hash) {
    await tx
      .insertInto('password_history')
      .values({ tenant_id: user.tenant_id, user_id: user.id, password_hash: user.password_hash })
      .execute();
  }
  await tx
    .updateTable('users')
    .set({
      password_hash: hash,
      password_changed_at: deps.clock.now(),
      password_failures: 0,
      password_locked_until: null,
    })
    .where('id', '=', user.id)
    .execute();
}
