import type { Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { createApprovalDecisions } from './approval-decisions.ts';
import { createApprovalExecution } from './approval-execution.ts';
import { createApprovalRequests } from './approval-requests.ts';
import { createStandingCheck } from './approval-standing.ts';
import type { CriticalActions } from './critical.ts';
import type { LockedHoldings } from './locked-holdings.ts';

export type { ApprovalView } from './approval-view.ts';

/*
 * A tenant's four-eyes approvals in three parts: asking and reading (approval-requests.ts), a second
 * person's decision (approval-decisions.ts), and running an approved request once
 * (approval-execution.ts). The platform's flow is platform-approvals.ts.
 */

/** What each part of the approval service is built from. */
export interface ApprovalParts {
  db: Database;
  clock: Clock;
  critical: CriticalActions;
  standings: ReturnType<typeof createStandingCheck>;
}

export function createApprovalService(deps: {
  db: Database;
  clock: Clock;
  critical: CriticalActions;
  lockedHoldings: LockedHoldings;
}) {
  const { db, clock, critical, lockedHoldings } = deps;
  const standings = createStandingCheck({ critical, lockedHoldings });
  const parts: ApprovalParts = { db, clock, critical, standings };
  return {
    ...createApprovalRequests(parts),
    ...createApprovalDecisions(parts),
    ...createApprovalExecution(parts),
  };
}

export type ApprovalService = ReturnType<typeof createApprovalService>;
