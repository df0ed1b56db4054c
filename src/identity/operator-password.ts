import type { BreachedScreen } from './deps.ts';
import { identityError } from './errors.ts';
import { normalisePassword } from './passwords/index.ts';
import { checkPasswordRules, type PasswordPolicy, type PolicyViolation } from './policy.ts';

/**
 * Operators' password policy is fixed for the platform, not configurable: 12 to 128 characters, then
 * the compromised-password screen (common list, breached filter). No composition rules: length and the
 * screen are what resists guessing (NIST SP 800-63B).
 */
export const OPERATOR_PASSWORD_POLICY: PasswordPolicy = {
  minLength: 12,
  maxLength: 128,
  requireLower: false,
  requireUpper: false,
  requireDigit: false,
  requireSpecial: false,
  forbidPersonal: false,
  historyCount: 0,
  maxAgeDays: null,
};

/** Checks a new operator password against the platform policy; returns it normalised or throws 422. */
export async function acceptOperatorPassword(breached: BreachedScreen, raw: string): Promise<string> {
  const password = normalisePassword(raw);
  const violations: PolicyViolation[] = checkPasswordRules(OPERATOR_PASSWORD_POLICY, password, { email: '' });
  if (violations.length === 0) {
    const screen = await breached.check(password);
    if (screen.breached) {
      violations.push(
        screen.source === 'common'
          ? { rule: 'common', message: 'This password is among the most common ones; choose another.' }
          : {
              rule: 'breached',
              message: screen.onlineUnavailable
                ? 'The compromised-password check is unavailable right now; try again in a few minutes.'
                : 'This password appears in a known data breach; choose another.',
            },
      );
    }
  }
  if (violations.length > 0) {
    throw identityError('password_rejected', violations.map((v) => `Operators: ${v.message}`).join(' '), {
      errors: violations.map((v) => ({ pointer: `/policy/${v.rule}`, message: v.message })),
    });
  }
  return password;
}
