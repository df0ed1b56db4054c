-- Elevations keep what they were asked for (security review): the role's permissions at the time of
-- the request, shown to approvers and the most an elevation can give. Before this, an elevation's
-- permissions were read from the role's current row at each load, so a later edit widened active
-- elevations and deleting and re-creating a role revived them. A pending request now also has a time
-- limit to be decided by (`decide_by`).
ALTER TABLE access_elevations ADD COLUMN permissions text[];
ALTER TABLE access_elevations ADD COLUMN decide_by timestamptz;

-- Existing rows: the role as it is now (a deleted custom role gives nothing), and 24 hours from the
-- request to decide. The built-in roles' permissions are those of this build's catalogue
-- (src/access/catalogue.ts); an elevation also never holds more than its role gives at each check.
-- Row-level security applies to the owner too (FORCE), so the backfill enters each tenant in turn.
DO $$
DECLARE
  t uuid;
BEGIN
  FOR t IN SELECT id FROM tenants LOOP
    PERFORM set_config('rampart.tenant_id', t::text, true);
    UPDATE access_elevations e SET
      permissions = CASE e.role_key
        WHEN 'tenant-admin' THEN ARRAY['users:read', 'users:write', 'policy:write', 'roles:read',
          'roles:write', 'roles:assign', 'access:configure', 'approvals:request', 'approvals:decide',
          'elevations:decide', 'audit:read', 'audit:export', 'audit:configure', 'alerts:read',
          'alerts:write']
        WHEN 'staff' THEN ARRAY['users:read', 'roles:read', 'audit:read']
        WHEN 'member' THEN ARRAY[]::text[]
        ELSE coalesce(
          (SELECT r.permissions FROM access_roles r WHERE r.tenant_id = e.tenant_id AND r.key = e.role_key),
          ARRAY[]::text[])
      END,
      decide_by = e.requested_at + interval '24 hours';
  END LOOP;
  PERFORM set_config('rampart.tenant_id', '', true);
END
$$;

ALTER TABLE access_elevations ALTER COLUMN permissions SET NOT NULL;
ALTER TABLE access_elevations ALTER COLUMN decide_by SET NOT NULL;
