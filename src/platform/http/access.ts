import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type { Actor } from '../context.ts';
import { platformError } from './errors.ts';
import { routeConfig } from './route-config.ts';

/**
 * Who may call a route, declared in its route config and read by one hook. `public` must be said
 * explicitly: a route that declares nothing fails at registration.
 * - `public`: anyone; `metrics`: the metrics credential.
 * - `operator`: a platform operator's token (platform routes, no tenant data).
 * - `user`: a signed-in user of the `:tenant` in the path (sessions only).
 * - `tenant`: a signed-in user of the `:tenant`, or an operator holding an active, approved elevation
 *   in that tenant (just-in-time access; see src/access/).
 */
export type AccessRule = 'public' | 'metrics' | 'operator' | 'user' | 'tenant';

/**
 * The permission a route needs, from the catalogue (src/access/catalogue.ts), or `self`: any signed-in
 * user of the tenant acting on their own account (their profile, sessions, second factor), or any
 * operator acting on their own credentials (sign-out, their tokens).
 */
export type RoutePermission = string;

declare module 'fastify' {
  interface FastifyContextConfig {
    access?: AccessRule;
    /** Required for `operator`, `user` and `tenant` routes; refused on `public` and `metrics` ones. */
    permission?: RoutePermission;
    /**
     * A critical action this route may be (four-eyes): when the gate says the request is one, the
     * request is recorded for approval (202) instead of run. See src/access/four-eyes.ts.
     */
    fourEyes?: string;
    /** Sign-in stages a user session may be in for this route (default: only fully signed in). */
    stages?: readonly string[];
  }
  interface FastifyRequest {
    actor: Actor;
  }
}

/** Proves a caller for one kind of rule; returns null when the request carries no valid credential. */
export type Authenticator = (request: FastifyRequest) => Promise<Actor | null>;

/** Decides whether the proven caller holds the route's permission (and may attach what it found). */
export type Authorizer = (request: FastifyRequest, permission: RoutePermission) => Promise<boolean>;

/** Runs after validation on routes that declare `fourEyes`; true when it answered instead of the handler. */
export type FourEyesGate = (request: FastifyRequest, reply: FastifyReply, gate: string) => Promise<boolean>;

export interface AccessOptions {
  authenticators: Record<Exclude<AccessRule, 'public'>, Authenticator>;
  authorize: Authorizer;
  /**
   * The scope of a permission in the catalogue (undefined: not in it, which fails at registration).
   * Operator routes take platform permissions; user and tenant routes take tenant permissions.
   */
  permissionScope: (permission: string) => 'tenant' | 'platform' | undefined;
  isKnownGate?: (gate: string) => boolean;
  fourEyes?: FourEyesGate;
}

const needsPermission = new Set<AccessRule>(['operator', 'user', 'tenant']);
const rules = new Set<string>(['public', 'metrics', 'operator', 'user', 'tenant']);

/** Why a route's access declaration is not acceptable, or null when it is. */
export function routeAccessProblem(
  config: { access?: unknown; permission?: unknown; fourEyes?: unknown } | undefined,
  options: Pick<AccessOptions, 'permissionScope' | 'isKnownGate'>,
): string | null {
  const access = config?.access;
  if (typeof access !== 'string' || !rules.has(access)) return 'declares no access rule (config.access)';
  const permission = config?.permission;
  if (!needsPermission.has(access as AccessRule)) {
    return permission === undefined ? null : `is ${access} and must not declare a permission`;
  }
  if (typeof permission !== 'string') return 'declares no permission (config.permission)';
  if (permission === 'self') {
    return access === 'user' || access === 'operator'
      ? null
      : 'may use the permission "self" only with access "user" or "operator"';
  }
  const scope = options.permissionScope(permission);
  if (scope === undefined) return `declares an unknown permission "${permission}"`;
  if ((scope === 'platform') !== (access === 'operator')) {
    return `is ${access} but declares the ${scope} permission "${permission}"`;
  }
  const gate = config?.fourEyes;
  if (gate !== undefined && (typeof gate !== 'string' || !options.isKnownGate?.(gate))) {
    return `declares an unknown four-eyes gate "${String(gate)}"`;
  }
  return null;
}

export const accessPlugin = fp<AccessOptions>(
  async (app: FastifyInstance, options) => {
    const { authenticators, authorize, fourEyes } = options;
    app.decorateRequest('actor', null as never);
    app.addHook('onRoute', (route) => {
      // Fastify's own HEAD twin of a GET route inherits its config.
      const problem = routeAccessProblem(route.config, options);
      if (problem) throw new Error(`route ${route.method} ${route.url} ${problem}`);
    });
    // One frozen anonymous actor for every request (an actor is replaced, never changed).
    const anonymous: Actor = Object.freeze({ type: 'anonymous', id: null });
    // Callback-style hooks: an async hook costs a promise per request, also on routes with nothing to do.
    app.addHook('onRequest', (request, _reply, done) => {
      request.actor = anonymous;
      done();
    });
    const authenticate = async (request: FastifyRequest, rule: Exclude<AccessRule, 'public'>) => {
      const { permission } = routeConfig(request);
      const actor = await authenticators[rule](request);
      if (!actor) {
        throw platformError('unauthenticated', 'Send a valid bearer token in the Authorization header.', {
          headers: { 'www-authenticate': 'Bearer' },
        });
      }
      request.actor = actor;
      // Deny by default: a route that needs a permission runs only when the caller holds it.
      if (permission !== undefined && permission !== 'self' && !(await authorize(request, permission))) {
        throw platformError('forbidden', `This needs the permission "${permission}", which you do not hold.`);
      }
    };
    // preValidation: after the body is parsed (CSRF tokens travel in forms) but before the schema is
    // checked, so a caller without the permission learns nothing about a protected route's input rules.
    app.addHook('preValidation', (request, _reply, done) => {
      const rule = routeConfig(request).access;
      if (rule === undefined || rule === 'public') return done();
      authenticate(request, rule).then(() => done(), done);
    });
    if (fourEyes) {
      // preHandler: the body is validated, so the gate sees exactly what the handler would run with.
      app.addHook('preHandler', (request, reply, done) => {
        const gate = routeConfig(request).fourEyes;
        if (gate === undefined) return done();
        fourEyes(request, reply, gate).then((answered) => (answered ? undefined : done()), done);
      });
    }
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
