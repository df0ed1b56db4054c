import type { ActionContext } from '../platform/context.ts';
import { lockedRequest, minutes, refuseExpired } from './approval-requests.ts';
import { personOf, type Row, recordDecision } from './approval-view.ts';
import type { ApprovalParts } from './approvals.ts';
import { audit } from './audit.ts';
import type { JsonValue } from './critical.ts';
import { accessError } from './errors.ts';
import { loadAccessSettings } from './settings.ts';
import { inTenant, type Tx } from './tables.ts';

/** A second person's decision on a request: approve or reject. */
export function createApprovalDecisions(parts: ApprovalParts) {
  const { db, clock, critical } = parts;

  /**
   * An operator deciding an elevated operator's lasting-access request: nothing is decided, the refusal is
   * audited (in this transaction, which commits; the caller then answers 403).
   */
  async function refuseOperator(
    tx: Tx,
    tenantId: string,
    ctx: ActionContext,
    row: Row,
  ): Promise<{ operator: true }> {
    await audit(clock, tx, tenantId, ctx, {
      action: 'access.approval.refused',
      outcome: 'denied',
      target: { type: 'approval', id: row.id },
      details: { action: row.action, reason: 'tenant_approver_required' },
    });
    return { operator: true };
  }

  return {
    /** A different person's decision. The route checks `approvals:decide`. */
    async decide(tenantId: string, ctx: ActionContext, id: string, decision: 'approve' | 'reject') {
      const by = personOf(ctx);
      const outcome = await inTenant(db, tenantId, async (tx) => {
        const row = await lockedRequest(tx, id);
        if (by.type !== 'user' && critical.isAlwaysRequired(row.action))
          return refuseOperator(tx, tenantId, ctx, row);
        // The person a grant is for is no second pair of eyes on it.
        const benefits = critical.action(row.action)?.beneficiary;
        if (
          decision === 'approve' &&
          by.type === 'user' &&
          benefits &&
          (await benefits(tx, row.params as JsonValue, by.id))
        ) {
          throw accessError(
            'beneficiary_approval',
            'This request is about your own access (a role, your account enabled, your second factor reset): ' +
              'someone else must approve it.',
          );
        }
        return recordDecision(tx, row, by, decision, {
          now: clock.now(),
          lifetimeMs: async () => minutes((await loadAccessSettings(tx, critical)).approvalTtlMinutes),
          selfApproval: 'Someone other than the requester must decide this request.',
          record: (event) => audit(clock, tx, tenantId, ctx, event),
        });
      });
      if ('expired' in outcome) return refuseExpired(parts, tenantId, ctx, outcome.expired);
      if ('operator' in outcome) {
        throw accessError(
          'tenant_approver_required',
          'This is lasting access asked for by an operator under an elevation (an account, a role, ' +
            'permissions that outlive the elevation): only a person of this tenant with approvals:decide ' +
            'may decide it, never an operator.',
        );
      }
      return outcome.view;
    },
  };
}
