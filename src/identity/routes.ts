import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { actionContext } from '../platform/http/context.ts';
import { platformError } from '../platform/http/errors.ts';
import { responses } from '../platform/http/schemas.ts';
import type { TenantRef } from './deps.ts';
import { identityError } from './errors.ts';
import { needsUserStepUp, type TenantResolver, tenantSlugOf } from './http-auth.ts';
import * as S from './schemas.ts';
import type { IdentityService } from './service.ts';
import { hasRecentSecondFactor, type ValidSession } from './sessions.ts';

const tags = ['identity'];
const publicRoute = { access: 'public' } as const;
/** Any signed-in user of the tenant, acting on their own account. */
const userRoute = { access: 'user', permission: 'self' } as const;
const accepted = { status: 'accepted' as const };

/** The tenant and session the access hook attached: present on every `user` route. */
export function signedIn(request: FastifyRequest): { tenant: TenantRef; session: ValidSession } {
  if (!request.tenant || !request.session) throw new Error('user route reached without a session');
  return { tenant: request.tenant, session: request.session };
}

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

export const identityApiRoutes: FastifyPluginAsyncTypebox<{
  identity: IdentityService;
  resolveTenant: TenantResolver;
}> = async (app, { identity, resolveTenant }) => {
  const tenantOf = (request: FastifyRequest) => resolveTenant(tenantSlugOf(request));
  const p = '/api/v1/t/:tenant';

  app.get(
    `${p}/settings`,
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
    `${p}/settings`,
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

  app.post(
    `${p}/auth/signin`,
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
    `${p}/auth/second-factor`,
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
    `${p}/auth/signout`,
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
    `${p}/me`,
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
    `${p}/me/session`,
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
    `${p}/me/sessions`,
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
    `${p}/me/sessions/:id`,
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

  app.post(
    `${p}/me/mfa/totp`,
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
    `${p}/me/mfa/totp/confirm`,
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
    `${p}/me/mfa/recovery-codes`,
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

  app.post(
    `${p}/me/password`,
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
    async (request) => {
      const { tenant, session } = signedIn(request);
      await identity.accounts.changePassword(
        tenant,
        actionContext(request),
        session,
        request.body.currentPassword,
        request.body.newPassword,
      );
      return accepted;
    },
  );

  app.post(
    `${p}/signup`,
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
    `${p}/invitations/accept`,
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
    `${p}/email/verify`,
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
    `${p}/password/forgot`,
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
    `${p}/password/reset`,
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

  app.get(
    `${p}/users`,
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
    `${p}/users`,
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
    `${p}/users/:id`,
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
    `${p}/users/:id/unlock`,
    {
      config: { access: 'tenant', permission: 'users:write' },
      schema: {
        tags,
        summary: 'Unlock a locked account',
        params: S.UserParams,
        response: responses({ 200: Type.Ref('User') }),
      },
    },
    async (request) =>
      identity.accounts.unlock(await tenantOf(request), actionContext(request), request.params.id),
  );

  app.post(
    `${p}/users/:id/disable`,
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
    `${p}/users/:id/enable`,
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
    `${p}/users/:id/sessions`,
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
};
