import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { actionContext } from '../../platform/http/context.ts';
import { responses, strictObject } from '../../platform/http/schemas.ts';
import { TenantPolicy } from './schemas.ts';
import type { TenantPolicyService } from './service.ts';

const tags = ['protect'];
const TenantParams = strictObject({ tenant: Type.String({ minLength: 1, maxLength: 64 }) });

function tenantIdOf(request: FastifyRequest): string {
  const tenant = (request as { tenant?: { id: string } | null }).tenant;
  if (!tenant) throw new Error('tenant route reached without a tenant');
  return tenant.id;
}

/**
 * The tenant's network policy. Reading it needs `roles:read`; changing it is an access setting
 * (`access:configure`): who may administer from where, and which browser origins may call the API.
 */
export const tenantPolicyRoutes: FastifyPluginAsyncTypebox<{
  policies: TenantPolicyService;
  /**
   * Run before a change, may refuse it (Access: a recent second factor, as for every security setting;
   * no operator, not even elevated: the policy outlives an elevation).
   */
  beforeChange: (request: FastifyRequest) => void;
}> = async (app, { policies, beforeChange }) => {
  app.get(
    '/api/v1/t/:tenant/protect/policy',
    {
      config: { access: 'tenant', permission: 'roles:read' },
      schema: {
        tags,
        summary: 'Admin address allowlist and CORS origins of the tenant',
        params: TenantParams,
        response: responses({ 200: TenantPolicy }),
      },
    },
    async (request) => {
      const policy = await policies.get(tenantIdOf(request));
      return { adminAllowCidrs: policy.adminAllowCidrs, corsOrigins: policy.corsOrigins };
    },
  );

  app.put(
    '/api/v1/t/:tenant/protect/policy',
    {
      config: { access: 'tenant', permission: 'access:configure' },
      schema: {
        tags,
        summary: 'Set the admin address allowlist and CORS origins (refused if it would lock the caller out)',
        params: TenantParams,
        body: TenantPolicy,
        response: responses({ 200: TenantPolicy }),
      },
    },
    async (request) => {
      beforeChange(request);
      return policies.update(tenantIdOf(request), actionContext(request), request.body);
    },
  );
};
