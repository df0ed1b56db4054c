-- The application role: no login of its own, no superuser, no BYPASSRLS. Each node logs in as a role
-- that is a member of it (PostgreSQL) or switches to it (embedded PGlite).
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rampart_app') THEN
    CREATE ROLE rampart_app NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
END
$$;

REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO rampart_app;
GRANT SELECT ON schema_migrations TO rampart_app;

-- The tenant a transaction works for, set with SET LOCAL by withTenant. Unset (or empty) means none,
-- so policies compare with NULL and no row matches.
CREATE FUNCTION rampart_current_tenant() RETURNS uuid
  LANGUAGE sql STABLE
  AS $$ SELECT nullif(current_setting('rampart.tenant_id', true), '')::uuid $$;

-- One shared snippet puts every tenant-owned table under row-level security: enabled and forced
-- (so even the owner is filtered unless it is a superuser), one policy for reads and writes.
CREATE FUNCTION rampart_enable_tenant_rls(target regclass) RETURNS void
  LANGUAGE plpgsql
  AS $$
BEGIN
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', target);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', target);
  EXECUTE format(
    'CREATE POLICY tenant_isolation ON %s USING (tenant_id = rampart_current_tenant()) '
    'WITH CHECK (tenant_id = rampart_current_tenant())', target);
END
$$;
REVOKE ALL ON FUNCTION rampart_enable_tenant_rls(regclass) FROM PUBLIC;
