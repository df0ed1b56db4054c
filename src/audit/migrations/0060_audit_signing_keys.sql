-- Key rotation (docs/audit.md, "Key rotation"). The checkpoint key derives from SECRET_KEY, so after a
-- rotation the server no longer holds the key of the checkpoints signed before it. Each node records the
-- public key it signs with here the first time it signs (a public key is not a secret); verification and
-- pruning then accept a checkpoint of a recorded key up to the position, per chain, where a key recorded
-- after it took over (its first checkpoint in that chain), and the current key's from there on.
-- The app role may only add rows and only these two columns: recorded_at is the database's clock, so a
-- row added later cannot claim to be older than the server's own key. key_id must be the key's id (the
-- first 16 hex digits of SHA-256 over the SubjectPublicKeyInfo DER), as on the checkpoints it signed.
CREATE TABLE audit_signing_keys (
  key_id text PRIMARY KEY,
  public_key bytea NOT NULL,
  recorded_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  CHECK (key_id = substr(encode(sha256(public_key), 'hex'), 1, 16))
);
GRANT SELECT ON audit_signing_keys TO rampart_app;
GRANT INSERT (key_id, public_key) ON audit_signing_keys TO rampart_app;
CREATE TRIGGER audit_signing_keys_append_only BEFORE UPDATE OR DELETE ON audit_signing_keys
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_signing_keys_no_truncate BEFORE TRUNCATE ON audit_signing_keys
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
