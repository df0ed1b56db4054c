import type { Kysely } from 'kysely';
import type { AuditInput } from '../audit/index.ts';
import type { ActionContext } from '../platform/context.ts';
import type { CriticalActions, JsonValue } from './critical.ts';
import { accessError } from './errors.ts';
import type { AccessApprovalRequestsTable, AccessTables } from './tables.ts';

export interface ApprovalView {
  id: string;
  action: string;
  permission: string;
  summary: string;
  params: JsonValue;
  paramsHash: string;
  status: 'pending' | 'approved' | 'rejected' | 'executing' | 'executed' | 'failed' | 'expired';
  requestedBy: { type: string; id: string };
  requestedAt: string;
  expiresAt: string;
  decidedBy: { type: string; id: string } | null;
  decidedAt: string | null;
  executedAt: string | null;
}

export type Row = { id: string } & Omit<AccessApprovalRequestsTable, 'id'>;

export function toView(row: Row, now: Date): ApprovalView {
  const waiting = row.status === 'pending' || row.status === 'approved';
  return {
    id: row.id,
    action: row.action,
    permission: row.permission,
    summary: row.summary,
    params: row.params as JsonValue,
    paramsHash: Buffer.from(row.params_hash).toString('hex'),
    // Expiry is read from the clock, never written by a job.
    status: waiting && row.expires_at <= now ? 'expired' : row.status,
    requestedBy: { type: row.requested_by_type, id: row.requested_by_id },
    requestedAt: row.requested_at.toISOString(),
    expiresAt: row.expires_at.toISOString(),
    decidedBy:
      row.decided_by_type && row.decided_by_id ? { type: row.decided_by_type, id: row.decided_by_id } : null,
    decidedAt: row.decided_at?.toISOString() ?? null,
    executedAt: row.executed_at?.toISOString() ?? null,
  };
}

/** A platform request as answered to operators: its parameters as its action shows them. */
export function platformView(critical: CriticalActions, view: ApprovalView): ApprovalView {
  const shown = critical.action(view.action)?.shownParams;
  return shown ? { ...view, params: shown(view.params) } : view;
}

/** The person behind an actor: an operator (under an elevation) or a tenant user. */
export function personOf(ctx: ActionContext): { type: 'operator' | 'user'; id: string } {
  const actor = ctx.actor;
  if (actor.type !== 'operator' && actor.type !== 'user') throw new Error('four-eyes needs a person');
  return { type: actor.type, id: actor.id };
}

export const samePerson = (a: { type: string; id: string }, b: { type: string | null; id: string | null }) =>
  a.type === b.type && a.id === b.id;

/**
 * A person's decision on a request locked in the caller's transaction, for the tenant and the platform
 * flows alike: the requester is refused (`selfApproval` says who must decide instead), only a pending
 * request is decided, an expired one is handed back (the caller records its expiry in a transaction of
 * its own), and an approval stays usable for `lifetimeMs()` from the decision. Audited through `record`.
 */
export async function recordDecision(
  tx: Kysely<AccessTables>,
  row: Row,
  by: { type: 'operator' | 'user'; id: string },
  decision: 'approve' | 'reject',
  options: {
    now: Date;
    lifetimeMs: () => Promise<number>;
    selfApproval: string;
    record: (event: AuditInput) => Promise<unknown>;
  },
): Promise<{ expired: Row } | { view: ApprovalView }> {
  const { now } = options;
  if (samePerson(by, { type: row.requested_by_type, id: row.requested_by_id })) {
    throw accessError('self_approval', options.selfApproval);
  }
  // An approved request not yet run may still be rejected: the approval is withdrawn (review: nobody could
  // stop a request once approved, for the rest of the approval's lifetime).
  const withdrawing = decision === 'reject' && row.status === 'approved';
  if (row.status !== 'pending' && !withdrawing) {
    throw accessError('approval_not_pending', `This request is ${row.status} already.`);
  }
  if (row.expires_at <= now) return { expired: row };
  const approved = decision === 'approve';
  const updated = await tx
    .updateTable('access_approval_requests')
    .set({
      status: approved ? 'approved' : 'rejected',
      decided_by_type: by.type,
      decided_by_id: by.id,
      decided_at: now,
      // The approval itself expires: the requester has this long to run it.
      ...(approved ? { expires_at: new Date(now.getTime() + (await options.lifetimeMs())) } : {}),
    })
    .where('id', '=', row.id)
    .returningAll()
    .executeTakeFirstOrThrow();
  await options.record({
    action: approved ? 'access.approval.approved' : 'access.approval.rejected',
    outcome: 'success',
    target: { type: 'approval', id: row.id },
    details: {
      action: row.action,
      paramsDigest: Buffer.from(row.params_hash).toString('hex'),
      ...(withdrawing ? { withdrawn: true } : {}),
    },
  });
  return { view: toView(updated, now) };
}
