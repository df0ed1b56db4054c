-- Each tenant's network policy: the addresses its administrators may work from, and the browser origins
-- allowed to call its API (CORS). Tenant-owned, under the tenant's row-level security.
CREATE TABLE protect_tenant_policy (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
  admin_allow_cidrs text[] NOT NULL DEFAULT '{}' CHECK (cardinality(admin_allow_cidrs) <= 100),
  cors_origins text[] NOT NULL DEFAULT '{}' CHECK (cardinality(cors_origins) <= 50),
  updated_at timestamptz NOT NULL DEFAULT now()
);
SELECT rampart_enable_tenant_rls('protect_tenant_policy');
GRANT SELECT, INSERT, UPDATE ON protect_tenant_policy TO rampart_app;
