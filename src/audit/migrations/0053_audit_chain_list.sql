-- `rampart audit verify` (and checkpoint, prune) cover every chain that has a head, not only the chains
-- of tenants the tenants table still lists: a chain whose tenant row is gone, or whose events were
-- written under an id no tenant has, is verified too. Row-level security shows the app one chain's head
-- at a time, so the list comes from this function, which returns names only (no position, no hash).
-- It runs as its owner; the owner's policy below opens all heads to it only while the function has
-- announced it in a transaction-local setting (the owner's own sessions stay scoped like the app's).
CREATE POLICY audit_chain_list ON audit_chain_heads FOR SELECT TO CURRENT_USER
  USING (current_setting('rampart.audit_list_chains', true) = 'on');

CREATE FUNCTION audit_chains() RETURNS TABLE (chain text, tenant_id uuid)
  LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp AS $$
BEGIN
  PERFORM set_config('rampart.audit_list_chains', 'on', true);
  RETURN QUERY SELECT h.chain, h.tenant_id FROM audit_chain_heads h ORDER BY h.tenant_id NULLS FIRST;
  PERFORM set_config('rampart.audit_list_chains', '', true);
END
$$;
REVOKE ALL ON FUNCTION audit_chains() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_chains() TO rampart_app;
