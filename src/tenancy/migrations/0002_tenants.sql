-- Tenants are platform-wide: operators list and manage them, so the table itself is not under a tenant
-- policy. Everything a tenant owns lives in tables that are (see rampart_enable_tenant_rls).
CREATE TABLE tenants (
  id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
  slug text NOT NULL UNIQUE CHECK (slug ~ '^[a-z][a-z0-9-]{1,38}[a-z0-9]$'),
  display_name text NOT NULL CHECK (length(display_name) BETWEEN 1 AND 200),
  region text NOT NULL CHECK (region ~ '^[a-z]{2}(-[a-z0-9]{2,12})?$'),
  status text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended')),
  suspended_reason text CHECK (length(suspended_reason) <= 500),
  suspended_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
GRANT SELECT, INSERT, UPDATE ON tenants TO rampart_app;

-- Per-tenant settings, the first tenant-owned table: one row per tenant, created with the tenant.
CREATE TABLE tenant_settings (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
  settings jsonb NOT NULL DEFAULT '{}'::jsonb,
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT rampart_enable_tenant_rls('tenant_settings');
GRANT SELECT, INSERT, UPDATE, DELETE ON tenant_settings TO rampart_app;
