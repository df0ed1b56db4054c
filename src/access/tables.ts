import type { Generated } from 'kysely';
import { asTenantId, type Database, type TenantTx } from '../platform/db/index.ts';

export interface AccessRolesTable {
  tenant_id: string;
  key: string;
  name: string;
  permissions: string[];
  created_at: Date;
  updated_at: Date;
}

export interface AccessAssignmentsTable {
  tenant_id: string;
  user_id: string;
  role_key: string;
  created_at: Generated<Date>;
}

export interface AccessSettingsTable {
  tenant_id: string;
  four_eyes_actions: string[];
  approval_ttl_minutes: number;
  elevation_approver: 'operator' | 'tenant';
  elevation_thresholds: Record<string, number> | string;
  updated_at: Date;
}

export interface AccessElevationsTable {
  id: Generated<string>;
  tenant_id: string;
  operator_id: string;
  role_key: string;
  reason: string;
  duration_minutes: number;
  approvals_needed: number;
  approver: 'operator' | 'tenant';
  /** The role's permissions when asked for: what approvers see, and the most the elevation gives. */
  permissions: string[];
  /** A pending request not decided by then lapses. */
  decide_by: Date;
  status: 'pending' | 'active' | 'rejected' | 'revoked';
  requested_at: Date;
  starts_at: Date | null;
  expires_at: Date | null;
  ended_at: Date | null;
  ended_by_type: string | null;
  ended_by_id: string | null;
}

export interface AccessElevationApprovalsTable {
  tenant_id: string;
  elevation_id: string;
  approver_type: 'operator' | 'user';
  approver_id: string;
  decided_at: Date;
}

export type ApprovalStatus = 'pending' | 'approved' | 'rejected' | 'executing' | 'executed' | 'failed';

export interface AccessApprovalRequestsTable {
  id: Generated<string>;
  /** Null: a platform request (an operator action on platform state, migration 0062). */
  tenant_id: string | null;
  action: string;
  permission: string;
  params: unknown;
  params_hash: Buffer;
  /** SHA-256 of the state the request was made against (see `CriticalActionDef.basis`), if any. */
  basis_hash: Buffer | null;
  summary: string;
  requested_by_type: 'operator' | 'user';
  requested_by_id: string;
  requested_elevation_id: string | null;
  requested_at: Date;
  expires_at: Date;
  status: ApprovalStatus;
  decided_by_type: string | null;
  decided_by_id: string | null;
  decided_at: Date | null;
  executed_at: Date | null;
}

export interface AccessTables {
  access_roles: AccessRolesTable;
  access_assignments: AccessAssignmentsTable;
  access_settings: AccessSettingsTable;
  access_elevations: AccessElevationsTable;
  access_elevation_approvals: AccessElevationApprovalsTable;
  access_approval_requests: AccessApprovalRequestsTable;
}

export type Tx = TenantTx<AccessTables>;

export const inTenant = <R>(db: Database, tenantId: string, fn: (tx: Tx) => Promise<R>) =>
  db.withTenant<AccessTables, R>(asTenantId(tenantId), fn);
