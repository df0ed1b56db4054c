-- Identity settings per tenant: password policy, lockout, second factor and session lifetimes.
-- Only tenant admins change them (routes check), every change is audited.
CREATE TABLE identity_settings (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
  min_length int NOT NULL DEFAULT 8 CHECK (min_length BETWEEN 8 AND 128),
  max_length int NOT NULL DEFAULT 72 CHECK (max_length BETWEEN 8 AND 128),
  require_lower boolean NOT NULL DEFAULT true,
  require_upper boolean NOT NULL DEFAULT true,
  require_digit boolean NOT NULL DEFAULT true,
  require_special boolean NOT NULL DEFAULT false,
  forbid_personal boolean NOT NULL DEFAULT true,
  history_count int NOT NULL DEFAULT 5 CHECK (history_count BETWEEN 0 AND 24),
  max_age_days int CHECK (max_age_days BETWEEN 1 AND 3650),
  lockout_threshold int NOT NULL DEFAULT 5 CHECK (lockout_threshold BETWEEN 3 AND 20),
  lockout_mode text NOT NULL DEFAULT 'temporary' CHECK (lockout_mode IN ('temporary', 'admin')),
  lockout_base_seconds int NOT NULL DEFAULT 300 CHECK (lockout_base_seconds BETWEEN 30 AND 86400),
  self_signup boolean NOT NULL DEFAULT false,
  mfa_required text NOT NULL DEFAULT 'staff' CHECK (mfa_required IN ('off', 'staff', 'all')),
  session_idle_minutes int NOT NULL DEFAULT 30 CHECK (session_idle_minutes BETWEEN 5 AND 1440),
  session_absolute_hours int NOT NULL DEFAULT 12 CHECK (session_absolute_hours BETWEEN 1 AND 720),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (min_length <= max_length)
);
SELECT rampart_enable_tenant_rls('identity_settings');
GRANT SELECT, INSERT, UPDATE ON identity_settings TO rampart_app;

CREATE TABLE users (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  email text NOT NULL CHECK (email = lower(email) AND length(email) <= 254),
  display_name text NOT NULL DEFAULT '' CHECK (length(display_name) <= 200),
  role text NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'staff', 'tenant-admin')),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('invited', 'active', 'disabled')),
  password_hash text,
  password_changed_at timestamptz,
  email_verified_at timestamptz,
  -- Lockout state: separate counters for the password and the second factor, so failing one
  -- cannot be used to lock the other.
  password_failures int NOT NULL DEFAULT 0,
  password_locked_until timestamptz,
  password_lockouts int NOT NULL DEFAULT 0,
  mfa_failures int NOT NULL DEFAULT 0,
  mfa_locked_until timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (tenant_id, email),
  UNIQUE (tenant_id, id)
);
SELECT rampart_enable_tenant_rls('users');
GRANT SELECT, INSERT, UPDATE ON users TO rampart_app;

CREATE TABLE password_history (
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  password_hash text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX password_history_user ON password_history (tenant_id, user_id, created_at DESC);
SELECT rampart_enable_tenant_rls('password_history');
GRANT SELECT, INSERT, DELETE ON password_history TO rampart_app;

-- Single-use tokens sent by mail (invitation, email verification, password reset); stored hashed.
CREATE TABLE user_tokens (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  purpose text NOT NULL CHECK (purpose IN ('invite', 'verify_email', 'reset_password')),
  token_hash bytea NOT NULL UNIQUE,
  expires_at timestamptz NOT NULL,
  used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX user_tokens_user ON user_tokens (tenant_id, user_id);
SELECT rampart_enable_tenant_rls('user_tokens');
GRANT SELECT, INSERT, UPDATE ON user_tokens TO rampart_app;

CREATE TABLE sessions (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  token_hash bytea NOT NULL UNIQUE,
  -- 'mfa' waits for a second factor, 'enrol' must enrol one, 'active' is signed in.
  stage text NOT NULL CHECK (stage IN ('mfa', 'enrol', 'active')),
  kind text NOT NULL CHECK (kind IN ('cookie', 'bearer')),
  created_at timestamptz NOT NULL,
  last_seen_at timestamptz NOT NULL,
  expires_at timestamptz NOT NULL,
  mfa_at timestamptz,
  revoked_at timestamptz,
  ip inet,
  user_agent text,
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
CREATE INDEX sessions_user ON sessions (tenant_id, user_id);
SELECT rampart_enable_tenant_rls('sessions');
GRANT SELECT, INSERT, UPDATE ON sessions TO rampart_app;

-- TOTP secrets are encrypted with a key derived from SECRET_KEY (AES-256-GCM).
CREATE TABLE user_totp (
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  secret_ciphertext text NOT NULL,
  confirmed_at timestamptz,
  last_used_step bigint NOT NULL DEFAULT 0,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
SELECT rampart_enable_tenant_rls('user_totp');
GRANT SELECT, INSERT, UPDATE, DELETE ON user_totp TO rampart_app;

CREATE TABLE recovery_codes (
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  code_hash bytea NOT NULL,
  used_at timestamptz,
  PRIMARY KEY (tenant_id, user_id, code_hash),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
SELECT rampart_enable_tenant_rls('recovery_codes');
GRANT SELECT, INSERT, UPDATE, DELETE ON recovery_codes TO rampart_app;
