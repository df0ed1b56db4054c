import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { actionContext } from '../platform/http/context.ts';
import { platformError } from '../platform/http/errors.ts';
import { responses } from '../platform/http/schemas.ts';
import { type IdentityApiOptions, tags, tenantApi } from './api-route-config.ts';
import { identityError } from './errors.ts';
import * as S from './schemas.ts';

const cursorOf = (email: string) => Buffer.from(email).toString('base64url');
// A cursor this API issued round-trips; anything else (sqlmap found NUL bytes, which PostgreSQL text cannot
// hold and which answered 500) is refused as input.
const afterOf = (cursor: string | undefined) => {
  if (!cursor) return null;
  const email = Buffer.from(cursor, 'base64url').toString('utf8');
  if (email.includes('\0') || cursorOf(email) !== cursor) {
    throw platformError(
      'validation_failed',
      'The cursor is not one this API returned; start again without it.',
      {
        errors: [{ pointer: '/query/cursor', message: 'not a cursor this API returned' }],
      },
    );
  }
  return email;
};

/**
 * A tenant's administration of its users: list, invite, unlock, disable, enable, end sessions, reset the
 * second factor.
 */
export const userAdminRoutes: FastifyPluginAsyncTypebox<IdentityApiOptions> = async (
  app,
  { identity, tenantOf, needsStepUp },
) => {
  app.get(
    `${tenantApi}/users`,
    {
      config: { access: 'tenant', permission: 'users:read' },
      schema: {
        tags,
        summary: 'List users',
        params: S.TenantParams,
        querystring: S.ListQuery,
        response: responses({ 200: S.UserPage }),
      },
    },
    async (request) => {
      const tenant = await tenantOf(request);
      const page = await identity.accounts.list(tenant, afterOf(request.query.cursor), request.query.limit);
      const last = page.items.at(-1);
      return { items: page.items, nextCursor: page.more && last ? cursorOf(last.email) : null };
    },
  );

  app.post(
    `${tenantApi}/users`,
    {
      config: { access: 'tenant', permission: 'users:write', fourEyes: 'identity.invite' },
      schema: {
        tags,
        summary: 'Invite a user (mails a single-use link)',
        params: S.TenantParams,
        body: S.InviteBody,
        response: responses({ 201: Type.Ref('User') }),
      },
    },
    async (request, reply) => {
      const tenant = await tenantOf(request);
      return reply
        .status(201)
        .send(await identity.accounts.invite(tenant, actionContext(request), request.body));
    },
  );

  app.get(
    `${tenantApi}/users/:id`,
    {
      config: { access: 'tenant', permission: 'users:read' },
      schema: {
        tags,
        summary: 'Get a user',
        params: S.UserParams,
        response: responses({ 200: Type.Ref('User') }),
      },
    },
    async (request) => identity.accounts.get(await tenantOf(request), request.params.id),
  );

  app.post(
    `${tenantApi}/users/:id/unlock`,
    {
      // Lifting an administrator's lock is four-eyes (admin-grant-actions.ts): users:write is no
      // administrator power, and each unlock gave whoever guesses the password `threshold` more tries.
      config: { access: 'tenant', permission: 'users:write', fourEyes: 'identity.unlock' },
      schema: {
        tags,
        summary:
          'Lift the password lock (not the second factor’s: it ends by itself, with a right code, or with the second-factor reset)',
        params: S.UserParams,
        response: responses({ 200: Type.Ref('User') }),
      },
    },
    async (request) =>
      identity.accounts.unlock(await tenantOf(request), actionContext(request), request.params.id),
  );

  app.post(
    `${tenantApi}/users/:id/disable`,
    {
      config: { access: 'tenant', permission: 'users:write' },
      schema: {
        tags,
        summary:
          'Disable a user: sign-in refused, every session ended, no permission held (optional reason, audited)',
        params: S.UserParams,
        body: Type.Union([S.DisableBody, Type.Null()]),
        response: responses({ 200: Type.Ref('User') }),
      },
    },
    async (request) =>
      identity.userStatus.disable(
        await tenantOf(request),
        actionContext(request),
        request.params.id,
        request.body?.reason ?? null,
      ),
  );

  app.post(
    `${tenantApi}/users/:id/enable`,
    {
      // An operator's enable (under an elevation) is four-eyes: lasting access (src/access/elevated-grants.ts).
      config: { access: 'tenant', permission: 'users:write', fourEyes: 'identity.enable' },
      schema: {
        tags,
        summary: 'Enable a disabled user again (active, or invited if they never set a password)',
        params: S.UserParams,
        response: responses({ 200: Type.Ref('User') }),
      },
    },
    async (request) =>
      identity.userStatus.enable(await tenantOf(request), actionContext(request), request.params.id),
  );

  app.delete(
    `${tenantApi}/users/:id/sessions`,
    {
      config: { access: 'tenant', permission: 'users:write' },
      schema: {
        tags,
        summary: "Revoke all of a user's sessions",
        params: S.UserParams,
        response: responses({
          200: Type.Object({ revoked: Type.Integer() }, { additionalProperties: false }),
        }),
      },
    },
    async (request) => ({
      revoked: await identity.sessions.revokeAll(
        await tenantOf(request),
        request.params.id,
        actionContext(request),
      ),
    }),
  );

  app.delete(
    `${tenantApi}/users/:id/mfa`,
    {
      config: { access: 'tenant', permission: 'users:write', fourEyes: 'identity.mfa-reset' },
      schema: {
        tags,
        summary:
          "Reset a user's second factor: authenticator and recovery codes removed, every session ended, the user mailed (needs your second factor within 5 minutes; not on yourself)",
        params: S.UserParams,
        response: responses({ 200: S.MfaResetReply }),
      },
    },
    async (request) => {
      const tenant = await tenantOf(request);
      // It takes a factor off an account: like deciding an approval, it needs the caller's own recent
      // second factor, so a stolen administrator session alone cannot strip one.
      if (needsStepUp(request)) {
        throw identityError(
          'step_up_required',
          'Confirm with your second factor within the last 5 minutes first (operators: sign in again with ' +
            'password and authenticator code).',
        );
      }
      return identity.mfa.reset(tenant, actionContext(request), request.params.id);
    },
  );
};
