import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { FastifyInstance } from 'fastify';
import pg from 'pg';
import { inject } from 'vitest';
import { argon2Options, buildApp } from '../src/app.ts';
import {
  type BreachedScreen,
  createOperatorService,
  createPasswordHasher,
  type PasswordHasher,
} from '../src/identity/index.ts';
import { allMigrations } from '../src/migrations.ts';
import { type Config, loadConfig } from '../src/platform/config/index.ts';
import { type Clock, systemClock } from '../src/platform/context.ts';
import {
  type Database,
  type Engine,
  openDatabase,
  openPgliteEngine,
  openPostgresEngine,
} from '../src/platform/db/index.ts';
import { openBreachedScreen } from '../src/runtime.ts';

export const engineUnderTest: 'postgres' | 'pglite' = process.env.DATABASE_URL ? 'postgres' : 'pglite';

export interface TestDatabase {
  db: Database;
  engine: Engine;
  /** Connection strings of this file's own PostgreSQL database (undefined on PGlite). */
  urls?: { app: string; owner: string };
  close(): Promise<void>;
}

function withDatabaseName(url: string, name: string, user?: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${name}`;
  if (user) {
    parsed.username = user;
    parsed.password = '';
  }
  return parsed.toString();
}

/** Creates an empty PostgreSQL database for one test file; returns its owner and app URLs. */
export async function createPostgresDatabase(): Promise<{
  app: string;
  owner: string;
  drop(): Promise<void>;
}> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) throw new Error('DATABASE_URL is not set');
  const name = `rampart_t_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: adminUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  return {
    owner: withDatabaseName(adminUrl, name),
    app: withDatabaseName(adminUrl, name, 'rampart_test_app'),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

/**
 * A migrated database of this file's own: a clone of the migrated PGlite snapshot, or a fresh
 * PostgreSQL database when DATABASE_URL is set.
 */
export async function createTestDatabase(): Promise<TestDatabase> {
  if (engineUnderTest === 'pglite') {
    const snapshot = new Blob([readFileSync(inject('pgliteSnapshot'))]);
    const engine = await openPgliteEngine({ dataDir: 'memory://', loadDataDir: snapshot });
    const db = await openDatabase(engine, { migrations: allMigrations, migrate: false });
    return { db, engine, close: () => db.close() };
  }
  const pgdb = await createPostgresDatabase();
  const engine = await openPostgresEngine({ url: pgdb.app, ownerUrl: pgdb.owner, poolMax: 10 });
  const db = await openDatabase(engine, { migrations: allMigrations, migrate: true });
  return {
    db,
    engine,
    urls: { app: pgdb.app, owner: pgdb.owner },
    async close() {
      await db.close();
      await pgdb.drop();
    },
  };
}

export function testConfig(env: Record<string, string> = {}): Config {
  // Small argon2 parameters keep the suites fast; the bench measures the real ones.
  return loadConfig({
    DATA_DIR: 'memory://',
    LOG_LEVEL: 'silent',
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_ITERATIONS: '1',
    // Each app counts its own requests: suites running in parallel must not share one address's quota in Redis.
    RATE_LIMIT_STORE: 'memory',
    // Every test request comes from one address, and a file signs many people in and enrols them (all in
    // the signin class) within a minute of real time: the per-address signin limit is out of the way
    // unless a test sets RATE_LIMITS itself. The failed sign-in budget (failures.ip) stays the default.
    RATE_LIMITS: 'signin.ip=10000/60',
    ...env,
  });
}

export interface TestApp {
  app: FastifyInstance;
  db: Database;
  database: TestDatabase;
  config: Config;
  operatorToken: string;
  /** Authorization header for the bootstrap operator. */
  asOperator: { authorization: string };
  close(): Promise<void>;
}

/** The whole app on a fresh database, with one operator; requests go through app.inject(). */
export async function buildTestApp(
  options: {
    env?: Record<string, string>;
    clock?: Clock;
    /** Wraps the app's real hasher (a double that watches or delays it). */
    hasher?: (real: PasswordHasher) => PasswordHasher;
    /** Wraps the app's real compromised-password screen. */
    breached?: (real: BreachedScreen) => BreachedScreen;
  } = {},
): Promise<TestApp> {
  const database = await createTestDatabase();
  const config = testConfig(options.env);
  const clock = options.clock ?? systemClock;
  const breached = await openBreachedScreen(config);
  const hasher = createPasswordHasher(argon2Options(config));
  const app = await buildApp({
    config,
    db: database.db,
    clock,
    logger: false,
    breached: options.breached ? options.breached(breached) : breached,
    hasher: options.hasher ? options.hasher(hasher) : hasher,
  });
  const issued = await createOperatorService({
    db: database.db,
    clock,
    tokenTtlDays: 30,
    publicUrl: config.publicUrl,
  }).bootstrap('ops@example.test');
  if (!issued) throw new Error('bootstrap operator was not created');
  return {
    app,
    db: database.db,
    database,
    config,
    operatorToken: issued.token,
    asOperator: { authorization: `Bearer ${issued.token}` },
    async close() {
      await app.close();
      await database.close();
    },
  };
}

/** Creates a tenant through the API, as an operator would. */
export async function seedTenant(
  t: TestApp,
  slug: string,
  region = 'eu-de',
): Promise<{ id: string; slug: string }> {
  const res = await t.app.inject({
    method: 'POST',
    url: '/api/v1/tenants',
    headers: t.asOperator,
    payload: { slug, displayName: `Tenant ${slug}`, region },
  });
  if (res.statusCode !== 201) throw new Error(`seedTenant ${slug}: ${res.statusCode} ${res.body}`);
  return res.json();
}

/** A fake clock for expiry and lockout tests. */
export function fakeClock(start = new Date('2026-01-01T00:00:00Z')) {
  let now = start.getTime();
  return {
    now: () => new Date(now),
    advance(ms: number) {
      now += ms;
    },
  };
}
