-- Lasting access asked for by an operator under an elevation is decided by a person of the tenant only
-- (src/access/elevated-grants.ts, security review). Before, an operator's request to grant administrator
-- powers (access.grant-tenant-admin) could be approved by another operator under an elevation: such
-- requests still waiting for a decision or approved and not yet run lapse now (ask again; the new
-- request goes to the tenant). Acting on one records its expiry (access.approval.expired) as usual.
-- Row-level security applies to the owner too (FORCE), so the update enters each tenant in turn.
DO $$
DECLARE
  t uuid;
BEGIN
  FOR t IN SELECT id FROM tenants LOOP
    PERFORM set_config('rampart.tenant_id', t::text, true);
    UPDATE access_approval_requests SET expires_at = now()
      WHERE tenant_id = t AND requested_by_type = 'operator' AND action = 'access.grant-tenant-admin'
        AND status IN ('pending', 'approved') AND expires_at > now();
  END LOOP;
  PERFORM set_config('rampart.tenant_id', '', true);
END $$;
