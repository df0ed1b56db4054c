import type { ActionContext, Clock } from '../platform/context.ts';
import type { AppError } from '../platform/http/problem.ts';
import { audit } from './audit.ts';
import type { UserDisabled } from './cache.ts';
import type { Row } from './elevation-view.ts';
import { accessError } from './errors.ts';
import type { LockedHoldings } from './locked-holdings.ts';
import type { AccessSettings } from './settings.ts';
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

/** Identity's "is this operator active", locked in the caller's transaction until it commits. */
export type OperatorActive = (tx: Tx, operatorId: string) => Promise<boolean>;

export interface Approver {
  approver_type: 'operator' | 'user';
  approver_id: string;
}

/** Who decides a tenant's elevation requests now: the kind of person its `elevationApprover` names. */
export const expectedApprover = (settings: AccessSettings): Approver['approver_type'] =>
  settings.elevationApprover === 'operator' ? 'operator' : 'user';

/** Refuses a decider of the other kind, or an operator acting under an elevation (`wrong_approver`). */
export function refuseWrongApprover(settings: AccessSettings, actor: ActionContext['actor']): void {
  if (actor.type === expectedApprover(settings) && !(actor.type === 'operator' && actor.elevationId)) return;
  throw accessError(
    'wrong_approver',
    settings.elevationApprover === 'operator'
      ? 'Another operator decides this request (the tenant lets operators approve).'
      : "This tenant's own people decide this request.",
  );
}

/** What a tenant user misses to approve this request: elevations:decide, or permissions it gives. */
function missingFor(held: ReadonlySet<string>, row: Row) {
  const lost = !held.has('elevations:decide');
  return { lost, missing: lost ? ['elevations:decide'] : row.permissions.filter((p) => !held.has(p)).sort() };
}

/** What a user holds, or whether an operator is active: read with the rows that decide it locked. */
export type Standing = { held: ReadonlySet<string> } | { active: boolean };

/**
 * The standing of each of these people, read in the caller's transaction with the rows that decide it
 * locked until it commits, in the lock order of docs/access.md ("Lock order"): every user's row first,
 * in ascending id order, then each user's assignments and custom roles (locked-holdings.ts), then the
 * operators' rows, in ascending id order. A role deletion or a removal of tenant-admin locks user rows
 * in the same order before Access's rows, so it waits for the caller or the caller for it.
 */
export async function lockStandings(
  tx: Tx,
  deps: { lockedHoldings: LockedHoldings; operatorActive: OperatorActive; userDisabled: UserDisabled },
  people: readonly Approver[],
): Promise<(who: Approver) => Standing> {
  const ids = (type: Approver['approver_type']) =>
    [...new Set(people.filter((p) => p.approver_type === type).map((p) => p.approver_id))].sort();
  const users = ids('user');
  // Every user row FOR SHARE before any user's Access rows (lockedHoldings takes each user's row, then theirs).
  for (const id of users) await deps.userDisabled(tx, id, true);
  const standings = new Map<string, Standing>();
  for (const id of users) {
    standings.set(`user:${id}`, { held: await deps.lockedHoldings(tx, { type: 'user', id }) });
  }
  for (const id of ids('operator')) {
    standings.set(`operator:${id}`, { active: await deps.operatorActive(tx, id) });
  }
  return (who) => {
    const standing = standings.get(`${who.approver_type}:${who.approver_id}`);
    if (!standing) throw new Error(`no standing read for ${who.approver_type} ${who.approver_id}`);
    return standing;
  };
}

/**
 * Why an approval no longer counts, or null, from the approver's standing (`lockStandings`). The
 * approver must be of the kind the tenant lets approve now (`expected`, from its current
 * `elevationApprover`). A tenant approver must still be active and hold what a single approver must hold
 * (elevations:decide and every permission of the request); an operator approver must still be an active
 * operator. Nobody counts as approver of their own request.
 */
export function approverStanding(
  row: Row,
  who: Approver,
  expected: Approver['approver_type'],
  standing: Standing,
):
  | 'approver_changed'
  | 'decide_permission_lost'
  | 'permission_not_held'
  | 'operator_inactive'
  | 'requester'
  | null {
  if (who.approver_type !== expected) return 'approver_changed';
  if (who.approver_type === 'operator') {
    if (who.approver_id === row.operator_id) return 'requester';
    return 'active' in standing && standing.active ? null : 'operator_inactive';
  }
  const { lost, missing } = missingFor('held' in standing ? standing.held : new Set(), row);
  return lost ? 'decide_permission_lost' : missing.length > 0 ? 'permission_not_held' : null;
}

/**
 * Drops an earlier approval that no longer counts (its approver lost the right to give it), audited in
 * the caller's transaction: the elevation stays pending until someone who may approve does.
 */
export async function dropApproval(
  tx: Tx,
  clock: Clock,
  tenantId: string,
  ctx: ActionContext,
  row: Row,
  who: Approver,
  reason: string,
): Promise<void> {
  await tx
    .deleteFrom('access_elevation_approvals')
    .where('elevation_id', '=', row.id)
    .where('approver_type', '=', who.approver_type)
    .where('approver_id', '=', who.approver_id)
    .execute();
  await audit(clock, tx, tenantId, ctx, {
    action: 'access.elevation.approval_dropped',
    outcome: 'success',
    target: { type: 'elevation', id: row.id },
    details: {
      reason,
      approverType: who.approver_type,
      approverId: who.approver_id,
      operatorId: row.operator_id,
      role: row.role_key,
    },
  });
}

/**
 * Refuses a tenant user's approval they may not give, audited in the caller's transaction (which records
 * nothing else when this refuses); returns the problem for the caller to throw once it committed.
 * `held`: what they hold, read with `lockStandings` by the caller (which orders the locks it takes).
 */
export async function refuseApprover(
  tx: Tx,
  deps: { clock: Clock },
  tenantId: string,
  ctx: ActionContext & { actor: { type: 'user'; id: string } },
  row: Row,
  held: ReadonlySet<string>,
): Promise<AppError | null> {
  const { lost, missing } = missingFor(held, row);
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
