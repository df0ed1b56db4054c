-- Append-only audit trail. Tenant events carry tenant_id and sit under the tenant's row-level security;
-- platform events (operators acting on the platform) carry NULL and are visible only with no tenant set.
CREATE TABLE audit_events (
  id uuid PRIMARY KEY,
  tenant_id uuid,
  occurred_at timestamptz NOT NULL,
  actor_type text NOT NULL CHECK (actor_type IN ('operator', 'user', 'system', 'anonymous', 'api_client')),
  actor_id text,
  action text NOT NULL CHECK (action ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$'),
  target_type text,
  target_id text,
  outcome text NOT NULL CHECK (outcome IN ('success', 'failure', 'denied')),
  ip inet,
  user_agent text CHECK (length(user_agent) <= 512),
  request_id text,
  details jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_events_tenant_time ON audit_events (tenant_id, occurred_at, id);

ALTER TABLE audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_scope ON audit_events
  USING (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL))
  WITH CHECK (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL));

-- The app may add and read events, never change or remove them.
GRANT SELECT, INSERT ON audit_events TO rampart_app;

CREATE FUNCTION audit_events_refuse_change() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_refuse_change();
