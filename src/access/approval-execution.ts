import type { TenantRef } from '../identity/index.ts';
import type { ActionContext } from '../platform/context.ts';
import { type AnyTenantTx, isTransientConflict, type TxGuard } from '../platform/db/index.ts';
import { lockedRequest, refuseExpired } from './approval-requests.ts';
import { type StandingLoss, StandingLost, sameParams } from './approval-standing.ts';
import { personOf, type Row, samePerson, toView } from './approval-view.ts';
import type { ApprovalParts } from './approvals.ts';
import { audit } from './audit.ts';
import type { Classified, JsonValue } from './critical.ts';
import { accessError } from './errors.ts';
import { inTenant, type Tx } from './tables.ts';

const CONFLICT_ATTEMPTS = 3;

/** Running an approved request once: claimed, re-checked, run under its guard, recorded. */
export function createApprovalExecution(parts: ApprovalParts) {
  const { db, clock, critical, standings } = parts;

  type Claim = { row: Row } | { expired: Row } | { changed: Row } | { lost: StandingLoss };

  /**
   * An approval that no longer stands, recorded on its locked row: one whose approver lost the right goes
   * back to pending (for someone who may decide to approve again); one whose state changed stays
   * approved (it is refused again until it expires). Nothing ran.
   */
  async function recordLoss(tx: Tx, tenantId: string, ctx: ActionContext, row: Row, loss: StandingLoss) {
    await tx
      .updateTable('access_approval_requests')
      .set(
        loss === 'approverLost'
          ? { status: 'pending', decided_by_type: null, decided_by_id: null, decided_at: null }
          : { status: 'approved' },
      )
      .where('id', '=', row.id)
      .execute();
    await audit(clock, tx, tenantId, ctx, {
      action: loss === 'approverLost' ? 'access.approval.approver_lost' : 'access.approval.state_changed',
      outcome: 'denied',
      target: { type: 'approval', id: row.id },
      details:
        loss === 'approverLost'
          ? { action: row.action, approvedBy: row.decided_by_id }
          : { action: row.action },
    });
  }

  /**
   * The checks before an approved request runs, on its locked row: the same action (when the caller
   * names one), asked by this person, approved, not expired, exactly the approved parameters; then, in
   * this transaction and with what they read locked, an approver who still holds `approvals:decide` and
   * would not benefit from the action, and the state it was asked against. Then the row gets `status`
   * in the caller's transaction: a second claim finds it taken.
   */
  async function claim(
    tx: Tx,
    tenant: TenantRef,
    ctx: ActionContext,
    id: string,
    params: JsonValue,
    to: { status: 'executing' | 'executed'; action?: string },
  ): Promise<Claim> {
    const by = personOf(ctx);
    const row = await lockedRequest(tx, id);
    if (to.action !== undefined && row.action !== to.action) {
      throw accessError('approval_other_action', `This request is for ${row.action}, not ${to.action}.`);
    }
    if (!samePerson(by, { type: row.requested_by_type, id: row.requested_by_id })) {
      throw accessError('not_requester', 'Only the person who asked for this action runs it.');
    }
    // Asked for under an elevation, it runs under that elevation only: revoked or expired, the elevation
    // takes the approval with it (review: the operator ran it later under a new elevation, which another
    // operator may approve, after the tenant had revoked the first).
    const elevationId = ctx.actor.type === 'operator' ? (ctx.actor.elevationId ?? null) : null;
    if (row.requested_elevation_id !== null && row.requested_elevation_id !== elevationId) {
      throw accessError(
        'approval_elevation_ended',
        'This request was made under an elevation that has ended (or is not the one you act under now): ' +
          'ask for it again under your current elevation.',
      );
    }
    if (row.status !== 'approved') {
      throw accessError('approval_not_approved', `This request is ${row.status}; it cannot run.`);
    }
    const runsOn = critical.action(row.action)?.runsOn;
    if (to.action === undefined && runsOn) {
      throw accessError('runs_on_route', `This approved action runs when you ${runsOn.run}.`);
    }
    const now = clock.now();
    if (row.expires_at <= now) return { expired: row };
    if (!sameParams(params, row.params_hash)) {
      await audit(clock, tx, tenant.id, ctx, {
        action: 'access.approval.params_refused',
        outcome: 'denied',
        target: { type: 'approval', id },
        details: { action: row.action },
      });
      return { changed: row };
    }
    const lost = await standings.check(tx, tenant, row);
    if (lost) {
      await recordLoss(tx, tenant.id, ctx, row, lost);
      return { lost };
    }
    await tx
      .updateTable('access_approval_requests')
      .set(to.status === 'executed' ? { status: 'executed', executed_at: now } : { status: 'executing' })
      .where('id', '=', id)
      .execute();
    return { row };
  }

  /** The refusal of an approval that no longer stands. */
  function lossError(loss: StandingLoss) {
    return loss === 'approverLost'
      ? accessError(
          'approver_lost_permission',
          'The person who approved this no longer holds approvals:decide in this tenant (role removed, ' +
            'account disabled, or elevation ended), or would now get access from it (they were given the ' +
            'role it widens); nothing was run. It is pending again: have someone who may decide approve it.',
        )
      : accessError(
          'state_changed',
          'What this action changes was changed after it was asked for, and running it would undo that; ' +
            'nothing was run. Ask again, against the current state.',
        );
  }

  /** The claimed row, or the refusal of a claim that failed a check (after its transaction committed). */
  async function claimedRow(tenantId: string, ctx: ActionContext, claimed: Claim): Promise<Row> {
    if ('expired' in claimed) return refuseExpired(parts, tenantId, ctx, claimed.expired);
    if ('changed' in claimed) {
      throw accessError('params_changed', 'These parameters differ from the approved ones; nothing was run.');
    }
    if ('lost' in claimed) throw lossError(claimed.lost);
    return claimed.row;
  }

  /** Runs the claimed request's executor with the guard of its re-checks; what failed, and whether it was guarded. */
  async function run(tenant: TenantRef, ctx: ActionContext, row: Row) {
    const def = critical.action(row.action);
    let guarded = false;
    // The approver's user row is locked by the check: a service that locks users first takes it with
    // its own, in id order (TxGuard.userIds).
    const approver = row.decided_by_type === 'user' && row.decided_by_id ? [row.decided_by_id] : [];
    const guard: TxGuard = Object.assign(
      async (tx: AnyTenantTx) => {
        guarded = true;
        const lost = await standings.check(tx as Tx, tenant, row);
        if (lost) throw new StandingLost(lost);
      },
      { userIds: approver },
    );
    if (!def?.execute) {
      return { failure: new Error(`critical action ${row.action} has no executor`), guarded };
    }
    try {
      await def.execute({ tenant, ctx, params: row.params as JsonValue, guard });
      return { failure: null, guarded };
    } catch (error) {
      return { failure: error, guarded };
    }
  }

  /**
   * The action kept conflicting with concurrent transactions (each attempt rolled back: nothing ran).
   * The claim is undone (executing -> approved, its expiry unchanged), audited, and the requester is
   * told to run it again: a conflict is not the action failing, and must not use the approval up.
   */
  async function giveBack(tenantId: string, ctx: ActionContext, row: Row): Promise<never> {
    await inTenant(db, tenantId, async (tx) => {
      await tx
        .updateTable('access_approval_requests')
        .set({ status: 'approved' })
        .where('id', '=', row.id)
        .where('status', '=', 'executing')
        .execute();
      await audit(clock, tx, tenantId, ctx, {
        action: 'access.approval.conflicted',
        outcome: 'failure',
        target: { type: 'approval', id: row.id },
        details: { action: row.action, approvedBy: row.decided_by_id },
      });
    });
    throw accessError(
      'execution_conflict',
      'The action collided with a concurrent change and did not run; the approval is still usable: run it again.',
    );
  }

  return {
    /**
     * Uses an approved request on the safe request that does the action (an approved download): the
     * same checks as `execute`, and the request is marked executed, with its audit event, in one
     * transaction before the route answers, so the approval serves exactly one request.
     */
    async consume(tenant: TenantRef, ctx: ActionContext, id: string, what: Classified): Promise<void> {
      const claimed = await inTenant(db, tenant.id, async (tx) => {
        const result = await claim(tx, tenant, ctx, id, what.params, {
          status: 'executed',
          action: what.action,
        });
        if ('row' in result) {
          await audit(clock, tx, tenant.id, ctx, {
            action: 'access.approval.executed',
            outcome: 'success',
            target: { type: 'approval', id },
            details: { action: result.row.action, approvedBy: result.row.decided_by_id },
          });
        }
        return result;
      });
      await claimedRow(tenant.id, ctx, claimed);
    },

    /**
     * Runs an approved request once, with its recorded parameters. The caller sends the parameters
     * again: if they differ from what was approved, nothing runs. Claiming the request (approved ->
     * executing) commits before the action runs, so a second execution finds it taken; if the process
     * dies mid-way the request stays `executing` and is never run twice. The approver's standing and the
     * state are checked in the claim and again, locked, in the action's own transaction (the `guard`).
     */
    async execute(tenant: TenantRef, ctx: ActionContext, id: string, params: JsonValue) {
      const claimed = await inTenant(db, tenant.id, (tx) =>
        claim(tx, tenant, ctx, id, params, { status: 'executing' }),
      );
      const row = await claimedRow(tenant.id, ctx, claimed);
      // A deadlock or serialization failure rolled the action's transaction back whole: nothing ran, so
      // it is run again, a few times at most; if it still conflicts, the approval is given back.
      let attempt = 0;
      let outcome = await run(tenant, ctx, row);
      while (isTransientConflict(outcome.failure) && ++attempt < CONFLICT_ATTEMPTS) {
        outcome = await run(tenant, ctx, row);
      }
      const { failure, guarded } = outcome;
      if (isTransientConflict(failure)) return giveBack(tenant.id, ctx, row);
      if (failure instanceof StandingLost && guarded) {
        // The guard refused in the action's transaction, which rolled back: nothing ran.
        await inTenant(db, tenant.id, async (tx) =>
          recordLoss(tx, tenant.id, ctx, await lockedRequest(tx, id), failure.loss),
        );
        throw lossError(failure.loss);
      }
      const finished = await inTenant(db, tenant.id, async (tx) => {
        const updated = await tx
          .updateTable('access_approval_requests')
          .set({ status: failure ? 'failed' : 'executed', executed_at: clock.now() })
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirstOrThrow();
        await audit(clock, tx, tenant.id, ctx, {
          action: failure ? 'access.approval.failed' : 'access.approval.executed',
          outcome: failure ? 'failure' : 'success',
          target: { type: 'approval', id },
          details: { action: row.action, approvedBy: row.decided_by_id },
        });
        return toView(updated, clock.now());
      });
      if (failure) throw failure;
      // An executor that never called the guard ran without the re-checks: a bug in that capability.
      if (!guarded) throw new Error(`critical action ${row.action} ran without its approval's guard`);
      return finished;
    },
  };
}
