import cookie from '@fastify/cookie';
import type { FastifyRequest } from 'fastify';
import {
  authorizer,
  fourEyesGate,
  isKnownPermission,
  operatorAuthenticator,
  operatorNeedsStepUp,
  permissionDef,
  tenantAuthenticator,
} from '../access/index.ts';
import { denialAuditor, readCountingPlugin } from '../audit/index.ts';
import {
  identitySharedSchemas,
  needsUserStepUp,
  tenantSlugOf,
  userAuthenticator,
} from '../identity/index.ts';
import { registerMailMetrics } from '../mail/index.ts';
import { safeEqual } from '../platform/crypto/tokens.ts';
import { accessPlugin, bearerToken } from '../platform/http/access.ts';
import { errorHandlerPlugin } from '../platform/http/error-handler.ts';
import { metricsPlugin } from '../platform/http/metrics.ts';
import { openApiPlugin } from '../platform/http/openapi.ts';
import { ProblemSchema } from '../platform/http/schemas.ts';
import { createTenantPolicyService, protectPlugin, tenantPolicyPlugin } from '../protect/index.ts';
import type { App } from './fastify.ts';
import type { AppCore } from './services.ts';

const loopback = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);

/**
 * What every request passes through before its route: schemas, errors, cookies, metrics, protection,
 * the tenant's policy, authentication and authorization (with the four-eyes gate), read counting.
 */
export async function registerRequestPipeline(app: App, core: AppCore) {
  const {
    config,
    db,
    clock,
    dispatcher,
    invalidation,
    protection,
    identity,
    access,
    services,
    resolveTenant,
  } = core;
  app.addSchema(ProblemSchema);
  for (const schema of identitySharedSchemas) app.addSchema(schema);
  await app.register(openApiPlugin);
  const onDenied = denialAuditor(db, clock);
  await app.register(errorHandlerPlugin, { onDenied });
  // Parsed on first read (requestCookie in identity/http-auth.ts), not for every request.
  await app.register(cookie, { hook: false });
  // No form parser at the root: the API is JSON-only, and a form-encoded POST is a "simple" cross-site
  // request (no CORS preflight). Hosted HTML pages that take forms register @fastify/formbody inside their
  // own encapsulated plugin.
  await app.register(metricsPlugin, { poolStats: () => db.engine.stats(), engine: db.engine.kind });
  registerMailMetrics(app.metrics, dispatcher);
  await app.register(protectPlugin, { config, protection });
  const tenantPolicies = createTenantPolicyService({
    db,
    clock,
    bus: invalidation,
    onBackgroundError: (error) =>
      app.log.error({ err: error }, 'tenant policy: could not publish an invalidation'),
  });
  app.addHook('onClose', async () => tenantPolicies.close());
  await app.register(tenantPolicyPlugin, { policies: tenantPolicies, resolveTenant });
  const users = userAuthenticator(identity, resolveTenant, config.publicUrl);
  const authorize = authorizer(access, clock);
  // Acting on an approval (deciding, running) needs a second factor within the last minutes: a user's
  // when they have one enrolled (identity decides; not only when this session used it); an (elevated)
  // operator's always, as operators have no session here and always sign in with two factors.
  const needsStepUp = (request: FastifyRequest) =>
    request.actor?.type === 'operator'
      ? operatorNeedsStepUp(request, clock.now())
      : needsUserStepUp(identity.deps, request);
  app.addHook('onClose', async () => access.close());
  await app.register(accessPlugin, {
    authorize,
    permissionScope: (name) => (isKnownPermission(name) ? permissionDef(name)?.scope : undefined),
    isKnownGate: (name) => access.critical.isKnownGate(name),
    fourEyes: fourEyesGate(access, needsStepUp),
    authenticators: {
      operator: operatorAuthenticator(services.operators),
      user: users,
      tenant: tenantAuthenticator(users, services.operators, (request) =>
        resolveTenant(tenantSlugOf(request)),
      ),
      metrics: async (request) => {
        const token = bearerToken(request);
        if (config.metricsToken) {
          return token && safeEqual(token, config.metricsToken) ? { type: 'system', id: 'metrics' } : null;
        }
        return loopback.has(request.ip) ? { type: 'system', id: 'metrics' } : null;
      },
    },
  });

  await app.register(readCountingPlugin, { reads: services.reads, flushEveryMs: 60_000 });
  return { onDenied, tenantPolicies, authorize, needsStepUp };
}

export type RequestPipeline = Awaited<ReturnType<typeof registerRequestPipeline>>;
