-- Anomaly rules and alerts (docs/audit.md, "Alerts"). Every table is per chain: a tenant's rows sit under
-- its row-level security, the platform's (tenant_id NULL) are visible only with no tenant set.

-- Per chain: rule thresholds, working hours and where alerts go. No row means the defaults (rules.ts).
CREATE TABLE audit_alert_settings (
  tenant_id uuid,
  rules jsonb NOT NULL DEFAULT '{}'::jsonb,
  working_hours jsonb,
  emails text[] NOT NULL DEFAULT '{}',
  webhook_url text,
  -- The Standard Webhooks secret alerts are signed with, sealed (AES-GCM, root-key derived).
  webhook_secret_sealed text,
  updated_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX audit_alert_settings_chain ON audit_alert_settings (tenant_id) NULLS NOT DISTINCT;

-- How far the rules have read each chain. The evaluator locks the row, so one node at a time evaluates a
-- chain and every event is evaluated once.
CREATE TABLE audit_alert_cursors (
  chain text PRIMARY KEY,
  tenant_id uuid,
  seq bigint NOT NULL DEFAULT 0,
  CHECK (chain = coalesce(tenant_id::text, 'platform'))
);
CREATE UNIQUE INDEX audit_alert_cursors_tenant ON audit_alert_cursors (tenant_id) NULLS NOT DISTINCT;

-- Alerts. `keys` are what the alert is about (account:<id>, ip:<addr>, tenant, actor:<type>:<id>, ...):
-- a new match whose keys overlap an open alert's adds to it instead of raising another.
CREATE TABLE audit_alerts (
  id uuid PRIMARY KEY,
  tenant_id uuid,
  rule text NOT NULL,
  severity text NOT NULL CHECK (severity IN ('low', 'medium', 'high')),
  keys text[] NOT NULL,
  summary text NOT NULL,
  status text NOT NULL CHECK (status IN ('open', 'acknowledged')),
  occurrences integer NOT NULL CHECK (occurrences > 0),
  first_event_id uuid NOT NULL,
  last_event_id uuid NOT NULL,
  raised_at timestamptz NOT NULL,
  last_seen_at timestamptz NOT NULL,
  acknowledged_at timestamptz,
  acknowledged_by text,
  acknowledgement_note text
);
CREATE INDEX audit_alerts_recent ON audit_alerts (tenant_id, raised_at, id);
CREATE INDEX audit_alerts_rule ON audit_alerts (tenant_id, rule, last_seen_at);

-- Deliveries of raised alerts (webhook, email): written with the alert, retried with backoff until done.
CREATE TABLE audit_alert_deliveries (
  alert_id uuid NOT NULL REFERENCES audit_alerts (id),
  channel text NOT NULL CHECK (channel IN ('webhook', 'email')),
  destination text NOT NULL,
  tenant_id uuid,
  secret_sealed text,
  payload jsonb NOT NULL,
  enqueued_at timestamptz NOT NULL,
  attempts integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL,
  last_error text,
  PRIMARY KEY (alert_id, channel, destination)
);
CREATE INDEX audit_alert_deliveries_due ON audit_alert_deliveries (next_attempt_at);
CREATE INDEX audit_alert_deliveries_tenant ON audit_alert_deliveries (tenant_id, enqueued_at);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['audit_alert_settings', 'audit_alert_cursors', 'audit_alerts'] LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY audit_scope ON %I '
      'USING (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL)) '
      'WITH CHECK (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL))', t);
  END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE ON audit_alert_settings, audit_alert_cursors, audit_alerts TO rampart_app;

-- Like the SIEM outbox: a tenant's transaction queues its alerts' deliveries but never reads the queue;
-- the delivery job runs with no tenant set and sees all of it.
ALTER TABLE audit_alert_deliveries ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_alert_deliveries FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_alert_deliveries_enqueue ON audit_alert_deliveries FOR INSERT
  WITH CHECK (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL));
CREATE POLICY audit_alert_deliveries_deliver ON audit_alert_deliveries FOR ALL
  USING (rampart_current_tenant() IS NULL) WITH CHECK (rampart_current_tenant() IS NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_alert_deliveries TO rampart_app;

-- Rules read only what is appended from now on: existing chains start at their current head.
ALTER TABLE audit_chain_heads NO FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_alert_cursors NO FORCE ROW LEVEL SECURITY;
INSERT INTO audit_alert_cursors (chain, tenant_id, seq) SELECT chain, tenant_id, seq FROM audit_chain_heads;
ALTER TABLE audit_alert_cursors FORCE ROW LEVEL SECURITY;
ALTER TABLE audit_chain_heads FORCE ROW LEVEL SECURITY;
