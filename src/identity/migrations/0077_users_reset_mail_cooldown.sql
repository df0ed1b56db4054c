-- When a forgot-password request last mailed this user a reset link (identity security review): at most
-- one per few minutes, like the verification and sign-up notices of 0047. Anyone who knows an address can
-- ask for a reset, and each new link voids the older ones: without a cooldown that flooded the inbox and
-- could void the owner's link between opening and submitting it.
ALTER TABLE users ADD COLUMN reset_mail_at timestamptz;
