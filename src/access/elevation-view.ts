import { approvalsNeededNow } from './elevation-rules.ts';
import type { AccessSettings } from './settings.ts';
import type { AccessElevationsTable } from './tables.ts';

/** How an operator's credential was obtained (see identity's OperatorCredential). */
export interface OperatorFactor {
  kind: 'session' | 'api';
  mfaAt: Date | null;
}

/** Asking for an elevation needs a second factor this recent (operators sign in with password + TOTP). */
export const ELEVATION_STEP_UP_MS = 15 * 60_000;
/**
 * Deciding (approving, rejecting an elevation; approving or running a four-eyes action) needs a second
 * factor this recent, as for tenant users (identity's step-up window). Operators confirm it by signing in
 * again.
 */
export const DECISION_STEP_UP_MS = 5 * 60_000;

export interface ElevationView {
  id: string;
  tenantId: string;
  operatorId: string;
  role: string;
  permissions: string[];
  reason: string;
  durationMinutes: number;
  approvalsNeeded: number;
  approvals: number;
  approver: 'operator' | 'tenant';
  status: 'pending' | 'active' | 'rejected' | 'revoked' | 'expired';
  requestedAt: string;
  decideBy: string;
  startsAt: string | null;
  expiresAt: string | null;
}

export type Row = { id: string } & Omit<AccessElevationsTable, 'id'>;

/**
 * `settingsNow`: the tenant's access settings as they are now (null where they were not read: a request
 * just ended). A pending request shows what a decision would read from them (elevation-approval.ts):
 * who decides it (`elevationApprover`), and how many approvals it needs (the higher of the number
 * recorded when it was asked for and its role's threshold now). Review: a request showed the old mode
 * after a change, and its approvers were refused as `wrong_approver`; and it showed the threshold at the
 * time of asking after the threshold was raised, one approval short of what a decision needed. Any other
 * keeps what was recorded.
 */
export function toView(
  row: Row,
  approvals: number,
  now: Date,
  settingsNow: AccessSettings | null,
): ElevationView {
  // Expiry is read from the clock, never written by a job: of a grant, and of a request left undecided.
  const expired =
    (row.status === 'active' && row.expires_at !== null && row.expires_at <= now) ||
    (row.status === 'pending' && row.decide_by <= now);
  const status = expired ? 'expired' : row.status;
  const pendingNow = status === 'pending' ? settingsNow : null;
  return {
    id: row.id,
    tenantId: row.tenant_id,
    operatorId: row.operator_id,
    role: row.role_key,
    permissions: row.permissions,
    reason: row.reason,
    durationMinutes: row.duration_minutes,
    approvalsNeeded: pendingNow ? approvalsNeededNow(row, pendingNow) : row.approvals_needed,
    approvals,
    approver: pendingNow ? pendingNow.elevationApprover : row.approver,
    status,
    requestedAt: row.requested_at.toISOString(),
    decideBy: row.decide_by.toISOString(),
    startsAt: row.starts_at?.toISOString() ?? null,
    expiresAt: row.expires_at?.toISOString() ?? null,
  };
}

/** An operator's credential passed a second factor within the window (API tokens never did). */
export const hasRecentOperatorFactor = (
  factor: OperatorFactor | null | undefined,
  now: Date,
  windowMs: number,
) =>
  factor?.kind === 'session' && factor.mfaAt !== null && now.getTime() - factor.mfaAt.getTime() <= windowMs;

/** Where a decision is made: the tenant's own route names the tenant; an operator's names their credential. */
export interface DecisionScope {
  tenantId?: string;
  factor?: OperatorFactor | null;
}
