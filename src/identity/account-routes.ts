import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { actionContext } from '../platform/http/context.ts';
import { responses } from '../platform/http/schemas.ts';
import {
  accepted,
  type IdentityApiOptions,
  publicRoute,
  tags,
  tenantApi,
  userRoute,
} from './api-route-config.ts';
import { secureCookiesFor, setSessionCookie, signedIn } from './http-auth.ts';
import * as S from './schemas.ts';

/** Account flows: change password, sign-up, invitation, email verification, password reset. */
export const accountRoutes: FastifyPluginAsyncTypebox<IdentityApiOptions> = async (
  app,
  { identity, tenantOf },
) => {
  app.post(
    `${tenantApi}/me/password`,
    {
      config: { ...userRoute, stages: ['active', 'password'] },
      schema: {
        tags,
        summary: 'Change password: web sessions only; API tokens are refused',
        params: S.TenantParams,
        body: Type.Object(
          { currentPassword: S.Password, newPassword: S.Password },
          { additionalProperties: false },
        ),
        response: responses({ 200: S.Accepted }),
      },
    },
    async (request, reply) => {
      const { tenant, session } = signedIn(request);
      const { token } = await identity.accounts.changePassword(
        tenant,
        actionContext(request),
        session,
        request.body.currentPassword,
        request.body.newPassword,
      );
      // A cookie session (the only kind allowed here) goes on under a new token, set as its cookie.
      const secure = secureCookiesFor(identity.deps.publicUrl);
      setSessionCookie(reply, token, secure, `/t/${tenant.slug}`);
      return accepted;
    },
  );

  app.post(
    `${tenantApi}/signup`,
    {
      config: publicRoute,
      schema: {
        tags,
        summary: 'Self sign-up, when the tenant allows it; the answer never reveals existing accounts',
        params: S.TenantParams,
        body: S.SignUpBody,
        response: responses({ 202: S.Accepted }),
      },
    },
    async (request, reply) => {
      await identity.accounts.signUp(await tenantOf(request), actionContext(request), request.body);
      return reply.status(202).send(accepted);
    },
  );

  app.post(
    `${tenantApi}/invitations/accept`,
    {
      config: publicRoute,
      schema: {
        tags,
        summary: 'Accept an invitation by choosing a password',
        params: S.TenantParams,
        body: S.AcceptBody,
        response: responses({ 200: S.Accepted }),
      },
    },
    async (request) => {
      await identity.accounts.acceptInvite(
        await tenantOf(request),
        actionContext(request),
        request.body.token,
        request.body.password,
      );
      return accepted;
    },
  );

  app.post(
    `${tenantApi}/email/verify`,
    {
      config: publicRoute,
      schema: {
        tags,
        summary: 'Confirm an email address from the mailed link',
        params: S.TenantParams,
        body: S.VerifyBody,
        response: responses({ 200: S.Accepted }),
      },
    },
    async (request) => {
      await identity.accounts.verifyEmail(
        await tenantOf(request),
        actionContext(request),
        request.body.token,
      );
      return accepted;
    },
  );

  app.post(
    `${tenantApi}/password/forgot`,
    {
      config: publicRoute,
      schema: {
        tags,
        summary: 'Mail a password-reset link (same answer whether or not the account exists)',
        params: S.TenantParams,
        body: S.ForgotBody,
        response: responses({ 202: S.Accepted }),
      },
    },
    async (request, reply) => {
      await identity.accounts.forgotPassword(
        await tenantOf(request),
        actionContext(request),
        request.body.email,
      );
      return reply.status(202).send(accepted);
    },
  );

  app.post(
    `${tenantApi}/password/reset`,
    {
      config: publicRoute,
      schema: {
        tags,
        summary: 'Set a new password from a reset link; unlocks the account and ends all sessions',
        params: S.TenantParams,
        body: S.AcceptBody,
        response: responses({ 200: S.Accepted }),
      },
    },
    async (request) => {
      await identity.accounts.resetPassword(
        await tenantOf(request),
        actionContext(request),
        request.body.token,
        request.body.password,
      );
      return accepted;
    },
  );
};
