// Throw-away migrated databases for benchmarks, on either engine. Mirrors test/helpers.ts and
// test/global-setup.ts without importing test code: bench runs on the compiled build.
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { allMigrations } from '../../dist/migrations.js';
import { loadConfig } from '../../dist/platform/config/index.js';
import { openDatabase, openPgliteEngine, openPostgresEngine } from '../../dist/platform/db/index.js';

// The same login role the test suites use: a member of rampart_app and nothing more.
const APP_LOGIN = 'rampart_test_app';

async function asAdmin(adminUrl, fn) {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
}

function withDatabase(url, name, user) {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  if (user) {
    parsed.username = user;
    parsed.password = '';
  }
  return parsed.toString();
}

/** A fresh PostgreSQL database (and the app login role, if missing); drop() removes the database. */
export async function createPostgresDatabase(adminUrl) {
  const name = `rampart_bench_${randomBytes(6).toString('hex')}`;
  await asAdmin(adminUrl, async (admin) => {
    await admin.query(`DO $$ BEGIN
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rampart_app') THEN
        CREATE ROLE rampart_app NOLOGIN; END IF;
      IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${APP_LOGIN}') THEN
        CREATE ROLE ${APP_LOGIN} LOGIN IN ROLE rampart_app; END IF;
    END $$`);
    await admin.query(`CREATE DATABASE ${name}`);
  });
  return {
    owner: withDatabase(adminUrl, name),
    app: withDatabase(adminUrl, name, APP_LOGIN),
    drop: () => asAdmin(adminUrl, (admin) => admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`)),
  };
}

/** A migrated Rampart database: in-memory PGlite, or a new database on the PostgreSQL at pgUrl. */
export async function openBenchDatabase(engineKind, pgUrl) {
  if (engineKind === 'pglite') {
    const engine = await openPgliteEngine({ dataDir: 'memory://' });
    const db = await openDatabase(engine, { migrations: allMigrations, migrate: true });
    return { db, close: () => db.close() };
  }
  const database = await createPostgresDatabase(pgUrl);
  try {
    // The server's default timeouts (DATABASE_STATEMENT_TIMEOUT_MS, DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS):
    // each transaction sends them with its begin, as in production, so that cost is measured too.
    const defaults = loadConfig({ DATA_DIR: 'memory://' });
    const engine = await openPostgresEngine({
      url: database.app,
      ownerUrl: database.owner,
      poolMax: 10,
      statementTimeoutMs: defaults.databaseStatementTimeoutMs,
      idleInTransactionTimeoutMs: defaults.databaseIdleInTransactionTimeoutMs,
    });
    const db = await openDatabase(engine, { migrations: allMigrations, migrate: true });
    return {
      db,
      async close() {
        await db.close();
        await database.drop();
      },
    };
  } catch (error) {
    await database.drop();
    throw error;
  }
}
