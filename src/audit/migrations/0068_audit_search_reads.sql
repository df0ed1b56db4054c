-- Audit events each person paged through by search, per tenant and UTC day (docs/audit.md, "Search read
-- cap"). Where a tenant's exports need a second approver, search is capped per person per day so that
-- the approval cannot be bypassed one page at a time. A row per reader and day; a reader's older days
-- are removed when their first search of a new day writes its row.
CREATE TABLE audit_search_reads (
  tenant_id uuid NOT NULL,
  actor_type text NOT NULL,
  actor_id text NOT NULL,
  day date NOT NULL,
  events integer NOT NULL CHECK (events >= 0),
  PRIMARY KEY (tenant_id, actor_type, actor_id, day)
);
ALTER TABLE audit_search_reads ENABLE ROW LEVEL SECURITY;
ALTER TABLE audit_search_reads FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_search_reads_scope ON audit_search_reads
  USING (tenant_id = rampart_current_tenant()) WITH CHECK (tenant_id = rampart_current_tenant());
GRANT SELECT, INSERT, UPDATE, DELETE ON audit_search_reads TO rampart_app;
