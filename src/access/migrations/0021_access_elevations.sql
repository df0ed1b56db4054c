-- Just-in-time elevation: an operator asks for a role in one tenant, for a reason and a duration; the
-- grant starts at the last needed approval and ends at expires_at, which every check compares with the
-- clock (no job needed). Expired is not a stored status: it is `expires_at <= now`.
CREATE TABLE access_elevations (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  operator_id uuid NOT NULL REFERENCES operators (id),
  role_key text NOT NULL,
  reason text NOT NULL CHECK (length(reason) BETWEEN 10 AND 1000),
  duration_minutes int NOT NULL CHECK (duration_minutes BETWEEN 5 AND 1440),
  approvals_needed int NOT NULL CHECK (approvals_needed BETWEEN 1 AND 5),
  approver text NOT NULL CHECK (approver IN ('operator', 'tenant')),
  status text NOT NULL CHECK (status IN ('pending', 'active', 'rejected', 'revoked')),
  requested_at timestamptz NOT NULL,
  starts_at timestamptz,
  expires_at timestamptz,
  ended_at timestamptz,
  ended_by_type text,
  ended_by_id text
);
CREATE INDEX access_elevations_tenant_operator ON access_elevations (tenant_id, operator_id, status);
CREATE INDEX access_elevations_requested ON access_elevations (tenant_id, requested_at DESC);
-- Tenant-scoped like every tenant table; with no tenant set (operators' platform view) all requests are
-- visible, as operators must find the requests they are asked to approve. Same shape as audit_scope.
ALTER TABLE access_elevations ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_elevations FORCE ROW LEVEL SECURITY;
CREATE POLICY elevation_scope ON access_elevations
  USING (tenant_id = rampart_current_tenant() OR rampart_current_tenant() IS NULL)
  WITH CHECK (tenant_id = rampart_current_tenant());
GRANT SELECT, INSERT, UPDATE ON access_elevations TO rampart_app;

-- One row per approving person: the primary key makes a second approval by the same person impossible.
CREATE TABLE access_elevation_approvals (
  tenant_id uuid NOT NULL,
  elevation_id uuid NOT NULL REFERENCES access_elevations (id),
  approver_type text NOT NULL CHECK (approver_type IN ('operator', 'user')),
  approver_id text NOT NULL,
  decided_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, elevation_id, approver_type, approver_id)
);
ALTER TABLE access_elevation_approvals ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_elevation_approvals FORCE ROW LEVEL SECURITY;
CREATE POLICY elevation_approval_scope ON access_elevation_approvals
  USING (tenant_id = rampart_current_tenant() OR rampart_current_tenant() IS NULL)
  WITH CHECK (tenant_id = rampart_current_tenant());
GRANT SELECT, INSERT ON access_elevation_approvals TO rampart_app;
