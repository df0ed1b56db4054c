import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { actionContext } from '../platform/http/context.ts';
import { responses, strictObject } from '../platform/http/schemas.ts';
import { TenantParams, tenantIdOf } from './http.ts';
import { MAX_RETENTION_DAYS, MIN_RETENTION_DAYS, type RetentionService } from './retention.ts';

const tags = ['audit'];
const Retention = strictObject({
  days: Type.Integer({ minimum: MIN_RETENTION_DAYS, maximum: MAX_RETENTION_DAYS }),
  isDefault: Type.Boolean({ description: "True while the server's default applies" }),
});

/**
 * The tenant's audit retention. Shortening it is a critical action (`audit.retention.shorten`): when
 * the tenant has it on its four-eyes list the PUT is answered 202 and runs once someone else approves.
 */
export const auditRetentionRoutes: FastifyPluginAsyncTypebox<{ retention: RetentionService }> = async (
  app,
  { retention },
) => {
  app.get(
    '/api/v1/t/:tenant/audit/retention',
    {
      config: { access: 'tenant', permission: 'audit:read' },
      schema: {
        tags,
        summary: 'How many days the audit trail keeps events before they are pruned',
        params: TenantParams,
        response: responses({ 200: Retention }),
      },
    },
    async (request) => retention.get(tenantIdOf(request)),
  );

  app.put(
    '/api/v1/t/:tenant/audit/retention',
    {
      config: { access: 'tenant', permission: 'audit:configure', fourEyes: 'audit.retention' },
      schema: {
        tags,
        summary: 'Change the audit retention (audited; shortening it may need a second approver: 202)',
        params: TenantParams,
        body: strictObject({
          days: Type.Integer({ minimum: MIN_RETENTION_DAYS, maximum: MAX_RETENTION_DAYS }),
        }),
        response: responses({ 200: Retention }),
      },
    },
    async (request) => retention.set(tenantIdOf(request), actionContext(request), request.body.days),
  );
};
