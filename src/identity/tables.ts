import type { Generated } from 'kysely';

export interface OperatorsTable {
  id: Generated<string>;
  email: string;
  display_name: string;
  status: Generated<'active' | 'disabled'>;
  created_at: Generated<Date>;
  password_hash: Generated<string | null>;
  totp_ciphertext: Generated<string | null>;
  totp_confirmed_at: Generated<Date | null>;
  totp_last_step: Generated<string | number>;
  password_failures: Generated<number>;
  password_locked_until: Generated<Date | null>;
  /** Locks since the last successful sign-in or unlock; each one doubles the next (migration 0081). */
  password_lockouts: Generated<number>;
}

export interface OperatorTokensTable {
  id: Generated<string>;
  operator_id: string;
  token_hash: Buffer;
  label: string;
  created_at: Generated<Date>;
  expires_at: Date;
  last_used_at: Date | null;
  revoked_at: Date | null;
  kind: Generated<'api' | 'session' | 'setup'>;
  mfa_at: Generated<Date | null>;
  /** The only platform permissions an API token carries; null: all of them (migration 0079). */
  scopes: Generated<string[] | null>;
}

export interface IdentityTables {
  operators: OperatorsTable;
  operator_tokens: OperatorTokensTable;
}

export interface IdentitySettingsTable {
  tenant_id: string;
  min_length: Generated<number>;
  max_length: Generated<number>;
  require_lower: Generated<boolean>;
  require_upper: Generated<boolean>;
  require_digit: Generated<boolean>;
  require_special: Generated<boolean>;
  forbid_personal: Generated<boolean>;
  history_count: Generated<number>;
  max_age_days: Generated<number | null>;
  lockout_threshold: Generated<number>;
  lockout_mode: Generated<'temporary' | 'admin'>;
  lockout_base_seconds: Generated<number>;
  self_signup: Generated<boolean>;
  mfa_required: Generated<'off' | 'staff' | 'all'>;
  session_idle_minutes: Generated<number>;
  session_absolute_hours: Generated<number>;
  updated_at: Generated<Date>;
}

export type UserRole = 'member' | 'staff' | 'tenant-admin';

export interface UsersTable {
  id: Generated<string>;
  tenant_id: string;
  email: string;
  display_name: Generated<string>;
  role: Generated<UserRole>;
  status: Generated<'invited' | 'active' | 'disabled'>;
  password_hash: string | null;
  password_changed_at: Date | null;
  email_verified_at: Date | null;
  /** Self sign-up: no session while email_verified_at is null (migration 0047). */
  email_verification_required: Generated<boolean>;
  /** The last verification link a refused sign-in mailed (one per few minutes). */
  verification_resent_at: Generated<Date | null>;
  /** The last "someone tried to sign up with your address" notice (one per few minutes). */
  signup_notice_at: Generated<Date | null>;
  /** The last reset link a forgot-password request mailed (one per few minutes, migration 0077). */
  reset_mail_at: Generated<Date | null>;
  password_failures: Generated<number>;
  password_locked_until: Date | null;
  password_lockouts: Generated<number>;
  mfa_failures: Generated<number>;
  mfa_locked_until: Date | null;
  /** Second-factor locks since the last right code or unlock; each one doubles the next (migration 0081). */
  mfa_lockouts: Generated<number>;
  created_at: Generated<Date>;
}

export interface PasswordHistoryTable {
  tenant_id: string;
  user_id: string;
  password_hash: string;
  created_at: Generated<Date>;
}

export interface UserTokensTable {
  id: Generated<string>;
  tenant_id: string;
  user_id: string;
  purpose: 'invite' | 'verify_email' | 'reset_password';
  token_hash: Buffer;
  expires_at: Date;
  used_at: Date | null;
  created_at: Generated<Date>;
  /** New passwords screened against this link (migration 0083): refused after LINK_SCREENINGS. */
  screenings: Generated<number>;
}

export interface SessionsTable {
  id: Generated<string>;
  tenant_id: string;
  user_id: string;
  token_hash: Buffer;
  stage: 'mfa' | 'enrol' | 'active';
  kind: 'cookie' | 'bearer';
  created_at: Date;
  last_seen_at: Date;
  expires_at: Date;
  mfa_at: Date | null;
  revoked_at: Date | null;
  ip: string | null;
  user_agent: string | null;
}

export interface UserTotpTable {
  tenant_id: string;
  user_id: string;
  secret_ciphertext: string;
  confirmed_at: Date | null;
  last_used_step: Generated<string | number>;
  created_at: Generated<Date>;
  /** Wrong codes against this enrolment while it is pending; the fifth discards it (migration 0067). */
  enrol_failures: Generated<number>;
}

export interface RecoveryCodesTable {
  tenant_id: string;
  user_id: string;
  code_hash: Buffer;
  used_at: Date | null;
}

export interface TenantIdentityTables {
  identity_settings: IdentitySettingsTable;
  users: UsersTable;
  password_history: PasswordHistoryTable;
  user_tokens: UserTokensTable;
  sessions: SessionsTable;
  user_totp: UserTotpTable;
  recovery_codes: RecoveryCodesTable;
}
