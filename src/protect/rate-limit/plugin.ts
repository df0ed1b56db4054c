import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Counter } from 'prom-client';
import { platformError } from '../../platform/http/errors.ts';
import { accountKey, type Decision, type RateLimiters } from './limiters.ts';
import { deriveClass, type RouteClass, type Scope } from './policy.ts';

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The route's rate-limit class; false for none. Derived from the method and URL when absent. */
    rateLimit?: RouteClass | false;
  }
  interface FastifyRequest {
    rateDecisions: Decision[] | null;
  }
}

export interface RateLimitPluginOptions {
  limiters: RateLimiters;
  /** Told of every 429 (Protect counts them into the audit trail). */
  onLimited?: (routeClass: RouteClass, scope: Scope) => void;
}

const refusal: Record<Scope, string> = {
  ip: 'Too many requests from your address',
  account: 'Too many requests for this account',
  tenant: 'Too many requests for this organisation',
};

/**
 * RateLimit and RateLimit-Policy as in draft-ietf-httpapi-ratelimit-headers (structured fields): every
 * policy that applied, and the remaining quota of the one closest to running out.
 */
function headersFor(decisions: Decision[]): Record<string, string> {
  const tightest = decisions.reduce((a, b) => (b.remaining < a.remaining ? b : a));
  return {
    'ratelimit-policy': decisions
      .map((d) => `"${d.policy}";q=${d.limit.points};w=${d.limit.seconds}`)
      .join(', '),
    ratelimit: `"${tightest.policy}";r=${tightest.remaining};t=${tightest.resetSeconds}`,
  };
}

function tenantOf(request: FastifyRequest): string | null {
  const tenant = (request.params as Record<string, unknown> | undefined)?.tenant;
  // A slug longer than any real one is refused by the route itself; it must not mint counter keys.
  return typeof tenant === 'string' && tenant.length <= 64 ? tenant : null;
}

/** The account a request acts for: the signed-in actor, or for a sign-in the account it names. */
function accountOf(request: FastifyRequest): string | null {
  if (request.actor && request.actor.type !== 'anonymous' && request.actor.id) {
    return accountKey(`${request.actor.type}:${request.actor.id}`);
  }
  const email = (request.body as Record<string, unknown> | null | undefined)?.email;
  if (typeof email !== 'string' || email.length > 320) return null;
  return accountKey(`${tenantOf(request) ?? 'platform'}:${email.trim().toLowerCase()}`);
}

/**
 * Limits every route by its class: per client address and per tenant before anything else runs
 * (onRequest), per account once the caller is known and the body validated (preHandler).
 */
export const rateLimitPlugin = fp<RateLimitPluginOptions>(
  async (app: FastifyInstance, { limiters, onLimited }) => {
    const limited = new Counter({
      name: 'rampart_rate_limited_total',
      help: 'Requests refused with 429, by route class and scope',
      labelNames: ['class', 'scope'],
      registers: [app.metrics],
    });
    app.decorateRequest('rateDecisions', null);
    app.addHook('onRoute', (route) => {
      if (route.config?.rateLimit !== undefined) return;
      const method = Array.isArray(route.method) ? (route.method[0] ?? 'GET') : route.method;
      route.config = { ...route.config, rateLimit: deriveClass(method, route.url ?? route.path) };
    });

    async function take(
      request: FastifyRequest,
      reply: FastifyReply,
      routeClass: RouteClass,
      scope: Scope,
      key: string,
    ) {
      const decision = await limiters.consume(routeClass, scope, key);
      if (!decision) return;
      const decisions = [...(request.rateDecisions ?? []), decision];
      request.rateDecisions = decisions;
      const headers = headersFor(decisions);
      if (!decision.allowed) {
        limited.inc({ class: routeClass, scope });
        onLimited?.(routeClass, scope);
        throw platformError('rate_limited', `${refusal[scope]}; retry in ${decision.resetSeconds} s.`, {
          retryAfterSeconds: decision.resetSeconds,
          headers,
        });
      }
      reply.headers(headers);
    }

    const classOf = (request: FastifyRequest): RouteClass | false =>
      request.routeOptions.config?.rateLimit ?? (request.is404 ? 'public' : false);

    app.addHook('onRequest', async (request, reply) => {
      const routeClass = classOf(request);
      if (!routeClass) return;
      await take(request, reply, routeClass, 'ip', request.ip);
      const tenant = tenantOf(request);
      if (tenant) await take(request, reply, routeClass, 'tenant', tenant);
    });
    app.addHook('preHandler', async (request, reply) => {
      const routeClass = classOf(request);
      if (!routeClass) return;
      const account = accountOf(request);
      if (account) await take(request, reply, routeClass, 'account', account);
    });
  },
  { name: 'rampart-rate-limit', dependencies: ['rampart-metrics'] },
);
