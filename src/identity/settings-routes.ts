import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { actionContext } from '../platform/http/context.ts';
import { responses } from '../platform/http/schemas.ts';
import { type IdentityApiOptions, publicRoute, tags, tenantApi } from './api-route-config.ts';
import { identityError } from './errors.ts';
import { needsUserStepUp, signedIn } from './http-auth.ts';
import * as S from './schemas.ts';

/** The tenant's identity settings: password policy, lockout, 2FA enforcement, session limits. */
export const settingsRoutes: FastifyPluginAsyncTypebox<IdentityApiOptions> = async (
  app,
  { identity, tenantOf },
) => {
  app.get(
    `${tenantApi}/settings`,
    {
      config: publicRoute,
      schema: {
        tags,
        summary: 'Password policy and sign-in settings (shown on sign-in pages before submitting)',
        params: S.TenantParams,
        response: responses({ 200: Type.Ref('IdentitySettings') }),
      },
    },
    async (request) => identity.settings.get(await tenantOf(request)),
  );

  app.put(
    `${tenantApi}/settings`,
    {
      config: { access: 'user', permission: 'policy:write', fourEyes: 'identity.settings' },
      schema: {
        tags,
        summary: 'Change password policy, lockout, 2FA enforcement and session limits',
        params: S.TenantParams,
        body: S.Settings,
        response: responses({ 200: Type.Ref('IdentitySettings') }),
      },
    },
    async (request) => {
      const { tenant } = signedIn(request);
      if (needsUserStepUp(identity.deps, request)) {
        throw identityError('step_up_required', 'Confirm with your second factor within the last 5 minutes.');
      }
      if (request.body.passwordPolicy.minLength > request.body.passwordPolicy.maxLength) {
        throw identityError('password_rejected', 'passwordPolicy.minLength must not exceed maxLength.');
      }
      return identity.settings.update(tenant, actionContext(request), request.body);
    },
  );
};
