import type { Generated } from 'kysely';

export interface TenantsTable {
  id: Generated<string>;
  slug: string;
  display_name: string;
  region: string;
  status: 'active' | 'suspended';
  suspended_reason: string | null;
  suspended_at: Date | null;
  created_at: Generated<Date>;
  updated_at: Generated<Date>;
}

export interface TenantSettingsTable {
  tenant_id: string;
  settings: Generated<unknown>;
  updated_at: Generated<Date>;
}

export interface TenancyTables {
  tenants: TenantsTable;
  tenant_settings: TenantSettingsTable;
}
