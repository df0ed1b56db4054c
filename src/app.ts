import { join } from 'node:path';
import cookie from '@fastify/cookie';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Fastify, { type FastifyInstance, type FastifyRequest, type FastifyServerOptions } from 'fastify';
import {
  ACCESS_TOPIC,
  type AccessService,
  type AccessTables,
  accessOperatorRoutes,
  accessTenantRoutes,
  authorizer,
  createAccessService,
  fourEyesGate,
  holdsStaffRole,
  identitySettingsChanges,
  isKnownPermission,
  operatorAuthenticator,
  operatorNeedsStepUp,
  permissionDef,
  SHORTEN_RETENTION,
  tenantAuthenticator,
  wireCriticalActions,
  wireElevatedGrants,
  wirePlatformActions,
} from './access/index.ts';
import {
  type AlertEngine,
  alertRoutes,
  auditChainRoutes,
  auditJobsPlugin,
  auditRetentionRoutes,
  auditRoutes,
  checkpointSigner,
  configureAuditMac,
  createAlertDelivery,
  createAlertEngine,
  createAlertService,
  createAuditService,
  createForgeryService,
  createForwarder,
  createReadCounter,
  createRetentionService,
  createSinkService,
  createSyslogTransport,
  denialAuditor,
  loadTrustedKeys,
  pruneAllChains,
  type ReadCounter,
  readCountingPlugin,
  trustedKeys,
} from './audit/index.ts';
import {
  type BreachedScreen,
  createIdentityService,
  createOperatorAdmin,
  createOperatorService,
  createOperatorSignIn,
  createPasswordHasher,
  type IdentityService,
  identityApiRoutes,
  identityOperatorRoutes,
  identitySharedSchemas,
  isOperatorActive,
  isUserDisabled,
  lockActiveTenantAdmins,
  lockUsers,
  needsUserStepUp,
  normaliseEmail,
  type OperatorService,
  operatorAdminRoutes,
  type PasswordHasher,
  tenantSlugOf,
  toTenantRef,
  userAuthenticator,
  wrapLegacyHashesJob,
} from './identity/index.ts';
import { identityPages } from './identity/pages/index.ts';
import {
  createMailDispatcher,
  createOutboxMailer,
  createSmtpMailer,
  type MailDispatcher,
  type Mailer,
  registerMailMetrics,
} from './mail/index.ts';
import { createInProcessBus, type InvalidationBus } from './platform/bus/index.ts';
import type { Config } from './platform/config/index.ts';
import { type Clock, systemClock, systemContext } from './platform/context.ts';
import { createSecretBox, deriveKey, resolveRootKey } from './platform/crypto/keys.ts';
import { safeEqual } from './platform/crypto/tokens.ts';
import type { AnyTenantTx, Database } from './platform/db/index.ts';
import { accessPlugin, bearerToken } from './platform/http/access.ts';
import { errorHandlerPlugin, frameworkErrors } from './platform/http/error-handler.ts';
import { platformError } from './platform/http/errors.ts';
import { healthRoutes } from './platform/http/health.ts';
import { metricsPlugin } from './platform/http/metrics.ts';
import { openApiPlugin, openApiRoute } from './platform/http/openapi.ts';
import { requestIdFor } from './platform/http/request-id.ts';
import { AccessLogController, lazyChildLogger } from './platform/http/request-log.ts';
import { ProblemSchema } from './platform/http/schemas.ts';
import { buildValidator } from './platform/http/validation.ts';
import { logDestination, loggerOptions } from './platform/log.ts';
import {
  createProtection,
  createTenantPolicyService,
  type OutboundClient,
  type Protection,
  protectPlugin,
  tenantPolicyPlugin,
  tenantPolicyRoutes,
  tlsOptions,
  wafRoutes,
} from './protect/index.ts';
import { createTenancyService, type TenancyService, tenancyRoutes } from './tenancy/index.ts';

export interface AppDeps {
  config: Config;
  db: Database;
  clock?: Clock;
  /** Tests pass false to keep output quiet. */
  logger?: FastifyServerOptions['logger'];
  /** Compromised-password screening; built from the configuration by the caller (see runtime.ts). */
  breached: BreachedScreen;
  /** The bounded argon2id hasher; built from the configuration when absent (tests pass a double). */
  hasher?: PasswordHasher;
  /** How mail leaves (SMTP or the development outbox); the app sends through its dispatcher. */
  mailer?: Mailer;
  /**
   * Cross-node cache invalidation (runtime.ts opens it from REDIS_URL / DATABASE_URL; the caller closes
   * it). Without one, an in-process bus: right for one node, and closed with the app.
   */
  bus?: InvalidationBus;
  /**
   * Rate limiters and the outbound guard (server.ts builds it first, so the breached-password range client
   * goes through its guard). Without one, built here from the configuration. Closed with the app.
   */
  protection?: Protection;
}

export interface Services {
  tenancy: TenancyService;
  operators: OperatorService;
  identity: IdentityService;
  /**
   * Mail after a commit goes through `dispatch` (background, retried, never part of an answer); `outbox`
   * waits for what was queued before it. See src/mail/dispatcher.ts.
   */
  mailer: MailDispatcher;
  access: AccessService;
  bus: InvalidationBus;
  /** The guarded client for every outbound HTTP request (webhooks, SIEM, feeds): see src/protect/outbound. */
  outbound: OutboundClient;
  /** The anomaly rules: the jobs run them every second; tests run them at once. */
  alerts: AlertEngine;
  /** Rate limiters, block lists and the outbound guard (src/protect). */
  protection: Protection;
  /** Reads of data per actor, written to the trail every minute for `read.mass`; tests flush at once. */
  reads: ReadCounter;
}

declare module 'fastify' {
  interface FastifyInstance {
    services: Services;
  }
}

const loopback = new Set(['127.0.0.1', '::1', '::ffff:127.0.0.1']);
/** Asked of access: does this tenant need a second approver to shorten its audit retention? */
const shortenRetention = { action: SHORTEN_RETENTION, params: {}, summary: '' };
/** Asked of access: do this tenant's audit exports need a second approver (then search is capped)? */
const exportAudit = { action: 'audit.export', params: {}, summary: '' };

/** SMTP when configured; otherwise the development outbox (table + .eml files in DATA_DIR/outbox). */
function defaultMailer(config: Config, db: Database): Mailer {
  if (config.smtpUrl) return createSmtpMailer(config.smtpUrl, config.mailFrom);
  return createOutboxMailer(
    db,
    config.mailFrom,
    config.dataDir === 'memory://' ? null : join(config.dataDir, 'outbox'),
  );
}

/** The password hasher's parameters from the configuration. */
export const argon2Options = (config: Config) => ({
  params: {
    memoryKiB: config.argon2MemoryKiB,
    iterations: config.argon2Iterations,
    parallelism: config.argon2Parallelism,
  },
});

/** Builds the whole Rampart app from one plugin per capability. Never listens: see server.ts. */
export async function buildApp({
  config,
  db,
  clock = systemClock,
  logger,
  breached,
  hasher,
  mailer = defaultMailer(config, db),
  bus,
  protection: givenProtection,
}: AppDeps): Promise<FastifyInstance> {
  const accessLog = new AccessLogController();
  const app = Fastify({
    ...tlsOptions(config),
    logger: logger ?? loggerOptions(config.logLevel, logDestination()),
    genReqId: requestIdFor,
    requestIdHeader: false,
    // One access-log line per request instead of Fastify's two (request-log.ts).
    logController: accessLog,
    childLoggerFactory: lazyChildLogger,
    bodyLimit: config.bodyLimitBytes,
    trustProxy: config.trustProxy.length > 0 ? config.trustProxy : false,
    // Requests that arrive while closing are refused by the hook below, as problem+json like any error.
    return503OnClosing: false,
    // Header floods are cut at 16 KiB by Node; slow clients are cut here.
    requestTimeout: 30_000,
    // Malformed URLs and over-long path parameters are refused before routing: answer them as problems too.
    frameworkErrors,
    schemaController: { compilersFactory: { buildValidator } },
    ajv: {
      customOptions: {
        // Unknown fields are refused (additionalProperties: false), never silently stripped.
        removeAdditional: false,
        coerceTypes: 'array',
        useDefaults: true,
        allErrors: false,
      },
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
  accessLog.attach(app.log);

  const ownBus = bus
    ? null
    : createInProcessBus((error) => app.log.error({ err: error }, 'invalidation bus'));
  const invalidation = bus ?? (ownBus as InvalidationBus);
  if (ownBus) app.addHook('onClose', () => ownBus.close());
  // Mail leaves in the background (docs/decisions/0015-mail-dispatch.md); closing waits for what is queued.
  const dispatcher = createMailDispatcher({
    transport: mailer,
    log: {
      warn: (details, message) => app.log.warn(details, message),
      error: (details, message) => app.log.error(details, message),
    },
  });
  app.addHook('onClose', () => dispatcher.close());
  const rootKey = resolveRootKey(config.secretKey, config.dataDir);
  // Every audit event appended in this process carries a MAC under a key derived from it (docs/audit.md).
  configureAuditMac(rootKey);
  const protection = givenProtection ?? createProtection({ config, db, clock });
  const onBackgroundError = (error: unknown) => app.log.error({ err: error }, 'invalidation publish failed');
  const tenancy = createTenancyService({ db, clock, bus: invalidation, onBackgroundError });
  const identity = createIdentityService({
    db,
    clock,
    hasher: hasher ?? createPasswordHasher(argon2Options(config)),
    breached,
    mailer: dispatcher,
    failedSignIns: protection.limiters.failedSignIns,
    keys: { totp: createSecretBox(deriveKey(rootKey, 'totp')), mac: deriveKey(rootKey, 'mac') },
    publicUrl: config.publicUrl,
    bus: invalidation,
    onBackgroundError,
    // Access is built below; the callback only runs after a request committed a disable or enable.
    userStatusChanged: (tenantId) => access.cache.changed(tenantId),
    // Likewise only asked by a request (enabling a user), once access exists.
    adminPowersToApprove: (tx, userId) => access.roles.adminPowersToApprove(tx, userId),
    enableChecker: (tenantId, ctx, approved) => access.roles.enableChecker(tenantId, ctx, approved),
    // And a settings change: its weakenings against the row it locked, on the tenant's list FOR SHARE.
    settingsChangeToApprove: async (tx, current, next) =>
      (await access.approvals.requiredIn(tx, identitySettingsChanges(current, next)))?.summary,
    permissionsTopic: ACCESS_TOPIC,
  });
  const access = createAccessService({
    db,
    clock,
    bus: invalidation,
    elevationMaxMinutes: config.elevationMaxMinutes,
    tenantActive: (tenantId) => tenancy.activeById(tenantId),
    userDisabled: (tx, userId, lock) => isUserDisabled<AccessTables>(tx, userId, lock),
    lockActiveTenantAdmins: (tx) => lockActiveTenantAdmins<AccessTables>(tx),
    lockUsers: (tx, userIds) => lockUsers<AccessTables>(tx, userIds),
    operatorActive: (tx, operatorId) => isOperatorActive(tx, operatorId),
    onBackgroundError: (error) => app.log.error({ err: error }, 'access: could not publish an invalidation'),
    userExists: async (tenantId, userId) => {
      try {
        await identity.accounts.get(toTenantRef({ id: tenantId, slug: '' }), userId);
        return true;
      } catch {
        return false;
      }
    },
  });
  const services: Services = {
    access,
    tenancy,
    operators: createOperatorService({
      db,
      clock,
      tokenTtlDays: config.operatorTokenTtlDays,
      publicUrl: config.publicUrl,
      bus: invalidation,
      // The token id only (never the token); the error's message and code, not its parameters.
      onStampError: (error, tokenId) =>
        app.log.warn(
          { tokenId, error: (error as Error).message, code: (error as { code?: string }).code },
          'could not record an operator token’s last use; the request goes on',
        ),
    }),
    identity,
    mailer: dispatcher,
    bus: invalidation,
    outbound: protection.outbound,
    protection,
    reads: createReadCounter({
      db,
      clock,
      onError: (error) => app.log.error({ err: error }, 'could not write read counts to the audit trail'),
    }),
    alerts: createAlertEngine({
      db,
      clock,
      // Read in the rules' tenant-scoped transaction (Access owns role assignments).
      isStaff: (tx, userId) => holdsStaffRole(tx, userId),
    }),
  };
  const resolveTenant = async (slug: string) => toTenantRef(await tenancy.requireActive(slug));
  app.decorate('services', services);
  // Filled on first use by routeConfig() (platform/http/route-config.ts); decorated so every request has it.
  app.decorateRequest('matchedRouteConfig', null);
  // The API speaks JSON only: without this, Fastify parses text/plain and the client is told its body
  // "must be object" instead of that the content type is wrong.
  app.removeContentTypeParser('text/plain');
  // Once close() starts, in-flight requests finish but new ones on kept-alive connections are told to go
  // elsewhere, and the connection is closed after the answer so the client reconnects to another node.
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
  const tenantPolicies = createTenantPolicyService({ db, clock, bus: invalidation });
  app.addHook('onClose', async () => tenantPolicies.close());
  await app.register(tenantPolicyPlugin, { policies: tenantPolicies, resolveTenant });
  const retention = createRetentionService({
    db,
    clock,
    defaultDays: config.auditRetentionDays,
    platformDays: config.auditPlatformRetentionDays,
    shorteningNeedsApproval: async (tx) =>
      (await access.approvals.requiredIn(tx, [shortenRetention])) !== undefined,
  });
  wireCriticalActions(access.critical, {
    identity,
    roles: access.roles,
    settings: access.settings,
    retention,
  });
  wireElevatedGrants(access.critical, { identity, roles: access.roles });
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
  await app.register(healthRoutes, { db });
  const auditSinkBox = createSecretBox(deriveKey(rootKey, 'audit-sinks'));
  const auditSigner = checkpointSigner(rootKey);
  async function* allTenantIds() {
    for (let after: string | null = null; ; ) {
      const page = await tenancy.list(after, 500);
      for (const t of page.items) yield t.id;
      if (!page.more) return;
      after = page.items.at(-1)?.slug ?? null;
    }
  }
  // Fast legacy password hashes (imported salted SHA-256, cheap bcrypt) wrapped in argon2id at low
  // priority, a few per tenant every LEGACY_HASH_WRAP_SECONDS (docs/identity.md, "Import").
  await app.register(wrapLegacyHashesJob, {
    identity: identity.deps,
    async *tenants() {
      for (let after: string | null = null; ; ) {
        const page = await tenancy.list(after, 500);
        for (const t of page.items) yield toTenantRef(t);
        if (!page.more) return;
        after = page.items.at(-1)?.slug ?? null;
      }
    },
    everyMs: config.legacyHashWrapSeconds * 1000,
  });
  const alertBox = createSecretBox(deriveKey(rootKey, 'audit-alerts'));
  await app.register(auditJobsPlugin, {
    db,
    clock,
    signer: auditSigner,
    checkpointEveryMs: config.auditCheckpointSeconds * 1000,
    // Through the egress guard like every outbound request (OUTBOUND_ALLOW_PRIVATE admits an internal SIEM).
    forwarder: createForwarder({
      db,
      clock,
      box: auditSinkBox,
      send: async (r) => protection.outbound.request('siem', r.url, r),
      // Syslog over TLS: a raw connection, vetted by the same egress guard (allowlist, addresses).
      syslogEnterpriseNumber: config.syslogEnterpriseNumber,
      sendSyslog: createSyslogTransport({
        guard: (host) => protection.outbound.socketGuard('siem', host),
        timeoutMs: config.outboundTimeoutMs,
      }),
      maxBacklog: config.auditSinkMaxBacklog,
    }),
    forwardEveryMs: 1000,
    tenantIds: allTenantIds,
    // Retention: each chain pruned to its retention, up to a signed checkpoint (docs/audit.md).
    pruning: {
      everyMs: config.auditPruneSeconds * 1000,
      run: () =>
        pruneAllChains(
          {
            db,
            clock,
            keys: trustedKeys([auditSigner.publicKey]),
            // After a SECRET_KEY rotation: the keys recorded before it too (docs/audit.md, "Key rotation").
            loadKeys: () => loadTrustedKeys(db, auditSigner),
            daysFor: (id) => retention.daysFor(id),
            tenantIds: allTenantIds,
          },
          systemContext('audit-retention'),
        ),
    },
    alerts: services.alerts,
    alertDelivery: createAlertDelivery({
      db,
      clock,
      box: alertBox,
      send: async (r) => protection.outbound.request('alerts', r.url, r),
      // Straight to the transport: alert delivery keeps its own durable retries and needs the error.
      sendMail: (mail) => mailer.send(mail),
      maxAgeMs: config.auditAlertDeliveryMaxHours * 3_600_000,
    }),
    alertEveryMs: 1000,
    alertSweepEveryMs: 60_000,
  });
  app.get('/metrics', { config: { access: 'metrics' }, schema: { hide: true } }, async (_request, reply) =>
    reply.type(app.metrics.contentType).send(await app.metrics.metrics()),
  );
  await app.register(tenancyRoutes, { tenancy });
  const sinks = createSinkService({ db, clock, box: auditSinkBox, maxBacklog: config.auditSinkMaxBacklog });
  // Adding a SIEM sink is a platform four-eyes action: only an approved request's execution adds one.
  const operatorAdmin = createOperatorAdmin({
    db,
    clock,
    bus: invalidation,
    onBackgroundError,
    onDisabled: (ctx, operatorId) => access.elevations.endAllOf(ctx, operatorId),
  });
  const alerts = createAlertService({
    db,
    clock,
    box: alertBox,
    normaliseEmail,
    tenantWebhookRefusal: (url) => protection.outbound.precheck(url, 'tenant'),
  });
  // Acknowledging a forged audit event is one too: only an approved request's execution stores one.
  const forgeries = createForgeryService({ db, clock, signer: auditSigner });
  wirePlatformActions(access.critical, { sinks, operators: operatorAdmin, alerts, forgeries });
  const readCap = {
    eventsPerDay: config.auditSearchEventsPerDay,
    applies: async (tx: AnyTenantTx) => (await access.approvals.requiredIn(tx, [exportAudit])) !== undefined,
  };
  await app.register(auditRoutes, { audit: createAuditService({ db, clock, readCap }), sinks });
  await app.register(auditChainRoutes, { forgeries });
  await app.register(auditRetentionRoutes, { retention });
  await app.register(alertRoutes, { alerts });
  await app.register(accessTenantRoutes, {
    access,
    holds: authorize,
    needsStepUp,
  });
  await app.register(accessOperatorRoutes, { access, resolveTenant, clock });
  await app.register(identityApiRoutes, { identity, resolveTenant });
  await app.register(tenantPolicyRoutes, { policies: tenantPolicies });
  await app.register(wafRoutes, { protection });
  await app.register(identityOperatorRoutes, {
    identity,
    resolveTenant,
    mailer: dispatcher,
    operatorSignIn: createOperatorSignIn({
      db,
      clock,
      hasher: identity.deps.hasher,
      totpBox: createSecretBox(deriveKey(rootKey, 'operator-totp')),
      publicUrl: config.publicUrl,
      breached,
    }),
  });
  await app.register(operatorAdminRoutes, {
    admin: operatorAdmin,
  });
  await app.register(identityPages, {
    identity,
    findTenant: async (slug) => {
      const tenant = await tenancy.requireActive(slug);
      return { ref: toTenantRef(tenant), name: tenant.displayName };
    },
    publicUrl: config.publicUrl,
    onDenied,
  });
  await app.register(openApiRoute);
  return app;
}
