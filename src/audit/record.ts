import { randomUUID } from 'node:crypto';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { SystemTx, TenantTx } from '../platform/db/index.ts';
import type { AuditTables } from './tables.ts';

/** A catalogue entry: dotted lowercase, `capability.object.verb`. */
export type AuditAction = `${string}.${string}`;

export interface AuditInput {
  action: AuditAction;
  outcome: 'success' | 'failure' | 'denied';
  target?: { type: string; id: string };
  /** Facts about the change. Never a secret: callers pass ids and names, not values of credentials. */
  details?: Record<string, string | number | boolean | null>;
}

const secretKey = /pass|secret|token|hash|seed|key|code/i;

/**
 * Writes one audit event in the caller's transaction, so the event exists if and only if the change
 * committed. The tenant comes from the transaction's scope (row-level security checks it).
 */
export async function recordAuditEvent<DB>(
  tx: TenantTx<DB> | SystemTx<DB>,
  clock: Clock,
  context: ActionContext,
  event: AuditInput & { tenantId: string | null },
): Promise<string> {
  for (const key of Object.keys(event.details ?? {})) {
    // A guard against a future caller logging a credential by accident.
    if (secretKey.test(key)) throw new Error(`audit detail "${key}" looks like a secret; do not record it`);
  }
  const id = randomUUID();
  const db = tx as unknown as TenantTx<AuditTables>;
  await db
    .insertInto('audit_events')
    .values({
      id,
      tenant_id: event.tenantId,
      occurred_at: clock.now(),
      actor_type: context.actor.type,
      actor_id: context.actor.id,
      action: event.action,
      target_type: event.target?.type ?? null,
      target_id: event.target?.id ?? null,
      outcome: event.outcome,
      ip: context.ip,
      user_agent: context.userAgent?.slice(0, 512) ?? null,
      request_id: context.requestId,
      // An operator acting under a just-in-time elevation: every event of the request names it.
      details: JSON.stringify(
        context.actor.type === 'operator' && context.actor.elevationId
          ? { ...event.details, elevationId: context.actor.elevationId }
          : (event.details ?? {}),
      ),
    })
    .execute();
  return id;
}
