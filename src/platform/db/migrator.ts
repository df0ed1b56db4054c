import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { Engine, OwnerSession } from './engine.ts';

export interface Migration {
  /** `NNNN_name`: the number orders migrations across every capability. */
  name: string;
  sql: string;
  checksum: string;
}

const fileName = /^(\d{4})_[a-z0-9_]+\.sql$/;

/** Reads a capability's `migrations/` folder (next to the module that passes its URL). */
export function readMigrations(folder: URL): Migration[] {
  const dir = fileURLToPath(folder);
  return readdirSync(dir)
    .filter((file) => file.endsWith('.sql'))
    .map((file) => {
      if (!fileName.test(file)) throw new Error(`migration ${dir}/${file}: name it NNNN_snake_case.sql`);
      const sql = readFileSync(`${dir}/${file}`, 'utf8');
      return { name: file.slice(0, -4), sql, checksum: createHash('sha256').update(sql).digest('hex') };
    });
}

/** Orders migrations from all capabilities and refuses two with one number. */
export function orderMigrations(all: Migration[]): Migration[] {
  const sorted = [...all].sort((a, b) => a.name.localeCompare(b.name));
  for (let i = 1; i < sorted.length; i++) {
    const prev = sorted[i - 1];
    const cur = sorted[i];
    if (prev && cur && prev.name.slice(0, 4) === cur.name.slice(0, 4)) {
      throw new Error(`migrations ${prev.name} and ${cur.name} share a number`);
    }
  }
  return sorted;
}

// Any constant works; it only has to be the same on every node.
const MIGRATION_LOCK = 727_261_001;

export interface MigrationReport {
  applied: string[];
  alreadyApplied: number;
}

/**
 * Runs as the schema owner after every migration run (pending migrations or none), in its own
 * transaction under the migration lock: writes what the database must know from the configuration and
 * the app role must not change (the audit retention defaults, migration 0082).
 */
export type OwnerSettings = (owner: OwnerSession) => Promise<void>;

/**
 * Applies pending migrations as the schema owner, one transaction each, holding a session-level
 * advisory lock so nodes starting together take turns instead of racing; then writes `settings`.
 * Forward-only: an applied migration whose file changed is an error, never re-run.
 */
export async function migrate(
  engine: Engine,
  migrations: Migration[],
  onApplied: (name: string) => void = () => {},
  settings?: OwnerSettings,
): Promise<MigrationReport> {
  return engine.asOwner(async (owner) => {
    await owner.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    try {
      await owner.exec(`CREATE TABLE IF NOT EXISTS schema_migrations (
        name text PRIMARY KEY, checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
      const applied = await appliedChecksums(owner);
      for (const migration of migrations) {
        const known = applied.get(migration.name);
        if (known !== undefined && known !== migration.checksum) {
          throw new Error(
            `migration ${migration.name} was changed after it was applied; add a new migration instead`,
          );
        }
      }
      const pending = migrations.filter((m) => !applied.has(m.name));
      for (const migration of pending) {
        await applyOne(owner, migration);
        onApplied(migration.name);
      }
      if (settings) await inTransaction(owner, 'owner settings', () => settings(owner));
      return { applied: pending.map((m) => m.name), alreadyApplied: applied.size };
    } finally {
      await owner.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]);
    }
  });
}

async function appliedChecksums(owner: OwnerSession): Promise<Map<string, string>> {
  const rows = await owner.query<{ name: string; checksum: string }>(
    'SELECT name, checksum FROM schema_migrations',
  );
  return new Map(rows.map((r) => [r.name, r.checksum]));
}

async function inTransaction(owner: OwnerSession, what: string, fn: () => Promise<void>): Promise<void> {
  await owner.exec('BEGIN');
  try {
    await fn();
    await owner.exec('COMMIT');
  } catch (error) {
    await owner.exec('ROLLBACK');
    throw new Error(`${what} failed: ${(error as Error).message}`, { cause: error });
  }
}

function applyOne(owner: OwnerSession, migration: Migration): Promise<void> {
  return inTransaction(owner, `migration ${migration.name}`, async () => {
    await owner.exec(migration.sql);
    await owner.query('INSERT INTO schema_migrations (name, checksum) VALUES ($1, $2)', [
      migration.name,
      migration.checksum,
    ]);
  });
}
