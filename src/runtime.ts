import type { BreachedScreen } from './identity/index.ts';
import { allMigrations } from './migrations.ts';
import type { Config } from './platform/config/index.ts';
import {
  type Database,
  type Engine,
  openDatabase,
  openPgliteEngine,
  openPostgresEngine,
} from './platform/db/index.ts';

export async function openEngine(config: Config): Promise<Engine> {
  if (config.databaseUrl) {
    return openPostgresEngine({
      url: config.databaseUrl,
      ownerUrl: config.databaseOwnerUrl,
      poolMax: config.databasePoolMax,
    });
  }
  return openPgliteEngine({ dataDir: config.dataDir });
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
      ...(onMigrationApplied ? { onMigrationApplied } : {}),
    });
  } catch (error) {
    await engine.close().catch(() => {});
    throw error;
  }
}

/** Compromised-password screening from the configuration (common list, offline filter, online range API). */
export async function openBreachedScreen(_config: Config): Promise<BreachedScreen> {
  // Wired to src/identity/breached once it lands (common list + offline filter + range client).
  return { check: async () => ({ breached: false, source: null }) };
}
