import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Mailer } from '../mail/index.ts';
import { actionContext } from '../platform/http/context.ts';
import { responses, strictObject, Text } from '../platform/http/schemas.ts';
import type { TenantResolver } from './http-auth.ts';
import type { OperatorSignIn } from './operator-sign-in.ts';
import { Email, Password } from './schemas.ts';
import type { IdentityService } from './service.ts';

const tags = ['operators'];

/** What operators do for identity: invite a tenant's first administrator, read the dev outbox. */
export const identityOperatorRoutes: FastifyPluginAsyncTypebox<{
  identity: IdentityService;
  resolveTenant: TenantResolver;
  mailer: Mailer;
  operatorSignIn: OperatorSignIn;
}> = async (app, { identity, resolveTenant, mailer, operatorSignIn }) => {
  const SetupToken = Type.String({ minLength: 20, maxLength: 200 });
  const Enrolment = strictObject({ secret: Type.String(), uri: Type.String(), qrSvg: Type.String() });

  app.post(
    '/api/v1/operator/setup',
    {
      config: { access: 'public' },
      schema: {
        tags,
        summary:
          'Operator set-up, step 1: choose a password (12-128 characters, not common or breached); returns the TOTP secret to enrol',
        body: strictObject({ token: SetupToken, password: Password }),
        response: responses({ 200: Enrolment }),
      },
    },
    async (request) =>
      operatorSignIn.begin(actionContext(request), request.body.token, request.body.password),
  );

  app.post(
    '/api/v1/operator/setup/confirm',
    {
      config: { access: 'public' },
      schema: {
        tags,
        summary: 'Operator set-up, step 2: confirm the authenticator with a first code; the link is used up',
        body: strictObject({ token: SetupToken, code: Type.String({ pattern: '^[0-9]{6}$' }) }),
        response: responses({ 200: strictObject({ status: Type.Literal('enrolled') }) }),
      },
    },
    async (request) => {
      await operatorSignIn.confirm(actionContext(request), request.body.token, request.body.code);
      return { status: 'enrolled' as const };
    },
  );

  app.post(
    '/api/v1/operator/signin',
    {
      config: { access: 'public' },
      schema: {
        tags,
        summary: 'Operator sign-in: password and TOTP code together (two factors, always); an 8-hour token',
        body: strictObject({
          email: Email,
          password: Password,
          code: Type.String({ pattern: '^[0-9]{6}$' }),
        }),
        response: responses({ 200: strictObject({ token: Type.String(), expiresAt: Type.String() }) }),
      },
    },
    async (request) => {
      const session = await operatorSignIn.signIn(
        actionContext(request),
        request.body.email,
        request.body.password,
        request.body.code,
      );
      return { token: session.token, expiresAt: session.expiresAt.toISOString() };
    },
  );

  app.post(
    '/api/v1/tenants/:slug/admins',
    {
      config: { access: 'operator', permission: 'tenants:invite-admin' },
      schema: {
        tags,
        summary:
          "Invite a tenant's first administrator (mails a single-use link); refused (409) once it has one " +
          'or a pending invitation for one; operators get no access themselves',
        params: strictObject({ slug: Type.String({ pattern: '^[a-z][a-z0-9-]{1,38}[a-z0-9]$' }) }),
        body: strictObject({ email: Email, displayName: Text({ maxLength: 200, default: '' }) }),
        response: responses({ 201: Type.Ref('User') }),
      },
    },
    async (request, reply) => {
      const tenant = await resolveTenant(request.params.slug);
      const user = await identity.accounts.inviteFirstAdmin(tenant, actionContext(request), request.body);
      return reply.status(201).send(user);
    },
  );

  app.get(
    '/api/v1/outbox',
    {
      config: { access: 'operator', permission: 'outbox:read' },
      schema: {
        tags,
        summary: 'Development outbox: mail that was not sent because no SMTP server is configured',
        querystring: strictObject({ limit: Type.Integer({ minimum: 1, maximum: 500, default: 50 }) }),
        response: responses({
          200: Type.Array(
            strictObject({
              id: Type.String(),
              to: Type.String(),
              subject: Type.String(),
              text: Type.String(),
              createdAt: Type.String(),
            }),
          ),
        }),
      },
    },
    async (request) => mailer.outbox(request.query.limit),
  );
};
