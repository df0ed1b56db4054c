import { randomUUID } from 'node:crypto';
import type { ActionContext, Clock } from '../platform/context.ts';
import type { SystemTx, TenantTx } from '../platform/db/index.ts';
import { isKnownAuditAction } from './catalogue.ts';
import { appendToChain } from './chain.ts';
import { checkDetails } from './details.ts';

/** A catalogue entry: dotted lowercase, `capability.object.verb` (see catalogue.ts). */
export type AuditAction = `${string}.${string}`;

export interface AuditInput {
  action: AuditAction;
  outcome: 'success' | 'failure' | 'denied';
  target?: { type: string; id: string };
  /** Facts about the change. Never a secret: callers pass ids and names, not values of credentials. */
  details?: Record<string, string | number | boolean | null>;
}

export type AuditEventInput = AuditInput & { tenantId: string | null };

let appended = 0;
/** Events this process has appended (committed or not): the source of the events/s metric. */
export const appendedEvents = () => appended;

/** Chains this process appended to lately, and when: the alert rules look at those first (jobs.ts). */
const recentChains = new Map<string | null, number>();
const RECENT_MS = 10_000;

/**
 * Chains appended to in the last few seconds. A chain stays listed for a while after its last append
 * because the appending transaction may commit after the rules first look.
 */
export function recentlyAppendedChains(): (string | null)[] {
  const since = Date.now() - RECENT_MS;
  for (const [chain, at] of recentChains) if (at < since) recentChains.delete(chain);
  return [...recentChains.keys()];
}

/**
 * Writes one audit event in the caller's transaction, so the event exists if and only if the change
 * committed. The tenant comes from the transaction's scope (row-level security checks it). The event is
 * appended to its tenant's hash chain (chain.ts): the chain head stays locked until the caller's
 * transaction ends, so a tenant's audited transactions commit one after another and never fork it.
 */
export async function recordAuditEvent<DB>(
  tx: TenantTx<DB> | SystemTx<DB>,
  clock: Clock,
  context: ActionContext,
  event: AuditEventInput,
): Promise<string> {
  const [id] = await recordAuditEvents(tx, clock, context, [event]);
  return id as string;
}

/** Several events of one chain in one append (one head lock, one INSERT): imports and bulk paths. */
export async function recordAuditEvents<DB>(
  tx: TenantTx<DB> | SystemTx<DB>,
  clock: Clock,
  context: ActionContext,
  events: AuditEventInput[],
): Promise<string[]> {
  const first = events[0];
  if (!first) return [];
  if (events.some((e) => e.tenantId !== first.tenantId)) throw new Error('one append covers one chain');
  const unknown = events.find((e) => !isKnownAuditAction(e.action));
  if (unknown)
    throw new Error(`audit action "${unknown.action}" is not in the catalogue (src/audit/catalogue.ts)`);
  const now = clock.now();
  const actor = context.actor as { type: string; id: string | null; elevationId?: string | null };
  // The same for every event of the append: cut once, at 512 code points.
  const userAgent = context.userAgent === null ? null : [...context.userAgent].slice(0, 512).join('');
  const rows = events.map((event) => ({
    id: randomUUID(),
    tenantId: event.tenantId,
    occurredAt: now,
    actorType: actor.type,
    actorId: actor.id,
    actorElevationId: actor.elevationId ?? null,
    action: event.action,
    targetType: event.target?.type ?? null,
    targetId: event.target?.id ?? null,
    outcome: event.outcome,
    ip: context.ip,
    userAgent,
    requestId: context.requestId,
    // Also in the details, where Access documents it (docs/access.md); the column is what search filters.
    details: checkDetails(
      actor.elevationId ? { ...event.details, elevationId: actor.elevationId } : event.details,
    ),
  }));
  await appendToChain(tx, first.tenantId, rows);
  appended += rows.length;
  recentChains.set(first.tenantId, Date.now());
  return rows.map((r) => r.id);
}
