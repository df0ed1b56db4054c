import { Kysely, PostgresDialect, sql } from 'kysely';
import type { Engine } from './engine.ts';
import { type Migration, migrate, type OwnerSettings } from './migrator.ts';
import { readRoleFacts, roleProblems, UnsafeRoleError } from './role-check.ts';
import { createScopes, type Scoped } from './scope.ts';

export interface Database extends Scoped {
  readonly engine: Engine;
  /** Names of migrations this build knows but the database has not applied. */
  pendingMigrations(): Promise<string[]>;
  /** Liveness of the database connection (SELECT 1). */
  ping(): Promise<void>;
  close(): Promise<void>;
}

export interface OpenOptions {
  migrations: Migration[];
  /** Apply pending migrations first (needs owner access). */
  migrate: boolean;
  onMigrationApplied?: (name: string) => void;
  /** Written as the owner after migrating (only when `migrate`): see `migrate`. */
  ownerSettings?: OwnerSettings;
}

/**
 * Wraps an engine for the app: migrates when asked, then refuses to continue unless the application
 * role is safe (not superuser, no BYPASSRLS, owns nothing) and the schema is current.
 */
export async function openDatabase(engine: Engine, options: OpenOptions): Promise<Database> {
  if (options.migrate) {
    await migrate(engine, options.migrations, options.onMigrationApplied, options.ownerSettings);
  } else if (engine.kind === 'pglite') await engine.asOwner(async () => {}); // switch to the app role
  const db = new Kysely<unknown>({ dialect: new PostgresDialect({ pool: engine.appPool }) });
  try {
    const problems = roleProblems(await readRoleFacts(db));
    if (problems.length > 0) throw new UnsafeRoleError(problems);
    const database = build(engine, db, options.migrations);
    const pending = await database.pendingMigrations();
    if (pending.length > 0) {
      throw new Error(
        `database schema is behind this build (pending: ${pending.join(', ')}): run rampart migrate`,
      );
    }
    return database;
  } catch (error) {
    await db.destroy();
    throw error;
  }
}

function build(engine: Engine, db: Kysely<unknown>, migrations: Migration[]): Database {
  return {
    engine,
    ...createScopes(db),
    async pendingMigrations() {
      const { rows } = await sql<{ name: string }>`SELECT name FROM schema_migrations`.execute(db);
      const applied = new Set(rows.map((r) => r.name));
      return migrations.filter((m) => !applied.has(m.name)).map((m) => m.name);
    },
    async ping() {
      await sql`SELECT 1`.execute(db);
    },
    async close() {
      await db.destroy();
      await engine.close();
    },
  };
}
