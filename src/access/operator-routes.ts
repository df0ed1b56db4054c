import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import type { TenantRef } from '../identity/index.ts';
import { actionContext } from '../platform/http/context.ts';
import { responses } from '../platform/http/schemas.ts';
import * as S from './schemas.ts';
import type { AccessService } from './service.ts';

const tags = ['access'];

function operatorContext(request: FastifyRequest) {
  const ctx = actionContext(request);
  if (ctx.actor.type !== 'operator') throw new Error('operator route reached without an operator');
  return { ...ctx, actor: ctx.actor };
}

/** The decision API for the vendor's application, and operators' elevation requests. */
export const accessOperatorRoutes: FastifyPluginAsyncTypebox<{
  access: AccessService;
  resolveTenant: (slug: string) => Promise<TenantRef>;
}> = async (app, { access, resolveTenant }) => {
  app.post(
    '/api/v1/access/decisions',
    {
      config: { access: 'operator', permission: 'decisions:check' },
      schema: {
        tags,
        summary:
          'Whether users hold permissions: up to 100 (tenant, user, permission) checks, answered in order',
        body: S.DecisionBody,
        response: responses({ 200: S.DecisionReply }),
      },
    },
    async (request) => {
      const answers = access.decideAll(request.body.checks);
      // Cached answers are plain booleans; only misses wait for the database.
      const allowed = answers.some((a) => typeof a !== 'boolean')
        ? await Promise.all(answers)
        : (answers as boolean[]);
      return { allowed };
    },
  );

  app.get(
    '/api/v1/access/elevations',
    {
      config: { access: 'operator', permission: 'elevations:request' },
      schema: {
        tags,
        summary: 'Elevation requests of every tenant, newest first',
        response: responses({ 200: Type.Array(S.Elevation) }),
      },
    },
    async () => access.elevations.listAll(),
  );

  app.post(
    '/api/v1/access/elevations',
    {
      config: { access: 'operator', permission: 'elevations:request' },
      schema: {
        tags,
        summary: 'Ask for a role in a tenant for a while (needs a sign-in with TOTP within 15 minutes)',
        body: S.ElevationRequestBody,
        response: responses({ 201: S.Elevation }),
      },
    },
    async (request, reply) => {
      const { tenant, ...input } = request.body;
      const view = await access.elevations.request(
        await resolveTenant(tenant),
        operatorContext(request),
        request.operatorFactor,
        input,
      );
      return reply.status(201).send(view);
    },
  );

  for (const decision of ['approve', 'reject', 'revoke'] as const) {
    app.post(
      `/api/v1/access/elevations/:id/${decision}`,
      {
        config: { access: 'operator', permission: 'elevations:approve' },
        schema: {
          tags,
          summary:
            `${decision[0]?.toUpperCase()}${decision.slice(1)} an operator's elevation (never your own ` +
            'approval; a sign-in token, within 5 minutes of it to approve or reject; never an API token)',
          params: S.PlatformIdParams,
          response: responses({ 200: S.Elevation }),
        },
      },
      async (request) => {
        const ctx = operatorContext(request);
        // The service checks the credential: a sign-in token, with a recent second factor to decide.
        const scope = { factor: request.operatorFactor };
        return decision === 'revoke'
          ? access.elevations.revoke(ctx, request.params.id, scope)
          : access.elevations.decide(ctx, request.params.id, decision, scope);
      },
    );
  }
};
