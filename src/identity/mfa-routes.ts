import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { actionContext } from '../platform/http/context.ts';
import { responses } from '../platform/http/schemas.ts';
import { type IdentityApiOptions, tags, tenantApi, userRoute } from './api-route-config.ts';
import { identityError } from './errors.ts';
import { signedIn } from './http-auth.ts';
import { removeOwnAuthenticator } from './mfa-removal.ts';
import * as S from './schemas.ts';
import { hasRecentSecondFactor } from './session-stage.ts';

/** The signed-in user's second factor: TOTP enrolment and recovery codes. */
export const mfaRoutes: FastifyPluginAsyncTypebox<IdentityApiOptions> = async (app, { identity }) => {
  app.post(
    `${tenantApi}/me/mfa/totp`,
    {
      config: { ...userRoute, stages: ['enrol', 'active'] },
      schema: {
        tags,
        summary:
          'Start TOTP enrolment: secret, otpauth URI and QR code (currentPassword needed when signed in more than 5 minutes ago)',
        params: S.TenantParams,
        body: Type.Union([S.EnrolStartBody, Type.Null()]),
        response: responses({ 200: S.Enrolment }),
      },
    },
    async (request) => {
      const { tenant, session } = signedIn(request);
      const password = request.body?.currentPassword;
      return identity.mfa.beginEnrol(tenant, session, actionContext(request), password);
    },
  );

  app.post(
    `${tenantApi}/me/mfa/totp/confirm`,
    {
      config: { ...userRoute, stages: ['enrol', 'active'] },
      schema: {
        tags,
        summary: 'Confirm enrolment with a first code; returns recovery codes (shown once) and a new token',
        params: S.TenantParams,
        body: S.CodeBody,
        response: responses({ 200: S.Enrolled }),
      },
    },
    async (request) => {
      const { tenant, session } = signedIn(request);
      const result = await identity.mfa.confirmEnrol(
        tenant,
        session,
        request.body.code,
        actionContext(request),
      );
      return { recoveryCodes: result.recoveryCodes, token: result.token };
    },
  );

  app.post(
    `${tenantApi}/me/mfa/totp/remove`,
    {
      config: userRoute,
      schema: {
        tags,
        summary:
          'Remove your authenticator and recovery codes, to replace them: needs a second factor within 5 minutes, and currentPassword when signed in more than 5 minutes ago; ends every session',
        params: S.TenantParams,
        body: Type.Union([S.EnrolStartBody, Type.Null()]),
        response: responses({ 200: S.MfaResetReply }),
      },
    },
    async (request) => {
      const { tenant, session } = signedIn(request);
      const password = request.body?.currentPassword;
      return removeOwnAuthenticator(identity.deps, tenant, session, actionContext(request), password);
    },
  );

  app.post(
    `${tenantApi}/me/mfa/recovery-codes`,
    {
      config: userRoute,
      schema: {
        tags,
        summary: 'Replace recovery codes (needs a second factor within 5 minutes)',
        params: S.TenantParams,
        response: responses({ 200: S.RecoveryCodes }),
      },
    },
    async (request) => {
      const { tenant, session } = signedIn(request);
      if (!hasRecentSecondFactor(identity.deps, session))
        throw identityError('step_up_required', 'Confirm with your second factor within the last 5 minutes.');
      return {
        recoveryCodes: await identity.mfa.regenerateRecoveryCodes(tenant, session, actionContext(request)),
      };
    },
  );
};
