import type { ActionContext } from '../platform/context.ts';
import type { JsonValue } from './critical.ts';
import type { AccessApprovalRequestsTable } from './tables.ts';

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

/** The person behind an actor: an operator (under an elevation) or a tenant user. */
export function personOf(ctx: ActionContext): { type: 'operator' | 'user'; id: string } {
  const actor = ctx.actor;
  if (actor.type !== 'operator' && actor.type !== 'user') throw new Error('four-eyes needs a person');
  return { type: actor.type, id: actor.id };
}

export const samePerson = (a: { type: string; id: string }, b: { type: string | null; id: string | null }) =>
  a.type === b.type && a.id === b.id;
