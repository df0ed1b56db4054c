import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { bearerToken } from '../platform/http/access.ts';
import { actionContext } from '../platform/http/context.ts';
import { responses, strictObject, Text, Timestamp, Uuid } from '../platform/http/schemas.ts';
import { operatorAdminError } from './errors.ts';
import type { OperatorAdmin } from './operator-admin.ts';

const ApprovalRequired = strictObject({
  status: Type.Literal('approval_required'),
  approval: Type.Record(Type.String(), Type.Unknown(), {
    description: 'The platform approval request (as GET /api/v1/access/platform-approvals/:id)',
  }),
});

const tags = ['operators'];
const IdParams = strictObject({ id: Uuid });
const OperatorSummary = strictObject({
  id: Type.String(),
  email: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
});
// Never the token or its hash: the response schema drops anything else a row might carry.
const TokenInfo = strictObject({
  id: Type.String(),
  kind: Type.Union([Type.Literal('api'), Type.Literal('session'), Type.Literal('setup')]),
  label: Type.String(),
  createdAt: Timestamp,
  expiresAt: Timestamp,
  lastUsedAt: Type.Union([Timestamp, Type.Null()]),
  current: Type.Boolean(),
  scopes: Type.Union([Type.Array(Type.String()), Type.Null()], {
    description: 'The only platform permissions this API token carries; null: all of them',
  }),
});
const OperatorListEntry = strictObject({
  id: Type.String(),
  email: Type.String(),
  displayName: Type.String(),
  status: Type.Union([Type.Literal('active'), Type.Literal('disabled')]),
  secondFactor: Type.Boolean(),
  locked: Type.Boolean(),
  createdAt: Timestamp,
  liveCredentials: Type.Integer(),
  lastUsedAt: Type.Union([Timestamp, Type.Null()]),
});
const iso = (d: Date | null) => d?.toISOString() ?? null;
/** The label of a further API token (`rampart operators token EMAIL --label TEXT`). */
export const OperatorTokenLabel = strictObject({ label: Text({ minLength: 1, maxLength: 100 }) });
export const OperatorDisableBody = strictObject({
  reason: Type.Optional(Text({ minLength: 1, maxLength: 500 })),
});

/** The operator behind the request (routes here are `access: 'operator'`, so it is one). */
const operatorOf = (request: FastifyRequest): string => {
  const { actor } = request;
  if (actor.type !== 'operator' || !actor.id) throw new Error('operator route reached without an operator');
  return actor.id;
};

/**
 * Operators' credentials: their own (sign-out, list, revoke; `self`) and other operators' status and
 * credentials (`operators:write`). Every revocation reaches every node's credential cache at once.
 */
export const operatorAdminRoutes: FastifyPluginAsyncTypebox<{ admin: OperatorAdmin }> = async (
  app,
  { admin },
) => {
  app.post(
    '/api/v1/operator/signout',
    {
      config: { access: 'operator', permission: 'self' },
      schema: {
        tags,
        summary: 'End the credential this request is made with',
        response: responses({ 204: Type.Null() }),
      },
    },
    async (request, reply) => {
      await admin.signOut(actionContext(request), operatorOf(request), bearerToken(request) ?? '');
      return reply.status(204).send(null);
    },
  );

  app.get(
    '/api/v1/operator/tokens',
    {
      config: { access: 'operator', permission: 'self' },
      schema: {
        tags,
        summary: 'Your live credentials (API tokens, sign-in sessions, set-up links); never the secret',
        response: responses({ 200: Type.Array(TokenInfo) }),
      },
    },
    async (request) => {
      const tokens = await admin.listOwn(operatorOf(request), bearerToken(request));
      return tokens.map((t) => ({
        ...t,
        createdAt: t.createdAt.toISOString(),
        expiresAt: t.expiresAt.toISOString(),
        lastUsedAt: iso(t.lastUsedAt),
      }));
    },
  );

  app.get(
    '/api/v1/operators',
    {
      config: { access: 'operator', permission: 'operators:read' },
      schema: {
        tags,
        summary: 'Every operator with status, second factor, lockout, live credentials and last use',
        response: responses({ 200: Type.Array(OperatorListEntry) }),
      },
    },
    async () =>
      (await admin.list()).map((o) => ({
        ...o,
        createdAt: o.createdAt.toISOString(),
        lastUsedAt: iso(o.lastUsedAt),
      })),
  );

  app.delete(
    '/api/v1/operator/tokens/:id',
    {
      config: { access: 'operator', permission: 'self' },
      schema: {
        tags,
        summary: 'Revoke one of your credentials, on every node at once',
        params: IdParams,
        response: responses({ 204: Type.Null() }),
      },
    },
    async (request, reply) => {
      await admin.revokeOwn(actionContext(request), operatorOf(request), request.params.id);
      return reply.status(204).send(null);
    },
  );

  app.post(
    '/api/v1/operators/:id/disable',
    {
      config: { access: 'operator', permission: 'operators:write' },
      schema: {
        tags,
        summary:
          'Disable an operator: every credential revoked, sign-in refused (not yourself, not the last one)',
        params: IdParams,
        body: Type.Union([OperatorDisableBody, Type.Null()]),
        response: responses({
          200: strictObject({ ...OperatorSummary.properties, revoked: Type.Integer() }),
        }),
      },
    },
    async (request) => admin.disable(actionContext(request), request.params.id, request.body?.reason ?? null),
  );

  app.post(
    '/api/v1/operators/:id/enable',
    {
      // Four-eyes between two operators, always (docs/access.md, "Four-eyes for platform actions"): the
      // gate answers 202 with the request; another operator approves; the requester runs it once.
      config: { access: 'operator', permission: 'operators:write', fourEyes: 'identity.operators' },
      schema: {
        tags,
        summary:
          'Ask to enable a disabled operator (202: another operator approves, then you run it; their old credentials stay revoked)',
        params: IdParams,
        response: responses({ 202: ApprovalRequired }),
      },
    },
    async () => {
      // Reached only if the gate let an enable through, which it never does: refuse, never enable here.
      throw operatorAdminError(
        'approval_required',
        'Enabling an operator needs another operator\u2019s approval.',
      );
    },
  );

  app.post(
    '/api/v1/operators/:id/revoke-tokens',
    {
      config: { access: 'operator', permission: 'operators:write' },
      schema: {
        tags,
        summary: 'Revoke every live credential of an operator, on every node at once',
        params: IdParams,
        response: responses({ 200: strictObject({ revoked: Type.Integer() }) }),
      },
    },
    async (request) => admin.revokeAll(actionContext(request), request.params.id),
  );

  app.post(
    '/api/v1/operators/:id/unlock',
    {
      // Four-eyes between two operators, always: password and code count together, so one operator's
      // unlock, as often as they liked, gave whoever held another's password 5 more codes each time.
      config: { access: 'operator', permission: 'operators:write', fourEyes: 'identity.operator-unlock' },
      schema: {
        tags,
        summary:
          "Ask to lift an operator's sign-in lock (202: another operator approves, then you run it; the CLI unlocks directly)",
        params: IdParams,
        response: responses({ 202: ApprovalRequired }),
      },
    },
    async () => {
      // Reached only if the gate let an unlock through, which it never does: refuse, never unlock here.
      throw operatorAdminError(
        'approval_required',
        'Lifting an operator\u2019s sign-in lock needs another operator\u2019s approval.',
      );
    },
  );
};
