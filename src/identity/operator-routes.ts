import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { Mailer } from '../mail/index.ts';
import { actionContext } from '../platform/http/context.ts';
import { responses, strictObject } from '../platform/http/schemas.ts';
import type { TenantResolver } from './http-auth.ts';
import { Email } from './schemas.ts';
import type { IdentityService } from './service.ts';

const tags = ['operators'];

/** What operators do for identity: invite a tenant's first administrator, read the dev outbox. */
export const identityOperatorRoutes: FastifyPluginAsyncTypebox<{
  identity: IdentityService;
  resolveTenant: TenantResolver;
  mailer: Mailer;
}> = async (app, { identity, resolveTenant, mailer }) => {
  app.post(
    '/api/v1/tenants/:slug/admins',
    {
      config: { access: 'operator' },
      schema: {
        tags,
        summary:
          'Invite a tenant administrator (mails a single-use link); operators get no access themselves',
        params: strictObject({ slug: Type.String({ pattern: '^[a-z][a-z0-9-]{1,38}[a-z0-9]$' }) }),
        body: strictObject({ email: Email, displayName: Type.String({ maxLength: 200, default: '' }) }),
        response: responses({ 201: Type.Ref('User') }),
      },
    },
    async (request, reply) => {
      const tenant = await resolveTenant(request.params.slug);
      const user = await identity.accounts.invite(tenant, actionContext(request), {
        ...request.body,
        role: 'tenant-admin',
      });
      return reply.status(201).send(user);
    },
  );

  app.get(
    '/api/v1/outbox',
    {
      config: { access: 'operator' },
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
