import { platformError } from '../platform/http/errors.ts';
import type { App } from './fastify.ts';

/**
 * Once close() starts, in-flight requests finish but new ones on kept-alive connections are told to go
 * elsewhere, and the connection is closed after the answer so the client reconnects to another node.
 * (The same request hook gives every answer its x-request-id.)
 */
export function registerShutdownHooks(app: App): void {
  let closing = false;
  app.addHook('preClose', async () => {
    closing = true;
  });
  // Callback-style hooks: an async hook costs a promise per request for nothing here.
  app.addHook('onRequest', (request, reply, done) => {
    // Set on arrival, so every answer carries it, problems included.
    reply.header('x-request-id', request.id);
    if (!closing) return done();
    done(
      platformError('unavailable', 'This node is shutting down; retry the request.', {
        retryAfterSeconds: 1,
      }),
    );
  });
  app.addHook('onSend', (_request, reply, payload, done) => {
    // Every answer sent while closing ends its connection, including those of requests that were in
    // flight when close() began: otherwise an idle kept-alive client socket holds shutdown open.
    if (closing) reply.header('connection', 'close');
    done(null, payload);
  });
}
