import type { IdentityDeps } from './deps.ts';
import type { IdentitySettings } from './policy.ts';
import type { UserRole } from './tables.ts';

const STEP_UP_WINDOW_MS = 5 * 60_000;

/** The stage a session is stored in: what its sign-in left to do. */
export type StoredStage = 'mfa' | 'enrol' | 'active';
/**
 * The stage a session is in now: its stored stage, or `password` when it is `active` but the user's
 * password has passed the tenant's maximum age (computed at each request; only changing the password,
 * seeing and ending the session are allowed until then).
 */
export type SessionStage = StoredStage | 'password';

export interface ValidSession {
  id: string;
  tenantId: string;
  userId: string;
  email: string;
  role: UserRole;
  stage: SessionStage;
  kind: 'cookie' | 'bearer';
  mfaAt: Date | null;
  createdAt: Date;
  /** The user has a confirmed authenticator (whether or not this session used it). */
  totpEnrolled: boolean;
}

/** Whether the tenant's 2FA enforcement covers a user with this role label. */
export const secondFactorRequired = (policy: IdentitySettings['mfa_required'], role: UserRole) =>
  policy === 'all' || (policy === 'staff' && role !== 'member');

/**
 * The stage a session is in now. One signed in without a second factor while 2FA was not asked of the
 * user falls back to the step a sign-in would give today (`mfa` with an authenticator, else `enrol`)
 * once the tenant asks it: enforcement turned on, or a staff role granted. Its signed-in routes then
 * answer as for that stage, until the second factor is given or enrolled.
 */
export function currentStage(
  stored: StoredStage,
  mfaAt: Date | null,
  required: boolean,
  totpEnrolled: boolean,
): StoredStage {
  if (stored !== 'active' || mfaAt !== null || !required) return stored;
  return totpEnrolled ? 'mfa' : 'enrol';
}

export const hasRecentSecondFactor = (deps: Pick<IdentityDeps, 'clock'>, session: ValidSession) =>
  session.mfaAt !== null && deps.clock.now().getTime() - session.mfaAt.getTime() <= STEP_UP_WINDOW_MS;
