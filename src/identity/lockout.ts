import { sql } from 'kysely';

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

export const attemptAllowed = (now: Date, threshold: number) =>
  sql<boolean>`((password_locked_until IS NULL AND password_failures < ${threshold}) OR password_locked_until <= ${now})`;
