-- Platform operators (the vendor's staff). They have no standing access to tenant data.
CREATE TABLE operators (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  email text NOT NULL UNIQUE CHECK (email = lower(email) AND length(email) <= 254),
  display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'disabled')),
  created_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON operators TO rampart_app;

-- API tokens: only the SHA-256 of the token is stored.
CREATE TABLE operator_tokens (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  operator_id uuid NOT NULL REFERENCES operators (id),
  token_hash bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
  label text NOT NULL CHECK (length(label) BETWEEN 1 AND 100),
  created_at timestamptz NOT NULL DEFAULT now(),
  expires_at timestamptz NOT NULL,
  last_used_at timestamptz,
  revoked_at timestamptz
);
CREATE INDEX operator_tokens_operator ON operator_tokens (operator_id);
GRANT SELECT, INSERT, UPDATE ON operator_tokens TO rampart_app;
