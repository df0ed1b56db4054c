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
import { signedIn } from './http-auth.ts';
import * as S from './schemas.ts';

/** Signing in (password, then second factor) and out; the signed-in user and their sessions. */
export const sessionRoutes: FastifyPluginAsyncTypebox<IdentityApiOptions> = async (
  app,
  { identity, tenantOf },
) => {
  app.post(
    `${tenantApi}/auth/signin`,
    {
      config: publicRoute,
      schema: {
        tags,
        summary: 'Sign in with email and password; returns a bearer session token',
        params: S.TenantParams,
        body: S.SignInBody,
        response: responses({ 200: S.SignInReply }),
      },
    },
    async (request) => {
      const result = await identity.signIn(
        await tenantOf(request),
        request.body.email,
        request.body.password,
        'bearer',
        actionContext(request),
      );
      return { stage: result.stage, token: result.token, passwordExpired: result.passwordExpired };
    },
  );

  app.post(
    `${tenantApi}/auth/second-factor`,
    {
      config: { ...userRoute, stages: ['mfa', 'active'] },
      schema: {
        tags,
        summary: 'Complete sign-in (or step up) with a TOTP or recovery code; returns a new token',
        params: S.TenantParams,
        body: S.CodeBody,
        response: responses({ 200: S.TokenReply }),
      },
    },
    async (request) => {
      const { tenant, session } = signedIn(request);
      const result = await identity.mfa.verify(tenant, session, request.body.code, actionContext(request));
      return { token: result.token };
    },
  );

  app.post(
    `${tenantApi}/auth/signout`,
    {
      config: { ...userRoute, stages: ['mfa', 'enrol', 'active', 'password'] },
      schema: {
        tags,
        summary: 'End this session',
        params: S.TenantParams,
        response: responses({ 200: S.Accepted }),
      },
    },
    async (request) => {
      const { tenant, session } = signedIn(request);
      await identity.sessions.revoke(tenant, session.userId, session.id, actionContext(request));
      return accepted;
    },
  );

  app.get(
    `${tenantApi}/me`,
    {
      config: userRoute,
      schema: {
        tags,
        summary: 'The signed-in user',
        params: S.TenantParams,
        response: responses({ 200: S.Me }),
      },
    },
    async (request) => {
      const { tenant, session } = signedIn(request);
      return {
        user: await identity.accounts.get(tenant, session.userId),
        mfa: await identity.mfa.status(tenant, session.userId),
      };
    },
  );

  app.get(
    `${tenantApi}/me/session`,
    {
      config: userRoute,
      schema: {
        tags,
        summary: 'The session this request is signed in with (checks a token without touching anything)',
        params: S.TenantParams,
        response: responses({ 200: S.CurrentSession }),
      },
    },
    async (request) => {
      const { session } = signedIn(request);
      return {
        id: session.id,
        userId: session.userId,
        email: session.email,
        role: session.role,
        kind: session.kind,
        stage: 'active' as const,
        createdAt: session.createdAt.toISOString(),
        secondFactorAt: session.mfaAt?.toISOString() ?? null,
      };
    },
  );

  app.get(
    `${tenantApi}/me/sessions`,
    {
      config: userRoute,
      schema: {
        tags,
        summary: 'My live sessions',
        params: S.TenantParams,
        response: responses({ 200: Type.Array(S.SessionInfo) }),
      },
    },
    async (request) => {
      const { tenant, session } = signedIn(request);
      const rows = await identity.sessions.list(tenant, session.userId);
      return rows.map((r) => ({
        id: r.id,
        kind: r.kind,
        current: r.id === session.id,
        createdAt: r.created_at.toISOString(),
        lastSeenAt: r.last_seen_at.toISOString(),
        ip: r.ip,
        userAgent: r.user_agent,
      }));
    },
  );

  app.delete(
    `${tenantApi}/me/sessions/:id`,
    {
      config: userRoute,
      schema: {
        tags,
        summary: 'Revoke one of my sessions',
        params: S.SessionParams,
        response: responses({ 200: S.Accepted }),
      },
    },
    async (request) => {
      const { tenant, session } = signedIn(request);
      await identity.sessions.revokeOwn(tenant, session.userId, request.params.id, actionContext(request));
      return accepted;
    },
  );
};
