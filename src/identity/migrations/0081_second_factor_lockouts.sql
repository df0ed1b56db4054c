-- Second-factor lockouts escalate (identity security review, 2026-11-27). After 5 wrong codes a user's
-- second factor was locked for a fixed 15 minutes and the count then started afresh, so whoever held the
-- password could guess codes without end at 5 per 15 minutes (480 a day: a ±1-step TOTP code within
-- reach in about a year). Operators' sign-in (password and code in one request) had the same fixed lock.
-- Each lock now lasts 15 minutes × 2^(earlier lockouts), at most 24 hours, as the users' password lockout
-- does (users.password_lockouts); a right second factor (an operator's full sign-in) or an unlock resets
-- the count. Expand-only: columns with a default; a node of an older build ignores them (fixed lock).
ALTER TABLE users ADD COLUMN mfa_lockouts integer NOT NULL DEFAULT 0;
ALTER TABLE operators ADD COLUMN password_lockouts integer NOT NULL DEFAULT 0;
