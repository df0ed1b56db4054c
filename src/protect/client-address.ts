import { isIP } from 'node:net';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { protectError } from './errors.ts';

/**
 * Behind a trusted proxy the client address comes from X-Forwarded-For, and Fastify (proxy-addr) takes the
 * nearest untrusted entry as it is, address or not. A proxy that passes a client's header through instead
 * of appending the peer would hand us "not-an-ip" as the client: that must not reach rate-limit keys,
 * block-list lookups or the audit trail's inet column. Refused first, as the client's input.
 */
export const clientAddressPlugin = fp(
  async (app: FastifyInstance) => {
    app.addHook('onRequest', async (request) => {
      if (isIP(request.ip) !== 0) return;
      request.actor ??= { type: 'anonymous', id: null };
      throw protectError(
        'invalid_client_address',
        'X-Forwarded-For does not end in a valid client address; the proxy must append the address it received the request from.',
      );
    });
  },
  { name: 'rampart-client-address' },
);
