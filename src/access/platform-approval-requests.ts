import type { ActionContext } from '../platform/context.ts';
import type { SystemTx } from '../platform/db/index.ts';
import { paramsHash, refuseUnseenBasis } from './approval-standing.ts';
import {
  type ApprovalView,
  personOf,
  platformView,
  type Row,
  recordDecision,
  toView,
} from './approval-view.ts';
import type { Classified, CriticalActions, JsonValue } from './critical.ts';
import { accessError } from './errors.ts';
import type { PlatformApprovalParts, PlatformTx } from './platform-approvals.ts';

/**
 * How long a platform request waits for its decision, and an approval for its run. Tenants choose
 * theirs (`approvalTtlMinutes`, default 24 hours, at most that); the platform has one fixed value.
 */
export const PLATFORM_APPROVAL_TTL_MINUTES = 24 * 60;

/** A platform request's row, locked until the caller's transaction commits. */
export async function lockedPlatformRequest(tx: PlatformTx, id: string): Promise<Row> {
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

/** Records the expiry the first time someone acts on an expired request, then refuses. */
export async function refusePlatformExpired(
  { inPlatform, audit }: Pick<PlatformApprovalParts, 'inPlatform' | 'audit'>,
  ctx: ActionContext,
  row: Row,
): Promise<never> {
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

/** The hash of the state an action would overwrite now (locked); null when it overwrites nothing. */
export async function platformBasisHash(
  critical: CriticalActions,
  // biome-ignore lint/suspicious/noExplicitAny: the approval's transaction or the action's (any capability's tables).
  tx: SystemTx<any>,
  action: string,
  params: JsonValue,
): Promise<Buffer | null> {
  const state = await critical.action(action)?.platformBasis?.(tx, params);
  // Through JSON first: dates become strings, undefined members drop out, as in the stored params.
  return state === undefined ? null : paramsHash(JSON.parse(JSON.stringify(state)) as JsonValue);
}

/** Asking for a platform action, reading the requests, and another operator's decision. */
export function createPlatformApprovalRequests(parts: PlatformApprovalParts) {
  const { clock, critical, inPlatform, audit } = parts;
  return {
    /** Records an operator's request for a platform action (the gate answers 202 with it). */
    request: (ctx: ActionContext, what: Classified, permission: string) =>
      inPlatform(async (tx) => {
        if (!critical.isPlatform(what.action)) throw new Error(`${what.action} is not a platform action`);
        const by = personOf(ctx);
        if (by.type !== 'operator') throw new Error('platform four-eyes needs an operator');
        // Recorded only against the state its summary was written on, as tenant requests are.
        const basis = await platformBasisHash(critical, tx, what.action, what.params);
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
        return platformView(critical, toView(row, now));
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
        return rows
          .map((r) => platformView(critical, toView(r, now)))
          .filter((v) => status === undefined || v.status === status);
      }),

    get: (id: string) =>
      inPlatform(async (tx) =>
        platformView(critical, toView(await lockedPlatformRequest(tx, id), clock.now())),
      ),

    /** Another operator's decision; the requester is refused. */
    async decide(ctx: ActionContext, id: string, decision: 'approve' | 'reject') {
      const by = personOf(ctx);
      const outcome = await inPlatform(async (tx) =>
        recordDecision(tx, await lockedPlatformRequest(tx, id), by, decision, {
          now: clock.now(),
          // The same time again from the decision, as for tenants.
          lifetimeMs: async () => PLATFORM_APPROVAL_TTL_MINUTES * 60_000,
          selfApproval: 'Another operator must decide this request.',
          record: (event) => audit(tx, ctx, event),
        }),
      );
      if ('expired' in outcome) return refusePlatformExpired(parts, ctx, outcome.expired);
      return platformView(critical, outcome.view);
    },
  };
}
