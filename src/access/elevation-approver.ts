import type { ActionContext, Clock } from '../platform/context.ts';
import type { AppError } from '../platform/http/problem.ts';
import { audit } from './audit.ts';
import type { Row } from './elevation-view.ts';
import { accessError } from './errors.ts';
import type { LockedHoldings } from './locked-holdings.ts';
import type { Tx } from './tables.ts';

/*
 * Who may approve an elevation (security review: a tenant user with `elevations:decide` could approve an
 * operator's elevation to a role whose permissions they did not hold themselves, handing out more than
 * they have; assigning a role refuses exactly that with `permission_not_held`, see grants.ts).
 *
 * A tenant approver must hold `elevations:decide` and every permission of the request (the role's
 * permissions when it was asked for: the most the elevation can give), read in the transaction that
 * records the approval with the rows that give them locked until it commits (locked-holdings.ts): a role
 * removed or an account disabled meanwhile either waits for the approval or is seen by it.
 *
 * Operator approvers (a tenant that lets operators approve) are not held to it: they approve with the
 * platform permission `elevations:approve`, and the tenant permissions an operator holds come only from
 * their own elevations, which are not what approving is about (an operator acting under an elevation is
 * refused as approver, see `wrong_approver`). Requiring the role's tenant permissions of them would mean
 * first elevating the approver, which is the thing being approved. Handing approval to operators is the
 * tenant's choice, and a four-eyes one (`access.four-eyes.reduce`).
 */

/**
 * Refuses a tenant user's approval they may not give, audited in the caller's transaction (which records
 * nothing else when this refuses); returns the problem for the caller to throw once it committed.
 */
export async function refuseApprover(
  tx: Tx,
  deps: { clock: Clock; lockedHoldings: LockedHoldings },
  tenantId: string,
  ctx: ActionContext & { actor: { type: 'user'; id: string } },
  row: Row,
): Promise<AppError | null> {
  const held = await deps.lockedHoldings(tx, ctx.actor);
  const lost = !held.has('elevations:decide');
  const missing = lost ? ['elevations:decide'] : row.permissions.filter((p) => !held.has(p)).sort();
  if (missing.length === 0) return null;
  await audit(deps.clock, tx, tenantId, ctx, {
    action: 'access.elevation.approval_refused',
    outcome: 'denied',
    target: { type: 'elevation', id: row.id },
    details: {
      reason: lost ? 'decide_permission_lost' : 'permission_not_held',
      missing: missing.join(' '),
      operatorId: row.operator_id,
      role: row.role_key,
    },
  });
  return lost
    ? accessError(
        'decide_permission_lost',
        'You no longer hold elevations:decide in this tenant; nothing was recorded.',
      )
    : accessError(
        'permission_not_held',
        `This elevation would give ${missing.join(', ')}, which you do not hold; only someone who holds ` +
          `every permission of the role "${row.role_key}" (as asked for) may approve it. Nothing was recorded.`,
      );
}
