-- Self sign-up must confirm the address before the first session (security review, like Keycloak's
-- "verify email" required action). Only self-signed-up accounts carry the requirement: invited users
-- confirm the address by accepting the invitation, and imported users keep signing in as before (their
-- email_verified_at stays null, as the import sets it).
ALTER TABLE users ADD COLUMN email_verification_required boolean NOT NULL DEFAULT false;
-- When a sign-in last mailed this user a new verification link, and when the last "someone tried to
-- sign up with your address" notice went out: at most one of each per few minutes, so neither sign-in
-- nor sign-up can be used to flood an inbox.
ALTER TABLE users ADD COLUMN verification_resent_at timestamptz;
ALTER TABLE users ADD COLUMN signup_notice_at timestamptz;

-- Existing self-signed-up accounts not yet confirmed: the only users ever sent an email-verification
-- link. They get the requirement too (a sign-in with the right password mails them a new link).
-- Row-level security applies to the owner too (FORCE), so the backfill enters each tenant in turn.
DO $$
DECLARE
  t uuid;
BEGIN
  FOR t IN SELECT id FROM tenants LOOP
    PERFORM set_config('rampart.tenant_id', t::text, true);
    UPDATE users u SET email_verification_required = true
      WHERE u.email_verified_at IS NULL
        AND EXISTS (SELECT 1 FROM user_tokens k WHERE k.user_id = u.id AND k.purpose = 'verify_email');
  END LOOP;
  PERFORM set_config('rampart.tenant_id', '', true);
END
$$;
