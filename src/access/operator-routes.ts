import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import type { TenantRef } from '../identity/index.ts';
import type { Clock } from '../platform/context.ts';
import { actionContext } from '../platform/http/context.ts';
import { platformError } from '../platform/http/errors.ts';
import { responses } from '../platform/http/schemas.ts';
import type { JsonValue } from './critical.ts';
import { accessError } from './errors.ts';
import { operatorNeedsStepUp, STEP_UP_MESSAGE } from './http.ts';
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
  clock: Clock;
}> = async (app, { access, resolveTenant, clock }) => {
  /** Deciding and running a platform action need a sign-in (password + TOTP) within 5 minutes. */
  const stepUp = (request: FastifyRequest) => {
    if (operatorNeedsStepUp(request, clock.now())) throw accessError('step_up_required', STEP_UP_MESSAGE);
  };

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

  app.get(
    '/api/v1/access/platform-approvals',
    {
      config: { access: 'operator', permission: 'platform-approvals:decide' },
      schema: {
        tags,
        summary:
          "Operators' platform critical actions (adding a SIEM sink, enabling an operator, weakening the platform's alerting, acknowledging a forged audit event) waiting or decided, newest first",
        querystring: S.ApprovalQuery,
        response: responses({ 200: Type.Array(S.Approval) }),
      },
    },
    async (request) => access.platformApprovals.list(request.query.status),
  );

  for (const decision of ['approve', 'reject'] as const) {
    app.post(
      `/api/v1/access/platform-approvals/:id/${decision}`,
      {
        config: { access: 'operator', permission: 'platform-approvals:decide' },
        schema: {
          tags,
          summary:
            `${decision === 'approve' ? 'Approve' : 'Reject'} another operator's platform critical action ` +
            '(never your own; a sign-in token within 5 minutes, never an API token)',
          params: S.PlatformIdParams,
          response: responses({ 200: S.Approval }),
        },
      },
      async (request) => {
        stepUp(request);
        return access.platformApprovals.decide(operatorContext(request), request.params.id, decision);
      },
    );
  }

  app.post(
    '/api/v1/access/platform-approvals/:id/execute',
    {
      // Whoever asked runs it; every operator holds every platform permission today, so still holding
      // the permission of the route asked on means still being an active operator (the credential check).
      config: { access: 'operator', permission: 'platform-approvals:request' },
      schema: {
        tags,
        summary:
          'Run your approved platform critical action once, sending exactly the approved parameters; ' +
          "answers the action's result (a new webhook sink's signing secret, shown only now)",
        params: S.PlatformIdParams,
        body: S.ExecuteBody,
        response: responses({ 200: S.PlatformExecuted }),
      },
    },
    async (request) => {
      stepUp(request);
      const approval = await access.platformApprovals.get(request.params.id);
      if (access.critical.action(approval.action)?.scope !== 'platform') {
        throw platformError('forbidden', 'This is not a platform critical action.');
      }
      return access.platformApprovals.execute(
        operatorContext(request),
        request.params.id,
        request.body.params as JsonValue,
      );
    },
  );
};
