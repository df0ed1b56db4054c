import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { strictObject } from '../platform/http/schemas.ts';

/** `:tenant` of the audit's tenant routes: a slug. */
export const TenantParams = strictObject({
  tenant: Type.String({ pattern: '^[a-z][a-z0-9-]{1,38}[a-z0-9]$' }),
});

/** The tenant the access hook resolved for a `access: 'tenant'` route. */
export function tenantIdOf(request: FastifyRequest): string {
  const tenant = (request as { tenant?: { id: string } | null }).tenant;
  if (!tenant) throw new Error('tenant route reached without a tenant');
  return tenant.id;
}
