import { sql } from 'kysely';
import type { Tx } from './deps.ts';
import type { IdentitySettings } from './policy.ts';

/**
 * The attempt reservation shared by tenant users and operators (tables with `password_failures` and
 * `password_locked_until`). One UPDATE counts the attempt and is only allowed while the account is
 * unlocked and under the threshold, so concurrent guesses cannot get more than `threshold`
 * verifications; the row lock serialises them. An expired temporary lock starts a fresh count.
 */
export const countAttempt = (now: Date) => ({
  password_failures: sql<number>`CASE WHEN password_locked_until <= ${now} THEN 1 ELSE password_failures + 1 END`,
  password_locked_until: sql<Date | null>`CASE WHEN password_locked_until <= ${now} THEN NULL ELSE password_locked_until END`,
});

/** A counted attempt given back (the hasher never evaluated it): the column update countAttempt undoes. */
export const attemptGivenBack = () => ({
  password_failures: sql<number>`GREATEST(password_failures - 1, 0)`,
});

export const attemptAllowed = (now: Date, threshold: number) =>
  sql<boolean>`((password_locked_until IS NULL AND password_failures < ${threshold}) OR password_locked_until <= ${now})`;

// "Until an admin unlocks" is a lock time far in the future: one code path for both lockout modes.
const ADMIN_LOCK = new Date('9999-12-31T00:00:00Z');
export const MAX_LOCK_SECONDS = 24 * 3600;

/**
 * The end of a lock that doubles with each earlier one: `baseSeconds × 2^lockouts`, at most 24 hours.
 * `lockouts` names the row's column counting them (reset by a success or an unlock); read in the
 * UPDATE that also increments it, it is the count before this lock. The exponent is capped so that
 * `power` can never overflow (the cap is reached long before).
 */
export const doublingLockUntil = (
  now: Date,
  baseSeconds: number,
  lockouts: 'password_lockouts' | 'mfa_lockouts',
) =>
  sql<Date>`${now}::timestamptz + make_interval(secs => LEAST(${baseSeconds} * power(2, LEAST(${sql.ref(lockouts)}, 30)), ${MAX_LOCK_SECONDS}))`;

/** The seconds of the `lockouts`-th lock (0 the first) of doublingLockUntil, for audit details. */
export const doublingLockSeconds = (baseSeconds: number, lockouts: number) =>
  Math.min(baseSeconds * 2 ** Math.min(lockouts, 30), MAX_LOCK_SECONDS);

/** The lock a user gets on reaching the threshold: admin mode for good, else a wait doubling per lockout. */
const lockUntil = (settings: IdentitySettings, now: Date) =>
  settings.lockout_mode === 'admin'
    ? sql<Date>`${ADMIN_LOCK}::timestamptz`
    : doublingLockUntil(now, settings.lockout_base_seconds, 'password_lockouts');

/**
 * Locks tenant users whose failure count reached the threshold; returns their ids. With a user id
 * (after a failed attempt): one conditional UPDATE, so of several failures finishing together exactly
 * one sets the lock (the row lock serialises them; the others then see it set). Without (the threshold
 * was lowered): every user whose count is now over it and whom no lock covers, since the reservation
 * refuses them and only a lock time ever lets them try again.
 */
export async function lockOverThreshold(
  tx: Tx,
  settings: IdentitySettings,
  now: Date,
  userId: string | null,
): Promise<string[]> {
  const update = tx
    .updateTable('users')
    .set({ password_locked_until: lockUntil(settings, now), password_lockouts: sql`password_lockouts + 1` })
    .where('password_failures', '>=', settings.lockout_threshold);
  const scoped =
    userId === null
      ? update.where('password_locked_until', 'is', null)
      : update
          .where('id', '=', userId)
          .where((eb) =>
            eb.or([eb('password_locked_until', 'is', null), eb('password_locked_until', '<=', now)]),
          );
  const rows = await scoped.returning('id').execute();
  return rows.map((r) => r.id);
}
