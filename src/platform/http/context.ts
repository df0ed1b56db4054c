import type { FastifyRequest } from 'fastify';
import type { ActionContext } from '../context.ts';

/** The audit context of a request: its authenticated actor, client address, user agent and id. */
export function actionContext(request: FastifyRequest): ActionContext {
  const agent = request.headers['user-agent'];
  return {
    actor: request.actor,
    ip: request.ip,
    userAgent: typeof agent === 'string' ? agent.slice(0, 512) : null,
    requestId: request.id,
  };
}
