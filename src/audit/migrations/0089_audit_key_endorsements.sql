-- Key endorsements (docs/audit.md, "Key rotation"; tamper-evidence review of 2026-11-28). audit_signing_keys
-- (migration 0060) cannot say which recorded keys the server really signed with: the table owner may insert
-- a row with any recorded_at, and a key it holds, dated before the server's, was trusted wherever the
-- server's key had not signed yet. Now an older key is trusted only when a trusted key endorsed it: a node
-- recording its own key signs, with that key, an endorsement of each previous key it derives itself from
-- SECRET_KEY_PREVIOUS. Trust runs from the current key (and keys the operator gives) along endorsements;
-- a recorded key nobody trusted endorsed is ignored.
--
-- signature: Ed25519 by the endorser's key over the canonical text naming both key ids and the SHA-256 of
-- the endorsed key's SubjectPublicKeyInfo DER (signer.ts endorsementText). A row whose signature does not
-- verify counts for nothing; since Ed25519 signatures are deterministic, the server's row is the same each
-- time, and a junk row for the same pair cannot keep it out (the key includes the signature).
-- The app role may only add rows, and not created_at (the database's clock).
CREATE TABLE audit_key_endorsements (
  endorser_key_id text NOT NULL CHECK (endorser_key_id ~ '^[0-9a-f]{16}$'),
  key_id text NOT NULL,
  public_key bytea NOT NULL,
  signature bytea NOT NULL CHECK (octet_length(signature) = 64),
  created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
  PRIMARY KEY (endorser_key_id, key_id, signature),
  CHECK (key_id = substr(encode(sha256(public_key), 'hex'), 1, 16)),
  CHECK (endorser_key_id <> key_id)
);
GRANT SELECT ON audit_key_endorsements TO rampart_app;
GRANT INSERT (endorser_key_id, key_id, public_key, signature) ON audit_key_endorsements TO rampart_app;
CREATE TRIGGER audit_key_endorsements_append_only BEFORE UPDATE OR DELETE ON audit_key_endorsements
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_key_endorsements_no_truncate BEFORE TRUNCATE ON audit_key_endorsements
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
