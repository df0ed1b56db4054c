-- Operators sign in interactively with a password AND a TOTP code, always (no operator sign-in without
-- a second factor). Expand-only: new nullable columns and defaults, old nodes keep working.
ALTER TABLE operators
  ADD COLUMN password_hash text,
  ADD COLUMN totp_ciphertext text,
  ADD COLUMN totp_confirmed_at timestamptz,
  ADD COLUMN totp_last_step bigint NOT NULL DEFAULT 0,
  ADD COLUMN password_failures int NOT NULL DEFAULT 0,
  ADD COLUMN password_locked_until timestamptz;

-- Token kinds: 'api' (long-lived automation credential, printed once), 'session' (an interactive
-- sign-in that passed both factors, with the time of that second factor), 'setup' (one-time link to set
-- the password and enrol TOTP).
ALTER TABLE operator_tokens
  ADD COLUMN kind text NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'session', 'setup')),
  ADD COLUMN mfa_at timestamptz;
