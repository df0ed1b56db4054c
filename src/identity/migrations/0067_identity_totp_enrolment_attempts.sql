-- Wrong codes against a pending (unconfirmed) TOTP enrolment (docs/identity.md, "Two-factor"). Confirming
-- had no limit: someone holding a stolen session could guess the pending secret's codes for as long as it
-- stayed pending and, on a hit, take the recovery codes and a session with a fresh second factor. Each
-- attempt now reserves a try on the row (race-safe, like the password lockout) and the fifth wrong code
-- discards the pending secret; starting again needs the current password unless the sign-in is fresh.
ALTER TABLE user_totp ADD COLUMN enrol_failures integer NOT NULL DEFAULT 0;
