import { randomUUID } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const acceptable = /^[A-Za-z0-9._:-]{8,64}$/;

/**
 * Keeps a caller's X-Request-Id when it is a plain token (so traces join up across a proxy), and
 * otherwise makes one: a free-form header must not be able to inject text into logs.
 */
export function requestIdFor(request: IncomingMessage): string {
  const given = request.headers['x-request-id'];
  return typeof given === 'string' && acceptable.test(given) ? given : randomUUID();
}
