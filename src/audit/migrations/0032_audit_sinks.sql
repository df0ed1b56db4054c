-- SIEM sinks of the platform: every event of every tenant (and the platform's) is forwarded to each.
-- Operators configure them; the secret that signs webhooks is stored sealed (AES-GCM, root-key derived).
CREATE TABLE audit_sinks (
  id uuid PRIMARY KEY,
  kind text NOT NULL CHECK (kind IN ('webhook')),
  url text NOT NULL,
  secret_sealed text NOT NULL,
  created_at timestamptz NOT NULL,
  disabled_at timestamptz
);
GRANT SELECT, INSERT, UPDATE ON audit_sinks TO rampart_app;

-- The durable outbox: one row per (sink, event), written in the event's own transaction, deleted once
-- the sink acknowledged it. Retried with backoff forever: a sink that is down loses nothing.
CREATE TABLE audit_outbox (
  sink_id uuid NOT NULL REFERENCES audit_sinks (id),
  event_id uuid NOT NULL,
  tenant_id uuid,
  payload jsonb NOT NULL,
  enqueued_at timestamptz NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL,
  last_error text,
  PRIMARY KEY (sink_id, event_id)
);
CREATE INDEX audit_outbox_due ON audit_outbox (next_attempt_at);
-- Like every table with tenant rows: one index led by tenant_id (a tenant's backlog, its erasure).
CREATE INDEX audit_outbox_tenant ON audit_outbox (tenant_id, enqueued_at);
-- A tenant's transaction may queue its own events but never read the queue; the delivery job runs with
-- no tenant set and sees all of it (the sinks are the platform's and receive every tenant's events).
ALTER TABLE audit_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_outbox_enqueue ON audit_outbox FOR INSERT
  WITH CHECK (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL));
CREATE POLICY audit_outbox_deliver ON audit_outbox FOR ALL
  USING (rampart_current_tenant() IS NULL) WITH CHECK (rampart_current_tenant() IS NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_outbox TO rampart_app;
