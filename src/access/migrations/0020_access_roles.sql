-- Access: roles per tenant and their assignment to users. The built-in roles (tenant-admin, staff,
-- member) are defined in code (src/access/catalogue.ts) so they follow the permission catalogue; only
-- custom roles are rows here. Deny by default: a user holds exactly the permissions of their roles.
CREATE TABLE access_roles (
  tenant_id uuid NOT NULL REFERENCES tenants (id),
  key text NOT NULL CHECK (key ~ '^[a-z][a-z0-9-]{1,38}[a-z0-9]$' AND key NOT IN ('tenant-admin', 'staff', 'member')),
  name text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
  permissions text[] NOT NULL,
  created_at timestamptz NOT NULL,
  updated_at timestamptz NOT NULL,
  PRIMARY KEY (tenant_id, key)
);
SELECT rampart_enable_tenant_rls('access_roles');
GRANT SELECT, INSERT, UPDATE, DELETE ON access_roles TO rampart_app;

-- role_key is a built-in key or a custom role's key; the service checks it and deletes a custom role's
-- assignments in the transaction that deletes the role.
CREATE TABLE access_assignments (
  tenant_id uuid NOT NULL,
  user_id uuid NOT NULL,
  role_key text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant_id, user_id, role_key),
  FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
);
SELECT rampart_enable_tenant_rls('access_assignments');
GRANT SELECT, INSERT, DELETE ON access_assignments TO rampart_app;

-- Moving the old single `users.role` onto roles (expand step). A user created by identity (invitation,
-- sign-up, import) with a role gets that role as an assignment in the same statement; and `users.role`
-- is kept as a derived label (tenant-admin, else staff for any other role, else member) because
-- identity reads it for "2FA required for staff" and shows it. Both triggers run as the caller, under
-- the caller's tenant scope.
CREATE FUNCTION access_assign_initial_role() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
BEGIN
  INSERT INTO access_assignments (tenant_id, user_id, role_key, created_at)
    VALUES (NEW.tenant_id, NEW.id, NEW.role, NEW.created_at)
    ON CONFLICT DO NOTHING;
  RETURN NULL;
END
$$;
CREATE TRIGGER access_initial_role AFTER INSERT ON users
  FOR EACH ROW EXECUTE FUNCTION access_assign_initial_role();

CREATE FUNCTION access_sync_user_role() RETURNS trigger
  LANGUAGE plpgsql
  AS $$
DECLARE
  changed access_assignments;
  derived text;
BEGIN
  IF TG_OP = 'DELETE' THEN changed := OLD; ELSE changed := NEW; END IF;
  SELECT CASE
      WHEN bool_or(role_key = 'tenant-admin') THEN 'tenant-admin'
      WHEN bool_or(role_key <> 'member') THEN 'staff'
      ELSE 'member' END
    INTO derived
    FROM access_assignments
    WHERE tenant_id = changed.tenant_id AND user_id = changed.user_id;
  UPDATE users SET role = coalesce(derived, 'member')
    WHERE tenant_id = changed.tenant_id AND id = changed.user_id AND role IS DISTINCT FROM coalesce(derived, 'member');
  RETURN NULL;
END
$$;
CREATE TRIGGER access_sync_role AFTER INSERT OR DELETE ON access_assignments
  FOR EACH ROW EXECUTE FUNCTION access_sync_user_role();

-- Existing users keep their role. Row-level security applies to a non-superuser owner too, so the
-- backfill enters each tenant in turn.
DO $$
DECLARE
  t uuid;
BEGIN
  FOR t IN SELECT id FROM tenants LOOP
    PERFORM set_config('rampart.tenant_id', t::text, true);
    INSERT INTO access_assignments (tenant_id, user_id, role_key, created_at)
      SELECT tenant_id, id, role, created_at FROM users ON CONFLICT DO NOTHING;
  END LOOP;
  PERFORM set_config('rampart.tenant_id', '', true);
END
$$;

-- Per-tenant access settings; a tenant without a row has the defaults (src/access/settings.ts).
CREATE TABLE access_settings (
  tenant_id uuid PRIMARY KEY REFERENCES tenants (id),
  -- Critical actions that need a second person's approval (four-eyes).
  four_eyes_actions text[] NOT NULL,
  -- How long a four-eyes request may wait for a decision, and an approval for its execution.
  approval_ttl_minutes int NOT NULL CHECK (approval_ttl_minutes BETWEEN 5 AND 10080),
  -- Who approves operators' elevation requests: another operator, or this tenant's people.
  elevation_approver text NOT NULL CHECK (elevation_approver IN ('operator', 'tenant')),
  -- Approvals needed per elevated role, e.g. {"tenant-admin": 2}; 1 when a role is not named.
  elevation_thresholds jsonb NOT NULL,
  updated_at timestamptz NOT NULL
);
SELECT rampart_enable_tenant_rls('access_settings');
GRANT SELECT, INSERT, UPDATE ON access_settings TO rampart_app;
