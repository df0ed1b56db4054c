import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Actor } from '../context.ts';
import { platformError } from './errors.ts';

/**
 * What a route requires, declared in its route config and read by one hook. `public` must be said
 * explicitly: a route that declares nothing fails at registration.
 */
export type AccessRule = 'public' | 'operator' | 'metrics' | 'user' | 'tenant-admin';

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: AccessRule;
    /** Sign-in stages a user session may be in for this route (default: only fully signed in). */
    stages?: readonly string[];
  }
  interface FastifyRequest {
    actor: Actor;
  }
}

/** Proves a caller for one kind of rule; returns null when the request carries no valid credential. */
export type Authenticator = (request: FastifyRequest) => Promise<Actor | null>;

export interface AccessOptions {
  authenticators: Record<Exclude<AccessRule, 'public'>, Authenticator>;
}

export const accessPlugin = fp<AccessOptions>(
  async (app: FastifyInstance, { authenticators }) => {
    app.decorateRequest('actor', null as never);
    app.addHook('onRoute', (route) => {
      // Fastify's own HEAD twin of a GET route inherits its config.
      if (!route.config?.access) {
        throw new Error(`route ${route.method} ${route.url} declares no access rule (config.access)`);
      }
    });
    app.addHook('onRequest', async (request) => {
      request.actor = { type: 'anonymous', id: null };
    });
    // preValidation: after the body is parsed (CSRF tokens travel in forms) but before the schema is
    // checked, so an anonymous caller learns nothing about a protected route's input rules.
    app.addHook('preValidation', async (request) => {
      const rule = request.routeOptions.config.access;
      if (rule === undefined || rule === 'public') return;
      const actor = await authenticators[rule](request);
      if (!actor) {
        throw platformError('unauthenticated', 'Send a valid bearer token in the Authorization header.', {
          headers: { 'www-authenticate': 'Bearer' },
        });
      }
      request.actor = actor;
    });
  },
  { name: 'rampart-access' },
);

/** The bearer credential of a request, if it has exactly one well-formed one. */
export function bearerToken(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return null;
  const match = /^Bearer ([A-Za-z0-9._~+/-]{16,512}=*)$/.exec(header);
  return match?.[1] ?? null;
}
