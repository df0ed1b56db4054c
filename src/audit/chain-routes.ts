import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import { responses, strictObject, Text } from '../platform/http/schemas.ts';
import type { ForgeryService } from './acknowledge.ts';
import { auditError } from './errors.ts';
import { ApprovalRequired, CANONICAL_UUID } from './schemas.ts';

const tags = ['audit'];
/** Lower-case canonical UUIDs only (schemas.ts, CANONICAL_UUID). */
const EventId = Type.String({
  pattern: `^${CANONICAL_UUID}$`,
  description: 'The event id, a lower-case UUID',
});
const Chain = Type.String({
  pattern: `^(platform|${CANONICAL_UUID})$`,
  description: "A tenant's id (a lower-case UUID), or platform",
});
const Hash = Type.String({ pattern: '^[0-9a-fA-F]{64}$', description: 'SHA-256 chain hash, 64 hex digits' });

/**
 * Administration of the audit chains (operators). Acknowledging a forged event lets the checkpoint job
 * sign its chain again (docs/audit.md, "Recovering from a forged event"): a platform four-eyes action,
 * since one person with database access and an operator account could otherwise forge an event and
 * acknowledge it alone.
 */
export const auditChainRoutes: FastifyPluginAsyncTypebox<{ forgeries: ForgeryService }> = async (
  app,
  { forgeries },
) => {
  app.post(
    '/api/v1/audit/chains/:chain/forgery-acknowledgements',
    {
      // Four-eyes between two operators, always: the gate checks the acknowledgement could run (4xx
      // otherwise), records the request and answers 202 with it; another operator approves (POST
      // /api/v1/access/platform-approvals/:id/approve, a second factor within 5 minutes) and the
      // requester runs it once (.../execute, likewise), which stores the acknowledgement and returns it.
      config: { access: 'operator', permission: 'audit-chains:write', fourEyes: 'audit.chains' },
      schema: {
        tags,
        summary:
          'Ask to acknowledge a forged event (bad or missing MAC) after investigating it, naming its seq, id and hash (202: another operator approves, then you run it; the chain is then signed again and verify keeps naming the event)',
        params: strictObject({
          chain: Chain,
        }),
        body: strictObject({
          seq: Type.Integer({ minimum: 1 }),
          eventId: EventId,
          eventHash: Hash,
          // One line of well-formed text (a lone surrogate would be stored as U+FFFD, and the MAC of the
          // row would never verify).
          reason: Text({ minLength: 1, maxLength: 1000, description: 'What the investigation found' }),
        }),
        response: responses({ 202: ApprovalRequired }),
      },
    },
    async (request) => {
      // Reached only when the gate let the request through, which it never does for valid input: an
      // acknowledgement is stored only by an approved request's execution. Defence in depth: refuse.
      const { chain } = request.params;
      await forgeries.check({ tenantId: chain === 'platform' ? null : chain, ...request.body });
      throw auditError(
        'approval_required',
        'Acknowledging a forged event needs another operator\u2019s approval.',
      );
    },
  );
};
