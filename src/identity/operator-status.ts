import type { ActionContext } from '../platform/context.ts';
import { operatorAdminError } from './errors.ts';
import type { OperatorSummary, OperatorTx, OperatorWrites } from './operator-writes.ts';
import { operatorKey } from './operators.ts';

/** An operator's status: disabling, enabling (after another operator's approval) and unlocking. */
export function createOperatorStatus({
  deps,
  system,
  audit,
  publish,
  lockOperator,
  revokeAllInTx,
}: OperatorWrites) {
  return {
    /**
     * Disables an operator: every credential revoked, sign-in refused like a wrong password. Never
     * oneself, never the last active operator (nobody could enable anyone again except through the CLI).
     */
    async disable(
      ctx: ActionContext,
      operatorId: string,
      reason: string | null,
    ): Promise<OperatorSummary & { revoked: number }> {
      if (ctx.actor.type === 'operator' && ctx.actor.id === operatorId) {
        throw operatorAdminError('cannot_disable_self', 'Ask another operator to disable your account.');
      }
      const result = await system(async (tx) => {
        // Lock every active operator in id order first: two operators disabling each other at once run
        // one after the other, and the second sees the first's change (and the last-operator rule holds).
        const active = await tx
          .selectFrom('operators')
          .select('id')
          .where('status', '=', 'active')
          .orderBy('id')
          .forUpdate()
          .execute();
        const target = await lockOperator(tx, operatorId);
        if (target.status === 'disabled') {
          throw operatorAdminError('operator_already_disabled', `${target.email} is disabled already.`);
        }
        if (ctx.actor.type === 'operator' && !active.some((a) => a.id === ctx.actor.id)) {
          // The caller was disabled while this request waited for the locks.
          throw operatorAdminError('operator_not_found', 'Your own account is no longer active.');
        }
        if (active.filter((a) => a.id !== operatorId).length === 0) {
          throw operatorAdminError(
            'last_operator',
            `${target.email} is the last active operator; create or enable another first.`,
          );
        }
        await tx.updateTable('operators').set({ status: 'disabled' }).where('id', '=', operatorId).execute();
        const revoked = await revokeAllInTx(tx, operatorId);
        await audit(
          tx,
          ctx,
          'identity.operator.disabled',
          { type: 'operator', id: operatorId },
          {
            reason,
            count: revoked,
          },
        );
        return { id: target.id, email: target.email, status: 'disabled' as const, revoked };
      });
      await publish([operatorKey(operatorId)]);
      await deps.endElevations?.(ctx, operatorId).catch((error: unknown) => deps.onBackgroundError?.(error));
      return result;
    },

    /**
     * The operator an enable would bring back, refused as `enable` would refuse it (unknown, not
     * disabled): asked before an enable is put up for another operator's approval.
     */
    planEnable: (operatorId: string): Promise<OperatorSummary> =>
      system(async (tx) => {
        const target = await lockOperator(tx, operatorId);
        if (target.status !== 'disabled') {
          throw operatorAdminError('operator_not_disabled', `${target.email} is not disabled.`);
        }
        return { id: target.id, email: target.email, status: target.status };
      }),

    /**
     * Enables a disabled operator; their revoked credentials stay revoked (they sign in anew). Through
     * the API only as an approved platform action (access's four-eyes), whose `guard` runs first here
     * (it locks the approver's row FOR SHARE; disabling locks active operators, never a disabled target
     * before them, so the two cannot deadlock); the CLI enables directly. Elevations the disable did not
     * end (its run after the commit failed) are ended first; the enable fails if that fails.
     */
    async enable(
      ctx: ActionContext,
      operatorId: string,
      guard?: (tx: OperatorTx) => Promise<void>,
    ): Promise<OperatorSummary> {
      // Only while disabled: a refused enable of an active operator must not take their elevations.
      const disabled = await system(async (tx) => (await lockOperator(tx, operatorId)).status === 'disabled');
      if (disabled) await deps.endElevations?.(ctx, operatorId);
      return system(async (tx) => {
        await guard?.(tx);
        const target = await lockOperator(tx, operatorId);
        if (target.status !== 'disabled') {
          throw operatorAdminError('operator_not_disabled', `${target.email} is not disabled.`);
        }
        await tx.updateTable('operators').set({ status: 'active' }).where('id', '=', operatorId).execute();
        await audit(tx, ctx, 'identity.operator.enabled', { type: 'operator', id: operatorId });
        return { id: target.id, email: target.email, status: 'active' as const };
      });
    },

    /** The operator an unlock is asked for (404 for an unknown id), before anything is asked. */
    planUnlock: (operatorId: string): Promise<OperatorSummary> =>
      system(async (tx) => {
        const target = await lockOperator(tx, operatorId);
        return { id: target.id, email: target.email, status: target.status };
      }),

    /**
     * Clears a sign-in lockout (and its escalation), including a count left at the threshold without a
     * lock. An operator's password and code come in one request and count together, so the lock holds
     * back whoever has the password from guessing codes: through the API an unlock is an approved
     * platform action (security review: one operators:write holder, an API token included, could unlock
     * as often as they liked, 5 more codes each time), whose `guard` runs first; the CLI unlocks directly.
     */
    unlock: (
      ctx: ActionContext,
      operatorId: string,
      guard?: (tx: OperatorTx) => Promise<void>,
    ): Promise<OperatorSummary> =>
      system(async (tx) => {
        await guard?.(tx);
        const target = await lockOperator(tx, operatorId);
        await tx
          .updateTable('operators')
          .set({ password_failures: 0, password_locked_until: null, password_lockouts: 0 })
          .where('id', '=', operatorId)
          .execute();
        await audit(tx, ctx, 'identity.operator.unlocked', { type: 'operator', id: operatorId });
        return { id: target.id, email: target.email, status: target.status };
      }),
  };
}
