import type { Selectable } from 'kysely';
import type { IdentitySettingsTable } from './tables.ts';

export type IdentitySettings = Selectable<IdentitySettingsTable>;

export interface PasswordPolicy {
  minLength: number;
  maxLength: number;
  requireLower: boolean;
  requireUpper: boolean;
  requireDigit: boolean;
  requireSpecial: boolean;
  forbidPersonal: boolean;
  historyCount: number;
  maxAgeDays: number | null;
}

/** The tenant's identity settings as the API shows and takes them (settings.ts reads and writes them). */
export interface IdentitySettingsView {
  passwordPolicy: PasswordPolicy;
  lockout: { threshold: number; mode: 'temporary' | 'admin'; baseSeconds: number };
  selfSignup: boolean;
  mfaRequired: 'off' | 'staff' | 'all';
  session: { idleMinutes: number; absoluteHours: number };
}

export type PolicyRule =
  | 'min_length'
  | 'max_length'
  | 'require_lower'
  | 'require_upper'
  | 'require_digit'
  | 'require_special'
  | 'forbid_personal'
  | 'history'
  | 'breached'
  | 'common';

export interface PolicyViolation {
  rule: PolicyRule;
  message: string;
}

export const policyOf = (s: IdentitySettings): PasswordPolicy => ({
  minLength: s.min_length,
  maxLength: s.max_length,
  requireLower: s.require_lower,
  requireUpper: s.require_upper,
  requireDigit: s.require_digit,
  requireSpecial: s.require_special,
  forbidPersonal: s.forbid_personal,
  historyCount: s.history_count,
  maxAgeDays: s.max_age_days,
});

// Length counts user-perceived code points of the NFKC form, not UTF-16 units or bytes.
const length = (password: string) => [...password].length;

/** The rules that need nothing but the password and who it belongs to. History and breach need I/O. */
export function checkPasswordRules(
  policy: PasswordPolicy,
  password: string,
  person: { email: string; name?: string | undefined },
): PolicyViolation[] {
  const violations: PolicyViolation[] = [];
  const n = length(password);
  if (n < policy.minLength) {
    violations.push({ rule: 'min_length', message: `Use at least ${policy.minLength} characters.` });
  }
  if (n > policy.maxLength) {
    violations.push({ rule: 'max_length', message: `Use at most ${policy.maxLength} characters.` });
  }
  if (policy.requireLower && !/\p{Ll}/u.test(password)) {
    violations.push({ rule: 'require_lower', message: 'Include a lowercase letter.' });
  }
  if (policy.requireUpper && !/\p{Lu}/u.test(password)) {
    violations.push({ rule: 'require_upper', message: 'Include an uppercase letter.' });
  }
  if (policy.requireDigit && !/\p{Nd}/u.test(password)) {
    violations.push({ rule: 'require_digit', message: 'Include a digit.' });
  }
  if (policy.requireSpecial && !/[^\p{L}\p{Nd}]/u.test(password)) {
    violations.push({
      rule: 'require_special',
      message: 'Include a special character (not a letter or digit).',
    });
  }
  if (policy.forbidPersonal && containsPersonal(password, person)) {
    violations.push({
      rule: 'forbid_personal',
      message: 'Do not use your email address or name in the password.',
    });
  }
  return violations;
}

function containsPersonal(password: string, person: { email: string; name?: string | undefined }): boolean {
  const lower = password.toLowerCase();
  const local = person.email.split('@')[0] ?? '';
  const parts = [local, ...local.split(/[._+-]/), ...(person.name ?? '').split(/\s+/)];
  return parts.some((part) => part.length >= 3 && lower.includes(part.toLowerCase()));
}

/** True when `next` accepts something `current` refused: such a change is gated by four-eyes later. */
export function weakens(current: PasswordPolicy, next: PasswordPolicy): boolean {
  return (
    next.minLength < current.minLength ||
    next.maxLength < current.maxLength ||
    (current.requireLower && !next.requireLower) ||
    (current.requireUpper && !next.requireUpper) ||
    (current.requireDigit && !next.requireDigit) ||
    (current.requireSpecial && !next.requireSpecial) ||
    (current.forbidPersonal && !next.forbidPersonal) ||
    next.historyCount < current.historyCount ||
    (current.maxAgeDays !== null && (next.maxAgeDays === null || next.maxAgeDays > current.maxAgeDays))
  );
}
