import type { IdentityDeps, Tx } from './deps.ts';
import { identityError } from './errors.ts';
import { HasherBusyError, normalisePassword, UnsupportedHashFormatError } from './passwords/index.ts';
import {
  checkPasswordRules,
  type IdentitySettings,
  type PasswordPolicy,
  type PolicyViolation,
  policyOf,
} from './policy.ts';
import { loadSettings } from './settings.ts';
import type { UserRow } from './users.ts';

/**
 * Runs argon2 work through the bounded hasher. A full queue is overload, not a fault: the caller gets
 * 503 `busy` with Retry-After (as sign-in does), never a 500.
 */
export async function hashing<R>(work: () => Promise<R>): Promise<R> {
  try {
    return await work();
  } catch (error) {
    throw hasherAnswer(error);
  }
}

/** A hasher's error as the caller's answer: 503 `busy` with the wait when it was at capacity, else as is. */
export function hasherAnswer(error: unknown): unknown {
  if (!(error instanceof HasherBusyError)) return error;
  return identityError('busy', 'The server is checking many passwords right now; try again shortly.', {
    retryAfterSeconds: error.retryAfterSeconds,
  });
}

/**
 * What screening a new password needs from the database, read in a short transaction of its own: the
 * screening itself (breached-password lookup over the network, argon2 verification of old hashes, the
 * argon2id hash, each maybe waiting for the bounded hasher) runs with no transaction open, so a flood
 * of password changes cannot hold every pooled connection while sign-ins wait for one.
 */
export interface PasswordSubject {
  settings: IdentitySettings;
  person: { email: string; name: string };
  /** The user's password hash when read (null: none yet). The write checks it is still the same. */
  currentHash: string | null;
  /** Hashes the new password must not match: the current one first, then history; historyCount at most. */
  history: string[];
}

/** Reads the policy, and the user's current and recent hashes when the policy keeps a history. */
export async function readPasswordSubject(
  tx: Tx,
  tenantId: string,
  user: Pick<UserRow, 'id' | 'email' | 'display_name' | 'password_hash'> | null,
  person: { email: string; name: string } = { email: user?.email ?? '', name: user?.display_name ?? '' },
): Promise<PasswordSubject> {
  const settings = await loadSettings(tx, tenantId);
  const count = settings.history_count;
  const currentHash = user?.password_hash ?? null;
  if (!user || count <= 0) return { settings, person, currentHash, history: [] };
  const previous = await tx
    .selectFrom('password_history')
    .select('password_hash')
    .where('user_id', '=', user.id)
    .orderBy('created_at', 'desc')
    .limit(count)
    .execute();
  const history = [currentHash, ...previous.map((p) => p.password_hash)]
    .filter((h): h is string => !!h)
    .slice(0, count);
  return { settings, person, currentHash, history };
}

/**
 * Policy rules, the compromised-password screen and password history, then an argon2id hash. Runs
 * outside any transaction. Returns the new hash; throws password_rejected with every violated rule
 * named, or `busy` (503) when the hasher's queue is full.
 */
export async function screenNewPassword(
  deps: Pick<IdentityDeps, 'breached' | 'hasher'>,
  subject: PasswordSubject,
  rawPassword: string,
): Promise<string> {
  const password = normalisePassword(rawPassword);
  const policy = policyOf(subject.settings);
  const violations: PolicyViolation[] = checkPasswordRules(policy, password, subject.person);
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
  if (violations.length === 0 && (await inHistory(deps, subject.history, password))) {
    violations.push({
      rule: 'history',
      message: `Do not reuse any of your last ${policy.historyCount} passwords.`,
    });
  }
  if (violations.length > 0) {
    throw identityError('password_rejected', violations.map((v) => v.message).join(' '), {
      errors: violations.map((v) => ({ pointer: `/policy/${v.rule}`, message: v.message })),
    });
  }
  return hashing(() => deps.hasher.hash(password));
}

async function inHistory(deps: Pick<IdentityDeps, 'hasher'>, hashes: string[], password: string) {
  for (const hash of hashes) {
    if (await reuses(deps, hash, password)) return true;
  }
  return false;
}

/**
 * Whether the password is the one of a kept hash. A hash nobody can verify (damaged, or costlier than the
 * bound of passwords/cost-bound.ts, as an older import could store) matches no password: its user cannot
 * sign in with it, and the reset that replaces it must not fail on it.
 */
async function reuses(deps: Pick<IdentityDeps, 'hasher'>, hash: string, password: string): Promise<boolean> {
  try {
    return (await hashing(() => deps.hasher.verify(hash, password))).ok;
  } catch (error) {
    if (error instanceof UnsupportedHashFormatError) return false;
    throw error;
  }
}

/**
 * What the screening relied on changed before the write (the policy, or the user's password): the write
 * rolls back and the password is screened again against what is there now.
 */
export class ScreeningStale extends Error {
  constructor() {
    super('the policy or the password changed while the new password was screened');
    this.name = 'ScreeningStale';
  }
}

const samePolicy = (a: PasswordPolicy, b: PasswordPolicy) =>
  (Object.keys(a) as (keyof PasswordPolicy)[]).every((k) => a[k] === b[k]);

/**
 * The settings in the write transaction, share-locked so a policy change waits for this write instead of
 * slipping in between its check and its commit. Taken first in the write, before any user or link row:
 * a settings update locks the settings row before users' rows, so the order is the same and no deadlock.
 * Throws ScreeningStale when the password policy is no longer the one screened against.
 */
export async function settingsForWrite(tx: Tx, subject: PasswordSubject): Promise<IdentitySettings> {
  const now = await tx.selectFrom('identity_settings').selectAll().forShare().executeTakeFirst();
  if (!now || !samePolicy(policyOf(now), policyOf(subject.settings))) throw new ScreeningStale();
  return now;
}

/** Throws ScreeningStale when the user's password changed since it was read (history checked stale). */
export function assertPasswordUnchanged(subject: PasswordSubject, user: Pick<UserRow, 'password_hash'>) {
  if (user.password_hash !== subject.currentHash) throw new ScreeningStale();
}

const MAX_ROUNDS = 3;

/**
 * Read (short transaction), screen (no transaction), write (short transaction that re-checks what the
 * screening relied on). A stale screening is redone from the read, a few times at most: only concurrent
 * changes to the same account or policy make it stale, and they do not go on for ever.
 */
export async function settingPassword<S, R>(steps: {
  read: () => Promise<S>;
  screen: (read: S) => Promise<string>;
  write: (read: S, hash: string) => Promise<R>;
}): Promise<R> {
  for (let round = 1; ; round++) {
    const read = await steps.read();
    const hash = await steps.screen(read);
    try {
      return await steps.write(read, hash);
    } catch (error) {
      if (!(error instanceof ScreeningStale)) throw error;
      if (round >= MAX_ROUNDS) {
        throw identityError(
          'changed_meanwhile',
          'The account or the password policy changed while the new password was being checked; try again.',
        );
      }
    }
  }
}

/** Stores the new hash, keeps the old one in history, clears lockout. */
export async function storePassword(
  deps: Pick<IdentityDeps, 'clock'>,
  tx: Tx,
  user: Pick<UserRow, 'id' | 'tenant_id' | 'password_hash'>,
  hash: string,
): Promise<void> {
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
