import { retentionDefaultsWriter } from './audit/index.ts';
import {
  createBreachedPasswordChecker,
  createPwnedRangeClient,
  loadBreachedFilter,
} from './identity/breached/index.ts';
import type { BreachedScreen } from './identity/index.ts';
import { allMigrations } from './migrations.ts';
import { type InvalidationBus, openInvalidationBus } from './platform/bus/index.ts';
import type { Config } from './platform/config/index.ts';
import { ensurePrivateDataDir } from './platform/data-dir.ts';
import {
  type Database,
  type Engine,
  openDatabase,
  openPgliteEngine,
  openPostgresEngine,
} from './platform/db/index.ts';
import { createOutboundClient, type OutboundClient, outboundPolicyFrom } from './protect/index.ts';

export async function openEngine(config: Config): Promise<Engine> {
  if (config.databaseUrl) {
    return openPostgresEngine({
      url: config.databaseUrl,
      ownerUrl: config.databaseOwnerUrl,
      poolMax: config.databasePoolMax,
      statementTimeoutMs: config.databaseStatementTimeoutMs,
      idleInTransactionTimeoutMs: config.databaseIdleInTransactionTimeoutMs,
    });
  }
  ensurePrivateDataDir(config.dataDir);
  return openPgliteEngine({ dataDir: config.dataDir });
}

/**
 * What the schema owner writes from the configuration after migrating (the database enforces it; the app
 * role cannot change it): the audit retention defaults (migration 0082).
 */
export function ownerSettingsFrom(config: Config) {
  return retentionDefaultsWriter({
    tenantDays: config.auditRetentionDays,
    platformDays: config.auditPlatformRetentionDays,
  });
}

/**
 * Opens the configured database. The embedded engine always migrates (it is its own owner); on
 * PostgreSQL, migrations run at start only when DATABASE_OWNER_URL is given, else `rampart migrate` does it.
 */
export async function openConfiguredDatabase(
  config: Config,
  onMigrationApplied?: (name: string) => void,
): Promise<Database> {
  const engine = await openEngine(config);
  try {
    return await openDatabase(engine, {
      migrations: allMigrations,
      migrate: !config.databaseUrl || Boolean(config.databaseOwnerUrl),
      ownerSettings: ownerSettingsFrom(config),
      ...(onMigrationApplied ? { onMigrationApplied } : {}),
    });
  } catch (error) {
    await engine.close().catch(() => {});
    throw error;
  }
}

/**
 * Compromised-password screening from the configuration: the built-in common list always, the offline
 * Pwned Passwords filter when BREACHED_FILTER_FILE is set (loaded once, here, at start), and the
 * online range API when BREACHED_ONLINE is not `off`.
 */
export async function openBreachedScreen(config: Config, outbound?: OutboundClient): Promise<BreachedScreen> {
  const filter = config.breachedFilterFile ? loadBreachedFilter(config.breachedFilterFile) : null;
  // Through the Protect capability's outbound guard (egress allowlist, no private addresses, size and time
  // caps). The server passes its audited guard; a caller without one gets the same policy, unaudited.
  const guard =
    config.breachedOnline === 'off' ? null : (outbound ?? createOutboundClient(outboundPolicyFrom(config)));
  const rangeClient =
    guard === null
      ? null
      : createPwnedRangeClient({
          fetch: guard.fetchFor('breached-range'),
          baseUrl: config.breachedRangeUrl,
          failMode: config.breachedOnline === 'fail-open' ? 'open' : 'closed',
        });
  return createBreachedPasswordChecker({ filter, rangeClient, commonList: true });
}

/**
 * The cross-node invalidation bus: Redis pub/sub when REDIS_URL is set, else PostgreSQL LISTEN/NOTIFY
 * when DATABASE_URL is set, else in-process (the embedded database makes this process the only node).
 */
export function openConfiguredBus(
  config: Config,
  onError?: (error: unknown) => void,
): Promise<InvalidationBus> {
  return openInvalidationBus({
    redisUrl: config.redisUrl,
    databaseUrl: config.databaseUrl,
    ...(onError ? { onError } : {}),
  });
}
