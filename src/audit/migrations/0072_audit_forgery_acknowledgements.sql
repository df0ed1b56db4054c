-- Acknowledged forged events (docs/audit.md, "Event MACs", recovery). The checkpoint job refuses to sign
-- a chain over an event whose MAC does not match (migration 0059); without a way back, one row written
-- straight into the database would stop a tenant's tamper evidence for good. After investigating, an
-- operator acknowledges the exact event (chain, position, id and stored hash: a different forgery at
-- that position is not covered); the job then signs over it, and verify keeps naming it.
--
-- The app role may add rows (the server writes them), so whoever holds its credentials may too. A row
-- counts only when its `mac` verifies: key id (8 bytes) || HMAC-SHA256 under a key derived from
-- SECRET_KEY (purpose rampart:audit-forgery-ack), which the database never holds (forged-events.ts).
-- A row without one is ignored by the checkpoint job and named by verify.
CREATE TABLE audit_forgery_acknowledgements (
  id uuid PRIMARY KEY,
  chain text NOT NULL,
  tenant_id uuid,
  seq bigint NOT NULL CHECK (seq > 0),
  event_id uuid NOT NULL,
  event_hash bytea NOT NULL CHECK (octet_length(event_hash) = 32),
  reason text NOT NULL CHECK (length(reason) BETWEEN 1 AND 1000),
  actor_type text NOT NULL,
  actor_id text,
  acknowledged_at timestamptz NOT NULL,
  mac bytea NOT NULL CHECK (octet_length(mac) = 40),
  CHECK (chain = coalesce(tenant_id::text, 'platform'))
);
CREATE INDEX audit_forgery_acknowledgements_chain ON audit_forgery_acknowledgements (tenant_id, seq);

-- Acknowledging is a platform action (operators, the CLI): rows are written with no tenant set. A
-- chain's own scope reads its rows (the checkpoint job and verify run in it); the platform scope all.
ALTER TABLE audit_forgery_acknowledgements ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_forgery_acknowledgements FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_forgery_acknowledgements_read ON audit_forgery_acknowledgements FOR SELECT
  USING (tenant_id = rampart_current_tenant() OR rampart_current_tenant() IS NULL);
CREATE POLICY audit_forgery_acknowledgements_write ON audit_forgery_acknowledgements FOR INSERT
  WITH CHECK (rampart_current_tenant() IS NULL);
GRANT SELECT, INSERT ON audit_forgery_acknowledgements TO rampart_app;
CREATE TRIGGER audit_forgery_acknowledgements_append_only BEFORE UPDATE OR DELETE
  ON audit_forgery_acknowledgements FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_forgery_acknowledgements_no_truncate BEFORE TRUNCATE ON audit_forgery_acknowledgements
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();
