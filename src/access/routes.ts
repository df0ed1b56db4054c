import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import type { TenantRef } from '../identity/index.ts';
import { actionContext } from '../platform/http/context.ts';
import { platformError } from '../platform/http/errors.ts';
import { responses } from '../platform/http/schemas.ts';
import { allPermissions } from './catalogue.ts';
import type { JsonValue } from './critical.ts';
import { accessError } from './errors.ts';
import { STEP_UP_MESSAGE } from './http.ts';
import * as S from './schemas.ts';
import type { AccessService } from './service.ts';

const tags = ['access'];

/** The tenant the access hook resolved for a `tenant` or `user` route. */
function tenantOf(request: FastifyRequest): TenantRef {
  if (!request.tenant) throw new Error('tenant route reached without a tenant');
  return request.tenant;
}

/** Tenant administration of roles, assignments, four-eyes approvals and operators' elevations. */
export const accessTenantRoutes: FastifyPluginAsyncTypebox<{
  access: AccessService;
  /** The access hook's authorizer, to re-check the requester's permission when an approved action runs. */
  holds: (request: FastifyRequest, permission: string) => Promise<boolean>;
  /** Whether a user's session must confirm its second factor again (enrolled, and not within 5 minutes). */
  needsStepUp: (request: FastifyRequest) => boolean;
}> = async (app, { access, holds, needsStepUp }) => {
  /** Deciding on or running a critical action is itself critical: a recent second factor, like identity's. */
  const stepUp = (request: FastifyRequest) => {
    if (needsStepUp(request)) throw accessError('step_up_required', STEP_UP_MESSAGE);
  };
  const p = '/api/v1/t/:tenant/access';

  app.get(
    `${p}/permissions`,
    {
      config: { access: 'tenant', permission: 'roles:read' },
      schema: {
        tags,
        summary: 'The tenant permissions roles can give',
        params: S.TenantParams,
        response: responses({ 200: Type.Array(S.Permission) }),
      },
    },
    async () =>
      allPermissions()
        .filter((d) => d.scope === 'tenant')
        .map(({ name, capability, description }) => ({ name, capability, description })),
  );

  app.get(
    `${p}/roles`,
    {
      config: { access: 'tenant', permission: 'roles:read' },
      schema: {
        tags,
        summary: 'Built-in and custom roles',
        params: S.TenantParams,
        response: responses({ 200: Type.Array(S.Role) }),
      },
    },
    async (request) => access.roles.list(tenantOf(request).id),
  );

  app.post(
    `${p}/roles`,
    {
      config: { access: 'tenant', permission: 'roles:write' },
      schema: {
        tags,
        summary: 'Create a custom role',
        params: S.TenantParams,
        body: S.CreateRoleBody,
        response: responses({ 201: S.Role }),
      },
    },
    async (request, reply) => {
      const { key, ...input } = request.body;
      return reply
        .status(201)
        .send(await access.roles.create(tenantOf(request).id, actionContext(request), key, input));
    },
  );

  app.put(
    `${p}/roles/:role`,
    {
      config: { access: 'tenant', permission: 'roles:write', fourEyes: 'access.role' },
      schema: {
        tags,
        summary:
          'Change a custom role (adding an administrator power to a role someone holds needs a second person when four-eyes is on)',
        params: S.RoleParams,
        body: S.RoleBody,
        response: responses({ 200: S.Role, 202: S.ApprovalRequired }),
      },
    },
    async (request) =>
      access.roles.update(tenantOf(request).id, actionContext(request), request.params.role, request.body),
  );

  app.delete(
    `${p}/roles/:role`,
    {
      config: { access: 'tenant', permission: 'roles:write' },
      schema: {
        tags,
        summary: 'Delete a custom role and its assignments',
        params: S.RoleParams,
        response: responses({ 204: Type.Null() }),
      },
    },
    async (request, reply) => {
      await access.roles.remove(tenantOf(request).id, actionContext(request), request.params.role);
      return reply.status(204).send(null);
    },
  );

  app.get(
    `${p}/users/:userId/roles`,
    {
      config: { access: 'tenant', permission: 'roles:read' },
      schema: {
        tags,
        summary: "A user's roles",
        params: S.UserParams,
        response: responses({ 200: S.UserRoles }),
      },
    },
    async (request) => ({
      userId: request.params.userId,
      roles: await access.roles.userRoles(tenantOf(request).id, request.params.userId),
    }),
  );

  app.put(
    `${p}/users/:userId/roles/:role`,
    {
      config: { access: 'tenant', permission: 'roles:assign', fourEyes: 'access.assign' },
      schema: {
        tags,
        summary:
          'Grant a role, never to oneself (a role with administrator powers needs a second person when four-eyes is on)',
        params: S.UserRoleParams,
        response: responses({ 200: S.UserRoles, 202: S.ApprovalRequired }),
      },
    },
    async (request) => {
      const tenant = tenantOf(request);
      const { userId, role } = request.params;
      await access.roles.assign(tenant.id, actionContext(request), userId, role);
      return { userId, roles: await access.roles.userRoles(tenant.id, userId) };
    },
  );

  app.delete(
    `${p}/users/:userId/roles/:role`,
    {
      config: { access: 'tenant', permission: 'roles:assign' },
      schema: {
        tags,
        summary: 'Remove a role from a user (never tenant-admin from the last active administrator: 409)',
        params: S.UserRoleParams,
        response: responses({ 200: S.UserRoles }),
      },
    },
    async (request) => {
      const tenant = tenantOf(request);
      const { userId, role } = request.params;
      await access.roles.unassign(tenant.id, actionContext(request), userId, role);
      return { userId, roles: await access.roles.userRoles(tenant.id, userId) };
    },
  );

  app.get(
    `${p}/settings`,
    {
      config: { access: 'tenant', permission: 'roles:read' },
      schema: {
        tags,
        summary: 'Four-eyes list and elevation rules',
        params: S.TenantParams,
        response: responses({ 200: S.AccessSettings }),
      },
    },
    async (request) => access.settings.get(tenantOf(request).id),
  );

  app.put(
    `${p}/settings`,
    {
      config: { access: 'tenant', permission: 'access:configure', fourEyes: 'access.settings' },
      schema: {
        tags,
        summary: 'Change the four-eyes list and elevation rules (removing an action needs a second person)',
        params: S.TenantParams,
        body: S.AccessSettings,
        response: responses({ 200: S.AccessSettings, 202: S.ApprovalRequired }),
      },
    },
    async (request) => access.settings.update(tenantOf(request).id, actionContext(request), request.body),
  );

  app.get(
    `${p}/approvals`,
    {
      config: { access: 'tenant', permission: 'approvals:decide' },
      schema: {
        tags,
        summary: 'Four-eyes requests, newest first',
        params: S.TenantParams,
        querystring: S.ApprovalQuery,
        response: responses({ 200: Type.Array(S.Approval) }),
      },
    },
    async (request) => access.approvals.list(tenantOf(request).id, request.query.status),
  );

  for (const decision of ['approve', 'reject'] as const) {
    app.post(
      `${p}/approvals/:id/${decision}`,
      {
        config: { access: 'tenant', permission: 'approvals:decide' },
        schema: {
          tags,
          summary: `${decision === 'approve' ? 'Approve' : 'Reject'} someone else's critical action`,
          params: S.IdParams,
          response: responses({ 200: S.Approval }),
        },
      },
      async (request) => {
        stepUp(request);
        return access.approvals.decide(
          tenantOf(request).id,
          actionContext(request),
          request.params.id,
          decision,
        );
      },
    );
  }

  app.post(
    `${p}/approvals/:id/execute`,
    {
      // Whoever asked runs it; they must still hold the permission of the route they asked on (below).
      config: { access: 'tenant', permission: 'approvals:request' },
      schema: {
        tags,
        summary: 'Run an approved critical action once, sending exactly the approved parameters',
        params: S.IdParams,
        body: S.ExecuteBody,
        response: responses({ 200: S.Approval }),
      },
    },
    async (request) => {
      const tenant = tenantOf(request);
      stepUp(request);
      const approval = await access.approvals.get(tenant.id, request.params.id);
      if (!(await holds(request, approval.permission))) {
        throw platformError(
          'forbidden',
          `Running this needs the permission "${approval.permission}", which you no longer hold.`,
        );
      }
      return access.approvals.execute(
        tenant,
        actionContext(request),
        request.params.id,
        request.body.params as JsonValue,
      );
    },
  );

  app.get(
    `${p}/elevations`,
    {
      config: { access: 'user', permission: 'elevations:decide' },
      schema: {
        tags,
        summary: "Operators' elevation requests for this tenant",
        params: S.TenantParams,
        response: responses({ 200: Type.Array(S.Elevation) }),
      },
    },
    async (request) => access.elevations.listForTenant(tenantOf(request).id),
  );

  for (const decision of ['approve', 'reject', 'revoke'] as const) {
    app.post(
      `${p}/elevations/:id/${decision}`,
      {
        // Tenant people only: an elevated operator never decides on operators' access.
        config: { access: 'user', permission: 'elevations:decide' },
        schema: {
          tags,
          summary: `${decision[0]?.toUpperCase()}${decision.slice(1)} an operator's elevation in this tenant`,
          params: S.IdParams,
          response: responses({ 200: S.Elevation }),
        },
      },
      async (request) => {
        // Granting an operator access to the tenant is as critical as a four-eyes decision. Revoking only
        // takes access away and stays as quick as possible.
        if (decision !== 'revoke') stepUp(request);
        const scope = { tenantId: tenantOf(request).id };
        const ctx = actionContext(request);
        return decision === 'revoke'
          ? access.elevations.revoke(ctx, request.params.id, scope)
          : access.elevations.decide(ctx, request.params.id, decision, scope);
      },
    );
  }
};
