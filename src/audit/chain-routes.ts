import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyRequest } from 'fastify';
import { actionContext } from '../platform/http/context.ts';
import { responses, strictObject } from '../platform/http/schemas.ts';
import type { ForgeryService } from './acknowledge.ts';
import { auditError } from './errors.ts';

const tags = ['audit'];
const Uuid = Type.String({ format: 'uuid' });
const Hash = Type.String({ pattern: '^[0-9a-fA-F]{64}$', description: 'SHA-256 chain hash, 64 hex digits' });
const Acknowledgement = strictObject({
  id: Uuid,
  chain: Type.String({ description: "The tenant's id, or platform" }),
  seq: Type.Integer(),
  eventId: Uuid,
  eventHash: Hash,
  reason: Type.String(),
  acknowledgedBy: strictObject({ type: Type.String(), id: Type.Union([Type.String(), Type.Null()]) }),
  acknowledgedAt: Type.String({ format: 'date-time' }),
});

/**
 * Administration of the audit chains (operators). Acknowledging a forged event lets the checkpoint job
 * sign its chain again (docs/audit.md, "Event MACs"): a sign-in with the second factor within the last
 * 5 minutes, never an API token alone, as for other operator decisions.
 */
export const auditChainRoutes: FastifyPluginAsyncTypebox<{
  forgeries: ForgeryService;
  needsStepUp: (request: FastifyRequest) => boolean;
}> = async (app, { forgeries, needsStepUp }) => {
  app.post(
    '/api/v1/audit/chains/:chain/forgery-acknowledgements',
    {
      config: { access: 'operator', permission: 'audit-chains:write' },
      schema: {
        tags,
        summary:
          'Acknowledge a forged event (bad or missing MAC) after investigating it, naming its seq, id and hash: the chain is signed again; verify keeps naming it (audited)',
        params: strictObject({
          chain: Type.Union([Type.Literal('platform'), Uuid], { description: "A tenant's id, or platform" }),
        }),
        body: strictObject({
          seq: Type.Integer({ minimum: 1 }),
          eventId: Uuid,
          eventHash: Hash,
          reason: Type.String({ minLength: 1, maxLength: 1000, description: 'What the investigation found' }),
        }),
        response: responses({ 201: Acknowledgement }),
      },
    },
    async (request, reply) => {
      if (needsStepUp(request)) {
        throw auditError(
          'step_up_required',
          'Confirm with your second factor within the last 5 minutes first (sign in again with password and authenticator code).',
        );
      }
      const { chain } = request.params;
      const view = await forgeries.acknowledge(actionContext(request), {
        tenantId: chain === 'platform' ? null : chain,
        ...request.body,
      });
      return reply.status(201).send(view);
    },
  );
};
