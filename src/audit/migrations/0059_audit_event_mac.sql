-- A keyed MAC per event (security review, docs/audit.md "Event MACs"). The chain hash is a plain
-- SHA-256, so whoever holds the app's database credentials (the app role may INSERT) could append
-- well-linked events with correct hashes, and the server would sign them at its next checkpoint. Each
-- event now also carries mac = key id (8 bytes) || HMAC-SHA256(K, hash) (32 bytes), where K is derived
-- from SECRET_KEY (HKDF, purpose rampart:audit-event-mac) and never reaches the database. The checkpoint
-- job checks the MACs of the events it is about to sign; verify checks them when it holds the key.
-- NOT VALID: events written before this migration have no MAC (and the constraint does not scan them);
-- they are covered by the checkpoints already signed over them.
ALTER TABLE audit_events ADD COLUMN mac bytea;
ALTER TABLE audit_events ADD CONSTRAINT audit_events_mac_length
  CHECK (mac IS NULL OR octet_length(mac) = 40) NOT VALID;

-- Per chain, the first position that must carry a MAC: for chains that exist now, the one after their
-- head; a chain created later (the app inserts only chain and tenant_id) requires one from seq 1. The app
-- role may update only seq and head_hash (migration 0034's column grants), so it cannot move this.
ALTER TABLE audit_chain_heads ADD COLUMN mac_from_seq bigint NOT NULL DEFAULT 1;
ALTER TABLE audit_chain_heads NO FORCE ROW LEVEL SECURITY;
UPDATE audit_chain_heads SET mac_from_seq = seq + 1;
ALTER TABLE audit_chain_heads FORCE ROW LEVEL SECURITY;
