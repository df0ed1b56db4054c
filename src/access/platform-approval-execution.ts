import type { ActionContext } from '../platform/context.ts';
import { safeEqual } from '../platform/crypto/tokens.ts';
import { isTransientConflict, type SystemTx } from '../platform/db/index.ts';
import { sameParams } from './approval-standing.ts';
import { personOf, platformView, type Row, samePerson, toView } from './approval-view.ts';
import type { JsonValue, PlatformGuard } from './critical.ts';
import { accessError } from './errors.ts';
import {
  lockedPlatformRequest,
  platformBasisHash,
  refusePlatformExpired,
} from './platform-approval-requests.ts';
import type { PlatformApprovalParts, PlatformTx } from './platform-approvals.ts';

/** Raised by a platform approval's guard in the action's transaction (which it rolls back: nothing ran). */
class ApproverGone extends Error {}
/** The same, when what the action overwrites changed since it was asked for. */
class StateGone extends Error {}

/** Running an approved platform request once: claimed, re-checked, run under its guard, recorded. */
export function createPlatformApprovalExecution(parts: PlatformApprovalParts) {
  const { clock, critical, operatorActive, inPlatform, audit } = parts;

  /** The approver is still an active operator, read with their row locked until `tx` commits. */
  // biome-ignore lint/suspicious/noExplicitAny: the approval's transaction or the action's (any capability's tables).
  const approverStands = (tx: SystemTx<any>, row: Row) =>
    row.decided_by_type === 'operator' && row.decided_by_id !== null
      ? operatorActive(tx, row.decided_by_id)
      : Promise.resolve(false);

  /** Whether the state is still the one the request was asked against (as for tenant actions' `basis`). */
  // biome-ignore lint/suspicious/noExplicitAny: the approval's transaction or the action's (any capability's tables).
  async function stateStands(tx: SystemTx<any>, row: Row): Promise<boolean> {
    if (!row.basis_hash) return true;
    const now = await platformBasisHash(critical, tx, row.action, row.params as JsonValue);
    return now !== null && safeEqual(now, Buffer.from(row.basis_hash));
  }

  /** The state changed: the request stays approved (it can only run on the state the approver saw). */
  async function recordStateChanged(tx: PlatformTx, ctx: ActionContext, row: Row) {
    await tx
      .updateTable('access_approval_requests')
      .set({ status: 'approved' })
      .where('id', '=', row.id)
      .execute();
    await audit(tx, ctx, {
      action: 'access.approval.state_changed',
      outcome: 'denied',
      target: { type: 'approval', id: row.id },
      details: { action: row.action },
    });
  }

  const stateChangedError = () =>
    accessError(
      'state_changed',
      'What this action changes was changed after it was asked for, and running it would undo that; ' +
        'nothing was run. Ask again, against the current state.',
    );

  /** Nothing ran (a conflict rolled the action back): the approval is given back, as for tenant requests. */
  async function recordConflicted(tx: PlatformTx, ctx: ActionContext, row: Row) {
    await tx
      .updateTable('access_approval_requests')
      .set({ status: 'approved' })
      .where('id', '=', row.id)
      .where('status', '=', 'executing')
      .execute();
    await audit(tx, ctx, {
      action: 'access.approval.conflicted',
      outcome: 'failure',
      target: { type: 'approval', id: row.id },
      details: { action: row.action, approvedBy: row.decided_by_id },
    });
  }

  const conflictError = () =>
    accessError(
      'execution_conflict',
      'The action collided with a concurrent change and did not run; the approval is still usable: run it again.',
    );

  /** The approval no longer counts: back to pending (another operator may approve it), audited. */
  async function recordApproverLost(tx: PlatformTx, ctx: ActionContext, row: Row) {
    await tx
      .updateTable('access_approval_requests')
      .set({ status: 'pending', decided_by_type: null, decided_by_id: null, decided_at: null })
      .where('id', '=', row.id)
      .execute();
    await audit(tx, ctx, {
      action: 'access.approval.approver_lost',
      outcome: 'denied',
      target: { type: 'approval', id: row.id },
      details: { action: row.action, approvedBy: row.decided_by_id },
    });
  }

  const approverLostError = () =>
    accessError(
      'approver_lost_permission',
      'The operator who approved this is no longer an active operator; nothing was run. It is pending ' +
        'again: have another operator approve it.',
    );

  type Claim = { row: Row } | { expired: Row } | { changed: true } | { lost: true } | { stateChanged: true };

  /** The checks before an approved request runs, on its locked row; then it is marked `executing`. */
  async function claim(tx: PlatformTx, ctx: ActionContext, id: string, params: JsonValue): Promise<Claim> {
    const row = await lockedPlatformRequest(tx, id);
    if (!samePerson(personOf(ctx), { type: row.requested_by_type, id: row.requested_by_id })) {
      throw accessError('not_requester', 'Only the operator who asked for this action runs it.');
    }
    if (row.status !== 'approved') {
      throw accessError('approval_not_approved', `This request is ${row.status}; it cannot run.`);
    }
    if (row.expires_at <= clock.now()) return { expired: row };
    if (!sameParams(params, row.params_hash)) {
      await audit(tx, ctx, {
        action: 'access.approval.params_refused',
        outcome: 'denied',
        target: { type: 'approval', id },
        details: { action: row.action },
      });
      return { changed: true };
    }
    if (!(await approverStands(tx, row))) {
      await recordApproverLost(tx, ctx, row);
      return { lost: true };
    }
    if (!(await stateStands(tx, row))) {
      await recordStateChanged(tx, ctx, row);
      return { stateChanged: true };
    }
    await tx
      .updateTable('access_approval_requests')
      .set({ status: 'executing' })
      .where('id', '=', id)
      .execute();
    return { row };
  }

  return {
    /**
     * Runs an approved platform request once, with its recorded parameters (the caller sends them again;
     * different ones run nothing). The claim (approved -> executing) commits before the action runs, so
     * racing executions run it once; the approver's standing is checked in the claim and again, locked,
     * first in the action's own transaction (the guard). Returns the request and the action's result.
     */
    async execute(ctx: ActionContext, id: string, params: JsonValue) {
      const claimed = await inPlatform((tx) => claim(tx, ctx, id, params));
      if ('expired' in claimed) return refusePlatformExpired(parts, ctx, claimed.expired);
      if ('changed' in claimed) {
        throw accessError(
          'params_changed',
          'These parameters differ from the approved ones; nothing was run.',
        );
      }
      if ('lost' in claimed) throw approverLostError();
      if ('stateChanged' in claimed) throw stateChangedError();
      const { row } = claimed;
      const def = critical.action(row.action);
      let guarded = false;
      const guard: PlatformGuard = async (tx) => {
        guarded = true;
        if (!(await approverStands(tx, row))) throw new ApproverGone();
        if (!(await stateStands(tx, row))) throw new StateGone();
      };
      let failure: unknown = null;
      let result: Record<string, JsonValue> = {};
      try {
        if (!def?.executePlatform) throw new Error(`platform action ${row.action} has no executor`);
        result = await def.executePlatform({
          ctx,
          params: row.params as JsonValue,
          approvalId: id,
          approvedBy: row.decided_by_id,
          guard,
        });
      } catch (error) {
        failure = error;
      }
      if (failure instanceof ApproverGone) {
        // The guard refused in the action's transaction, which rolled back: nothing ran.
        await inPlatform(async (tx) => recordApproverLost(tx, ctx, await lockedPlatformRequest(tx, id)));
        throw approverLostError();
      }
      if (failure instanceof StateGone) {
        await inPlatform(async (tx) => recordStateChanged(tx, ctx, await lockedPlatformRequest(tx, id)));
        throw stateChangedError();
      }
      if (isTransientConflict(failure)) {
        // A deadlock or serialization failure rolled the action's transaction back whole: nothing ran.
        await inPlatform(async (tx) => recordConflicted(tx, ctx, row));
        throw conflictError();
      }
      const finished = await inPlatform(async (tx) => {
        const updated = await tx
          .updateTable('access_approval_requests')
          .set({ status: failure ? 'failed' : 'executed', executed_at: clock.now() })
          .where('id', '=', id)
          .returningAll()
          .executeTakeFirstOrThrow();
        await audit(tx, ctx, {
          action: failure ? 'access.approval.failed' : 'access.approval.executed',
          outcome: failure ? 'failure' : 'success',
          target: { type: 'approval', id },
          details: { action: row.action, approvedBy: row.decided_by_id },
        });
        return platformView(critical, toView(updated, clock.now()));
      });
      if (failure) throw failure;
      if (!guarded) throw new Error(`platform action ${row.action} ran without its approval's guard`);
      return { approval: finished, result };
    },
  };
}
