import type { ActionContext, Clock } from '../platform/context.ts';
import type { AppError } from '../platform/http/problem.ts';
import { audit } from './audit.ts';
import type { UserDisabled } from './cache.ts';
import type { CriticalActions } from './critical.ts';
import {
  type Approver,
  approverStanding,
  dropApproval,
  expectedApprover,
  lockStandings,
  type OperatorActive,
  refuseApprover,
  refuseWrongApprover,
} from './elevation-approver.ts';
import { approvalsNeededNow, currentRolePermissions, samePermissions } from './elevation-rules.ts';
import { type ElevationView, type Row, toView } from './elevation-view.ts';
import { accessError } from './errors.ts';
import type { LockedHoldings } from './locked-holdings.ts';
import { loadAccessSettings } from './settings.ts';
import type { Tx } from './tables.ts';

export interface ApprovalDeps {
  clock: Clock;
  critical: CriticalActions;
  lockedHoldings: LockedHoldings;
  operatorActive: OperatorActive;
  userDisabled: UserDisabled;
}

/** How many approvals an elevation has, read in the caller's transaction. */
export async function approvalsOf(tx: Tx, id: string): Promise<number> {
  const row = await tx
    .selectFrom('access_elevation_approvals')
    .select((eb) => eb.fn.countAll<string>().as('n'))
    .where('elevation_id', '=', id)
    .executeTakeFirstOrThrow();
  return Number(row.n);
}

/** Tenant users by ascending id, then operators: the order the decision locks people's rows in. */
const byLockOrder = (a: Approver, b: Approver) =>
  a.approver_type !== b.approver_type
    ? a.approver_type === 'operator'
      ? 1
      : -1
    : a.approver_id < b.approver_id
      ? -1
      : a.approver_id > b.approver_id
        ? 1
        : 0;

/**
 * One approval of a pending request whose row the caller locked FOR UPDATE (elevations.ts `decide`),
 * recorded in the caller's transaction: the view, or the refusal of an approver who may not give it
 * (audited; the caller commits, then throws it). The grant starts when the last needed approval
 * arrives and ends `duration` later.
 *
 * Lock order (docs/access.md, "Lock order"): the elevation row (the caller's); then every person this
 * approval re-checks (`lockStandings`: user rows by ascending id, their assignments and custom roles,
 * operators' rows); then the tenant's access settings FOR SHARE; then the approvals and the audit chain
 * head. The settings come after the people (review, 2026-11-27: a decision held them FOR SHARE while
 * it queued for an earlier approver's row, which a role deletion held while it queued for the row of
 * the approver of a settings change, which held that row FOR SHARE while it queued for the settings:
 * a circle, and PostgreSQL rolled the decision back, 503).
 */
export async function approveElevation(
  tx: Tx,
  deps: ApprovalDeps,
  tenantId: string,
  ctx: ActionContext & { actor: { type: 'operator' | 'user'; id: string } },
  row: Row,
  now: Date,
): Promise<ElevationView | AppError> {
  const { clock } = deps;
  const actor = ctx.actor;
  // Approvers approve the permissions shown on the request: a role deleted or changed since then (or
  // deleted and created anew) no longer matches what they saw.
  const current = await currentRolePermissions(tx, row.role_key);
  if (!current || !samePermissions(current, row.permissions)) {
    throw accessError(
      'elevation_role_changed',
      `The role "${row.role_key}" was ${current ? 'changed' : 'deleted'} after this request was made; ` +
        'reject it, and the operator asks again for the role as it is now.',
    );
  }
  const earlier: Approver[] = await tx
    .selectFrom('access_elevation_approvals')
    .select(['approver_type', 'approver_id'])
    .where('elevation_id', '=', row.id)
    .execute();
  if (earlier.some((a) => a.approver_type === actor.type && a.approver_id === actor.id)) {
    throw accessError('already_approved', 'You approved this request already; it needs someone else.');
  }
  // Security review: a tenant approver gives at most what they hold, and holds it until this commits.
  // When this approval would activate the elevation, every earlier approval is checked again too (each
  // approver still active, still holding what approving needs, not the requester, and of the kind that
  // approves now: a tenant that took approval back does not count operators'): one that no longer
  // counts is dropped, audited, and the request stays pending. Whether it activates depends on the
  // settings, which are locked after the people: so every earlier approver is locked, whatever the
  // threshold turns out to be.
  const self: Approver = { approver_type: actor.type, approver_id: actor.id };
  const standing = await lockStandings(tx, deps, [...earlier, self]);
  // Who decides, and how many approvals it needs, as the tenant has it now (read FOR SHARE: a change of
  // the settings waits for this approval, or this one for it and then sees it).
  const settings = await loadAccessSettings(tx, deps.critical, 'share');
  refuseWrongApprover(settings, actor);
  const expected = expectedApprover(settings);
  const needed = approvalsNeededNow(row, settings);
  const selfStanding = standing(self);
  if (actor.type === 'user' && 'held' in selfStanding) {
    // The operator deciding was authenticated just now; a tenant user gives at most what they hold.
    const refusal = await refuseApprover(tx, deps, tenantId, { ...ctx, actor }, row, selfStanding.held);
    if (refusal) return refusal;
  }
  const checked = earlier.length + 1 >= needed ? [...earlier].sort(byLockOrder) : [];
  for (const who of checked) {
    const reason = approverStanding(row, who, expected, standing(who));
    if (reason) await dropApproval(tx, clock, tenantId, ctx, row, who, reason);
  }
  const inserted = await tx
    .insertInto('access_elevation_approvals')
    .values({
      tenant_id: tenantId,
      elevation_id: row.id,
      approver_type: actor.type,
      approver_id: actor.id,
      decided_at: now,
    })
    .onConflict((oc) => oc.doNothing())
    .returning('approver_id')
    .executeTakeFirst();
  if (!inserted) {
    throw accessError('already_approved', 'You approved this request already; it needs someone else.');
  }
  const approvals = await approvalsOf(tx, row.id);
  const active = approvals >= needed;
  const updated =
    active || needed > row.approvals_needed
      ? await tx
          .updateTable('access_elevations')
          .set(
            active
              ? {
                  status: 'active',
                  approvals_needed: needed,
                  starts_at: now,
                  expires_at: new Date(now.getTime() + row.duration_minutes * 60_000),
                }
              : { approvals_needed: needed },
          )
          .where('id', '=', row.id)
          .returningAll()
          .executeTakeFirstOrThrow()
      : row;
  await audit(clock, tx, tenantId, ctx, {
    action: active ? 'access.elevation.granted' : 'access.elevation.approved',
    outcome: 'success',
    target: { type: 'elevation', id: row.id },
    details: { operatorId: row.operator_id, role: row.role_key, approvals, needed },
  });
  return toView(updated, approvals, now, settings);
}
