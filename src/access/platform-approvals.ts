import { type AuditInput, recordAuditEvent } from '../audit/index.ts';
import type { ActionContext, Clock } from '../platform/context.ts';
import { safeEqual } from '../platform/crypto/tokens.ts';
import { type Database, isTransientConflict, type SystemTx } from '../platform/db/index.ts';
import { paramsHash, refuseUnseenBasis } from './approval-standing.ts';
import {
  type ApprovalView,
  personOf,
  type Row,
  recordDecision,
  samePerson,
  toView,
} from './approval-view.ts';
import type { Classified, CriticalActions, JsonValue, PlatformGuard } from './critical.ts';
import { accessError } from './errors.ts';
import type { AccessTables } from './tables.ts';

/**
 * How long a platform request waits for its decision, and an approval for its run. Tenants choose
 * theirs (`approvalTtlMinutes`, default 24 hours, at most that); the platform has one fixed value.
 */
export const PLATFORM_APPROVAL_TTL_MINUTES = 24 * 60;

type Tx = SystemTx<AccessTables>;

/** Identity's answer, locked (FOR SHARE) in the caller's transaction: is this operator still active? */
// biome-ignore lint/suspicious/noExplicitAny: identity reads its own table through any capability's transaction.
export type OperatorActive = (tx: SystemTx<any>, operatorId: string) => Promise<boolean>;

/** Raised by a platform approval's guard in the action's transaction (which it rolls back: nothing ran). */
class ApproverGone extends Error {}
/** The same, when what the action overwrites changed since it was asked for. */
class StateGone extends Error {}

/**
 * Four-eyes for platform actions (operators' changes of platform state, such as adding a SIEM sink):
 * the tenant flow (approvals.ts) on the same table and states, in the platform scope (rows without a
 * tenant, on the platform audit chain). Differences: every platform action needs approval (there is no
 * per-tenant list to take it off), the approver is another operator (every operator holds
 * `platform-approvals:decide` today, so "still holds it" means "is still an active operator"), and the
 * expiry is fixed. The requester runs it once with the same parameters and gets its result.
 */
export function createPlatformApprovalService(deps: {
  db: Database;
  clock: Clock;
  critical: CriticalActions;
  operatorActive: OperatorActive;
}) {
  const { db, clock, critical, operatorActive } = deps;
  const inPlatform = <R>(fn: (tx: Tx) => Promise<R>) => db.withSystem<AccessTables, R>(fn);
  const audit = (tx: Tx, ctx: ActionContext, event: AuditInput) =>
    recordAuditEvent<AccessTables>(tx, clock, ctx, { ...event, tenantId: null });

  async function locked(tx: Tx, id: string): Promise<Row> {
    // FOR UPDATE: two approvers (or two executions) of one request take turns, so exactly one wins.
    // Row-level security shows a platform scope only the rows without a tenant.
    const row = await tx
      .selectFrom('access_approval_requests')
      .selectAll()
      .where('id', '=', id)
      .where('tenant_id', 'is', null)
      .forUpdate()
      .executeTakeFirst();
    if (!row) throw accessError('approval_not_found', 'There is no such platform approval request.');
    return row;
  }

  async function refuseExpired(ctx: ActionContext, row: Row): Promise<never> {
    await inPlatform((tx) =>
      audit(tx, ctx, {
        action: 'access.approval.expired',
        outcome: 'failure',
        target: { type: 'approval', id: row.id },
        details: { action: row.action, status: row.status },
      }),
    );
    throw accessError('approval_expired', 'This request expired; ask again and have it approved anew.');
  }

  /** The approver is still an active operator, read with their row locked until `tx` commits. */
  // biome-ignore lint/suspicious/noExplicitAny: the approval's transaction or the action's (any capability's tables).
  const approverStands = (tx: SystemTx<any>, row: Row) =>
    row.decided_by_type === 'operator' && row.decided_by_id !== null
      ? operatorActive(tx, row.decided_by_id)
      : Promise.resolve(false);

  /** The hash of the state an action would overwrite now (locked); null when it overwrites nothing. */
  // biome-ignore lint/suspicious/noExplicitAny: the approval's transaction or the action's (any capability's tables).
  async function basisHash(tx: SystemTx<any>, action: string, params: JsonValue): Promise<Buffer | null> {
    const state = await critical.action(action)?.platformBasis?.(tx, params);
    // Through JSON first: dates become strings, undefined members drop out, as in the stored params.
    return state === undefined ? null : paramsHash(JSON.parse(JSON.stringify(state)) as JsonValue);
  }

  /** Whether the state is still the one the request was asked against (as for tenant actions' `basis`). */
  // biome-ignore lint/suspicious/noExplicitAny: the approval's transaction or the action's (any capability's tables).
  async function stateStands(tx: SystemTx<any>, row: Row): Promise<boolean> {
    if (!row.basis_hash) return true;
    const now = await basisHash(tx, row.action, row.params as JsonValue);
    return now !== null && safeEqual(now, Buffer.from(row.basis_hash));
  }

  /** The state changed: the request stays approved (it can only run on the state the approver saw). */
  async function recordStateChanged(tx: Tx, ctx: ActionContext, row: Row) {
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
  async function recordConflicted(tx: Tx, ctx: ActionContext, row: Row) {
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
  async function recordApproverLost(tx: Tx, ctx: ActionContext, row: Row) {
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
  async function claim(tx: Tx, ctx: ActionContext, id: string, params: JsonValue): Promise<Claim> {
    const row = await locked(tx, id);
    if (!samePerson(personOf(ctx), { type: row.requested_by_type, id: row.requested_by_id })) {
      throw accessError('not_requester', 'Only the operator who asked for this action runs it.');
    }
    if (row.status !== 'approved') {
      throw accessError('approval_not_approved', `This request is ${row.status}; it cannot run.`);
    }
    if (row.expires_at <= clock.now()) return { expired: row };
    if (!safeEqual(paramsHash(params), Buffer.from(row.params_hash))) {
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
    /** Records an operator's request for a platform action (the gate answers 202 with it). */
    request: (ctx: ActionContext, what: Classified, permission: string) =>
      inPlatform(async (tx) => {
        if (!critical.isPlatform(what.action)) throw new Error(`${what.action} is not a platform action`);
        const by = personOf(ctx);
        if (by.type !== 'operator') throw new Error('platform four-eyes needs an operator');
        // Recorded only against the state its summary was written on, as tenant requests are.
        const basis = await basisHash(tx, what.action, what.params);
        refuseUnseenBasis(what, basis);
        const now = clock.now();
        const row = await tx
          .insertInto('access_approval_requests')
          .values({
            tenant_id: null,
            action: what.action,
            permission,
            params: JSON.stringify(what.params),
            params_hash: paramsHash(what.params),
            basis_hash: basis,
            summary: what.summary,
            requested_by_type: by.type,
            requested_by_id: by.id,
            requested_elevation_id: null,
            requested_at: now,
            expires_at: new Date(now.getTime() + PLATFORM_APPROVAL_TTL_MINUTES * 60_000),
            status: 'pending',
            decided_by_type: null,
            decided_by_id: null,
            decided_at: null,
            executed_at: null,
          })
          .returningAll()
          .executeTakeFirstOrThrow();
        await audit(tx, ctx, {
          action: 'access.approval.requested',
          outcome: 'success',
          target: { type: 'approval', id: row.id },
          details: { action: what.action, paramsDigest: Buffer.from(row.params_hash).toString('hex') },
        });
        return toView(row, now);
      }),

    list: (status: ApprovalView['status'] | undefined) =>
      inPlatform(async (tx) => {
        const rows = await tx
          .selectFrom('access_approval_requests')
          .selectAll()
          .where('tenant_id', 'is', null)
          .orderBy('requested_at', 'desc')
          .limit(200)
          .execute();
        const now = clock.now();
        return rows.map((r) => toView(r, now)).filter((v) => status === undefined || v.status === status);
      }),

    get: (id: string) => inPlatform(async (tx) => toView(await locked(tx, id), clock.now())),

    /** Another operator's decision; the requester is refused. */
    async decide(ctx: ActionContext, id: string, decision: 'approve' | 'reject') {
      const by = personOf(ctx);
      const outcome = await inPlatform(async (tx) =>
        recordDecision(tx, await locked(tx, id), by, decision, {
          now: clock.now(),
          // The same time again from the decision, as for tenants.
          lifetimeMs: async () => PLATFORM_APPROVAL_TTL_MINUTES * 60_000,
          selfApproval: 'Another operator must decide this request.',
          record: (event) => audit(tx, ctx, event),
        }),
      );
      if ('expired' in outcome) return refuseExpired(ctx, outcome.expired);
      return outcome.view;
    },

    /**
     * Runs an approved platform request once, with its recorded parameters (the caller sends them again;
     * different ones run nothing). The claim (approved -> executing) commits before the action runs, so
     * racing executions run it once; the approver's standing is checked in the claim and again, locked,
     * first in the action's own transaction (the guard). Returns the request and the action's result.
     */
    async execute(ctx: ActionContext, id: string, params: JsonValue) {
      const claimed = await inPlatform((tx) => claim(tx, ctx, id, params));
      if ('expired' in claimed) return refuseExpired(ctx, claimed.expired);
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
        await inPlatform(async (tx) => recordApproverLost(tx, ctx, await locked(tx, id)));
        throw approverLostError();
      }
      if (failure instanceof StateGone) {
        await inPlatform(async (tx) => recordStateChanged(tx, ctx, await locked(tx, id)));
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
        return toView(updated, clock.now());
      });
      if (failure) throw failure;
      if (!guarded) throw new Error(`platform action ${row.action} ran without its approval's guard`);
      return { approval: finished, result };
    },
  };
}

export type PlatformApprovalService = ReturnType<typeof createPlatformApprovalService>;
