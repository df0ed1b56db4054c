import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import { Counter } from 'prom-client';
import { platformError } from '../../platform/http/errors.ts';
import { routeConfig } from '../../platform/http/route-config.ts';
import { addressKey } from './address-key.ts';
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
    'ratelimit-policy': decisions.map((d) => d.policyHeader).join(', '),
    ratelimit: `"${tightest.policy}";r=${tightest.remaining};t=${tightest.resetSeconds}`,
  };
}

function tenantOf(request: FastifyRequest): string | null {
  const tenant = (request.params as Record<string, unknown> | undefined)?.tenant;
  // A slug longer than any real one is refused by the route itself; it must not mint counter keys.
  return typeof tenant === 'string' && tenant.length <= 64 ? tenant : null;
}

/**
 * Counter keys of signed-in actors, kept so that a request does not hash its actor's name again. Bounded
 * (cleared when full) and only for proven actors: a sign-in's email is caller-chosen and not kept.
 */
const actorKeys = new Map<string, string>();
const ACTOR_KEYS_MAX = 10_000;

function actorKey(name: string): string {
  let key = actorKeys.get(name);
  if (key === undefined) {
    if (actorKeys.size >= ACTOR_KEYS_MAX) actorKeys.clear();
    key = accountKey(name);
    actorKeys.set(name, key);
  }
  return key;
}

/** The account a request acts for: the signed-in actor, or for a sign-in the account it names. */
function accountOf(request: FastifyRequest): string | null {
  if (request.actor && request.actor.type !== 'anonymous' && request.actor.id) {
    return actorKey(`${request.actor.type}:${request.actor.id}`);
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

    /** Takes one point; a refusal carries the headers of every decision so far. */
    async function take(request: FastifyRequest, routeClass: RouteClass, scope: Scope, key: string) {
      const decision = await limiters.consume(routeClass, scope, key);
      if (!decision) return;
      const decisions = request.rateDecisions ?? [];
      decisions.push(decision);
      request.rateDecisions = decisions;
      if (!decision.allowed) {
        limited.inc({ class: routeClass, scope });
        onLimited?.(routeClass, scope);
        throw platformError('rate_limited', `${refusal[scope]}; retry in ${decision.resetSeconds} s.`, {
          retryAfterSeconds: decision.resetSeconds,
          headers: headersFor(decisions),
        });
      }
    }

    /**
     * The RateLimit headers are written once per hook, after its checks, instead of after each check:
     * the answer carries the same headers (those of every decision taken so far), built once or twice
     * per request instead of three times. Callback-style hooks: no extra promise per hook.
     */
    const finish = (request: FastifyRequest, reply: FastifyReply, done: (error?: Error) => void) =>
      [
        () => {
          if (request.rateDecisions) reply.headers(headersFor(request.rateDecisions));
          done();
        },
        (error: Error) => {
          if (request.rateDecisions) reply.headers(headersFor(request.rateDecisions));
          done(error);
        },
      ] as const;

    const classOf = (request: FastifyRequest): RouteClass | false =>
      routeConfig(request).rateLimit ?? (request.is404 ? 'public' : false);

    app.addHook('onRequest', (request, reply, done) => {
      const routeClass = classOf(request);
      if (!routeClass) return done();
      const tenant = tenantOf(request);
      const checks = take(request, routeClass, 'ip', addressKey(request.ip));
      const [ok, failed] = finish(request, reply, done);
      (tenant ? checks.then(() => take(request, routeClass, 'tenant', tenant)) : checks).then(ok, failed);
    });
    app.addHook('preHandler', (request, reply, done) => {
      const routeClass = classOf(request);
      if (!routeClass) return done();
      const account = accountOf(request);
      if (!account) return done();
      const [ok, failed] = finish(request, reply, done);
      take(request, routeClass, 'account', account).then(ok, failed);
    });
  },
  { name: 'rampart-rate-limit', dependencies: ['rampart-metrics'] },
);
