import { type AuditInput, recordAuditEvent } from '../audit/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import type { CriticalActions } from './critical.ts';
import { createPlatformApprovalExecution } from './platform-approval-execution.ts';
import { createPlatformApprovalRequests } from './platform-approval-requests.ts';
import type { AccessTables } from './tables.ts';

export type PlatformTx = SystemTx<AccessTables>;

/** Identity's answer, locked (FOR SHARE) in the caller's transaction: is this operator still active? */
// biome-ignore lint/suspicious/noExplicitAny: identity reads its own table through any capability's transaction.
export type OperatorActive = (tx: SystemTx<any>, operatorId: string) => Promise<boolean>;

/**
 * Four-eyes for platform actions (operators' changes of platform state, such as adding a SIEM sink):
 * the tenant flow (approvals.ts) on the same table and states, in the platform scope (rows without a
 * tenant, on the platform audit chain). Differences: every platform action needs approval (there is no
 * per-tenant list to take it off), the approver is another operator (every operator holds
 * `platform-approvals:decide` today, so "still holds it" means "is still an active operator"), and the
 * expiry is fixed. The requester runs it once with the same parameters and gets its result.
 *
 * In two parts: asking, reading and deciding (platform-approval-requests.ts), and running an approved
 * request once (platform-approval-execution.ts).
 */

/** What each part of the platform approval service is built from. */
export interface PlatformApprovalParts {
  clock: Clock;
  critical: CriticalActions;
  operatorActive: OperatorActive;
  /** Runs `fn` in the platform scope (rows without a tenant). */
  inPlatform: <R>(fn: (tx: PlatformTx) => Promise<R>) => Promise<R>;
  /** Records an event on the platform audit chain. */
  audit: (tx: PlatformTx, ctx: ActionContext, event: AuditInput) => Promise<unknown>;
}

export function createPlatformApprovalService(deps: {
  db: Database;
  clock: Clock;
  critical: CriticalActions;
  operatorActive: OperatorActive;
}) {
  const { db, clock, critical, operatorActive } = deps;
  const parts: PlatformApprovalParts = {
    clock,
    critical,
    operatorActive,
    inPlatform: <R>(fn: (tx: PlatformTx) => Promise<R>) => db.withSystem<AccessTables, R>(fn),
    audit: (tx, ctx, event) => recordAuditEvent<AccessTables>(tx, clock, ctx, { ...event, tenantId: null }),
  };
  return { ...createPlatformApprovalRequests(parts), ...createPlatformApprovalExecution(parts) };
}

export type PlatformApprovalService = ReturnType<typeof createPlatformApprovalService>;
