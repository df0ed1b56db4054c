import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import type { FastifyRequest } from 'fastify';
import { accountRoutes } from './account-routes.ts';
import { type TenantResolver, tenantSlugOf } from './http-auth.ts';
import { mfaRoutes } from './mfa-routes.ts';
import type { IdentityService } from './service.ts';
import { sessionRoutes } from './session-routes.ts';
import { settingsRoutes } from './settings-routes.ts';
import { userAdminRoutes } from './user-admin-routes.ts';

/** The tenant users' JSON API under /api/v1/t/:tenant, one module per area. */
export const identityApiRoutes: FastifyPluginAsyncTypebox<{
  identity: IdentityService;
  resolveTenant: TenantResolver;
  needsStepUp: (request: FastifyRequest) => boolean;
}> = async (app, { identity, resolveTenant, needsStepUp }) => {
  const tenantOf = (request: FastifyRequest) => resolveTenant(tenantSlugOf(request));
  const options = { identity, tenantOf, needsStepUp };
  await app.register(settingsRoutes, options);
  await app.register(sessionRoutes, options);
  await app.register(mfaRoutes, options);
  await app.register(accountRoutes, options);
  await app.register(userAdminRoutes, options);
};
