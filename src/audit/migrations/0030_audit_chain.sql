-- Tamper evidence: every chain (one per tenant, one for the platform) is a hash chain. Each event
-- carries its position (chain_seq), the hash of the event before it (prev_hash) and its own hash,
-- SHA-256(prev_hash || RFC 8785 canonical JSON of the event). docs/audit.md has the exact procedure.
ALTER TABLE audit_events
  ADD COLUMN chain_seq bigint,
  ADD COLUMN prev_hash bytea,
  ADD COLUMN hash bytea,
  ADD COLUMN actor_elevation_id text;

-- Every event written from now on must be chained. NOT VALID: rows written before this migration are
-- exempt; they are counted per chain in audit_chain_heads.legacy_events so that verify can tell them
-- from rows slipped in outside the chain.
ALTER TABLE audit_events ADD CONSTRAINT audit_events_chained
  CHECK (chain_seq IS NOT NULL AND chain_seq > 0 AND octet_length(prev_hash) = 32 AND octet_length(hash) = 32)
  NOT VALID;
CREATE UNIQUE INDEX audit_events_chain ON audit_events (tenant_id, chain_seq) NULLS NOT DISTINCT
  WHERE chain_seq IS NOT NULL;

-- The head of each chain. Appending locks the head row (UPDATE) for the rest of the writer's
-- transaction, so two writers of one tenant take turns and the chain cannot fork; writers of different
-- tenants never wait for each other.
CREATE TABLE audit_chain_heads (
  chain text PRIMARY KEY,
  tenant_id uuid,
  seq bigint NOT NULL DEFAULT 0,
  head_hash bytea NOT NULL DEFAULT decode(repeat('00', 32), 'hex'),
  legacy_events bigint NOT NULL DEFAULT 0,
  -- Retention prunes whole prefixes up to a signed checkpoint; verification then starts there.
  pruned_through bigint NOT NULL DEFAULT 0,
  CHECK (chain = coalesce(tenant_id::text, 'platform'))
);
CREATE UNIQUE INDEX audit_chain_heads_tenant ON audit_chain_heads (tenant_id) NULLS NOT DISTINCT;
ALTER TABLE audit_chain_heads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_chain_heads FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_scope ON audit_chain_heads
  USING (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL))
  WITH CHECK (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL));
GRANT SELECT, INSERT, UPDATE ON audit_chain_heads TO rampart_app;

-- Existing events stay outside the chain; their number is recorded once, here.
ALTER TABLE audit_events NO FORCE ROW LEVEL SECURITY;
INSERT INTO audit_chain_heads (chain, tenant_id, legacy_events)
  SELECT coalesce(tenant_id::text, 'platform'), tenant_id, count(*) FROM audit_events GROUP BY tenant_id;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;

-- Signed checkpoints: Ed25519 over the canonical JSON of (chain, seq, head hash, time). Append-only.
CREATE TABLE audit_checkpoints (
  tenant_id uuid,
  seq bigint NOT NULL CHECK (seq > 0),
  head_hash bytea NOT NULL CHECK (octet_length(head_hash) = 32),
  signed_at timestamptz NOT NULL,
  key_id text NOT NULL,
  signature bytea NOT NULL
);
CREATE UNIQUE INDEX audit_checkpoints_seq ON audit_checkpoints (tenant_id, seq) NULLS NOT DISTINCT;
ALTER TABLE audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_checkpoints FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_scope ON audit_checkpoints
  USING (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL))
  WITH CHECK (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL));
GRANT SELECT, INSERT ON audit_checkpoints TO rampart_app;
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_refuse_change();

-- Verification counts events outside the chain (legacy ones, or rows slipped in) without a full scan.
CREATE INDEX audit_events_unchained ON audit_events (tenant_id, occurred_at) WHERE chain_seq IS NULL;
