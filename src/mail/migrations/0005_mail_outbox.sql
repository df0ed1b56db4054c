-- Development outbox: mail that would have been sent, kept when no SMTP server is configured.
-- Platform-wide and listed to operators only.
CREATE TABLE mail_outbox (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  recipient text NOT NULL,
  subject text NOT NULL,
  body text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX mail_outbox_created ON mail_outbox (created_at DESC);
GRANT SELECT, INSERT ON mail_outbox TO rampart_app;
