-- Four-eyes for platform actions (security review: one operator could add a SIEM sink that streams every
-- tenant's audit events anywhere). A platform request is a row with no tenant, visible and writable only
-- from a platform scope (no tenant set), as platform audit events are; a tenant scope still sees only its
-- own tenant's rows. The same table, states and checks as tenant requests (src/access/platform-approvals.ts).
ALTER TABLE access_approval_requests ALTER COLUMN tenant_id DROP NOT NULL;
DROP POLICY tenant_isolation ON access_approval_requests;
CREATE POLICY approval_scope ON access_approval_requests
  USING (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL))
  WITH CHECK (tenant_id = rampart_current_tenant() OR (tenant_id IS NULL AND rampart_current_tenant() IS NULL));
CREATE INDEX access_approval_requests_platform ON access_approval_requests (status, requested_at DESC)
  WHERE tenant_id IS NULL;
