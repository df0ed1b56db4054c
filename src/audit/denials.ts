import type { FastifyRequest } from 'fastify';
import type { Clock } from '../platform/context.ts';
import { asTenantId, type Database } from '../platform/db/index.ts';
import { actionContext } from '../platform/http/context.ts';
import type { AppError } from '../platform/http/problem.ts';
import { routeConfig } from '../platform/http/route-config.ts';
import { recordAuditEvent } from './record.ts';

/**
 * Every refused request by an authenticated caller (403) becomes an audit event: a denied attempt at
 * a privileged action is exactly what the trail must show. Written in the tenant's trail when the
 * request named a tenant, else in the platform trail.
 */
export function denialAuditor(db: Database, clock: Clock) {
  return async (request: FastifyRequest, error: AppError): Promise<void> => {
    if (request.actor.type === 'anonymous') return;
    const ctx = actionContext(request);
    const event = {
      action: 'access.request.denied' as const,
      outcome: 'denied' as const,
      target: { type: 'route', id: `${request.method} ${routeConfig(request).url ?? request.url}` },
      details: { reason: error.code },
    };
    const tenantId = (request as { tenant?: { id: string } | null }).tenant?.id;
    try {
      if (tenantId) {
        await db.withTenant(asTenantId(tenantId), (tx) =>
          recordAuditEvent(tx, clock, ctx, { ...event, tenantId }),
        );
      } else {
        await db.withSystem((tx) => recordAuditEvent(tx, clock, ctx, { ...event, tenantId: null }));
      }
    } catch (auditError) {
      request.log.error({ err: auditError }, 'could not audit a denied request');
    }
  };
}
