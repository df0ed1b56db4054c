import { join } from 'node:path';
import type { FastifyServerOptions } from 'fastify';
import {
  ACCESS_TOPIC,
  type AccessService,
  type AccessTables,
  createAccessService,
  holdsStaffRole,
  identitySettingsChanges,
} from '../access/index.ts';
import {
  type AlertEngine,
  configureAuditMac,
  createAlertEngine,
  createReadCounter,
  type ReadCounter,
} from '../audit/index.ts';
import {
  type BreachedScreen,
  createIdentityService,
  createOperatorService,
  createPasswordHasher,
  type IdentityService,
  isOperatorActive,
  isUserDisabled,
  lockActiveTenantAdmins,
  lockUsers,
  type OperatorService,
  type PasswordHasher,
  toTenantRef,
} from '../identity/index.ts';
import {
  createMailDispatcher,
  createOutboxMailer,
  createSmtpMailer,
  type MailDispatcher,
  type Mailer,
} from '../mail/index.ts';
import { createInProcessBus, type InvalidationBus } from '../platform/bus/index.ts';
import type { Config } from '../platform/config/index.ts';
import type { Clock } from '../platform/context.ts';
import { createSecretBox, deriveKey, deriveKeys, resolveRootKeys } from '../platform/crypto/keys.ts';
import type { Database } from '../platform/db/index.ts';
import { createProtection, type OutboundClient, type Protection } from '../protect/index.ts';
import { createTenancyService, type TenancyService } from '../tenancy/index.ts';
import type { App } from './fastify.ts';

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

/** AppDeps with their defaults filled in (buildApp). */
export type AppSetup = Omit<AppDeps, 'clock' | 'mailer'> & { clock: Clock; mailer: Mailer };

/** SMTP when configured; otherwise the development outbox (table + .eml files in DATA_DIR/outbox). */
export function defaultMailer(config: Config, db: Database): Mailer {
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

/**
 * Every capability's service, each given what it needs of the others as callbacks (capabilities meet
 * only through each other's index.ts). What is built here and must be closed is closed with the app.
 */
export function wireServices(
  app: App,
  { config, db, clock, breached, hasher, mailer, bus, protection: givenProtection }: AppSetup,
) {
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
  // The current key, then SECRET_KEY_PREVIOUS: sealed values and recovery codes of before a rotation.
  const rootKeys = resolveRootKeys(config.secretKey, config.secretKeyPrevious, config.dataDir);
  const rootKey = rootKeys[0] as Buffer;
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
    keys: {
      totp: createSecretBox(deriveKeys(rootKeys, 'totp')),
      mac: deriveKey(rootKey, 'mac'),
      previousMacs: deriveKeys(rootKeys.slice(1), 'mac'),
    },
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
  return {
    config,
    db,
    clock,
    breached,
    mailer,
    dispatcher,
    invalidation,
    rootKey,
    rootKeys,
    protection,
    onBackgroundError,
    tenancy,
    identity,
    access,
    services,
    resolveTenant,
  };
}

/** The services and what the other steps of buildApp take from their wiring. */
export type AppCore = ReturnType<typeof wireServices>;
