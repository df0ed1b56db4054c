import type { FastifyRequest } from 'fastify';
import type { TenantRef } from './deps.ts';
import type { IdentityService } from './service.ts';

/** What every identity API route module shares: its tag, path prefix, access configs and replies. */
export const tags = ['identity'];
export const tenantApi = '/api/v1/t/:tenant';
export const publicRoute = { access: 'public' } as const;
/** Any signed-in user of the tenant, acting on their own account. */
export const userRoute = { access: 'user', permission: 'self' } as const;
export const accepted = { status: 'accepted' as const };

/** The options identityApiRoutes hands each of its route modules. */
export interface IdentityApiOptions {
  identity: IdentityService;
  /** The tenant named by the request's `:tenant` slug. */
  tenantOf: (request: FastifyRequest) => Promise<TenantRef>;
  /**
   * Whether the caller must confirm a second factor before a sensitive change (the request pipeline's
   * answer: a user's, when they have an authenticator; an elevated operator's, always).
   */
  needsStepUp: (request: FastifyRequest) => boolean;
}
