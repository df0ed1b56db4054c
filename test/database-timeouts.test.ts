/**
 * The app's PostgreSQL connections carry a statement timeout and an idle-in-transaction timeout
 * (DATABASE_STATEMENT_TIMEOUT_MS, DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS). Without them a transaction
 * whose request hung on something else kept its locks for good: one holding a chain head's row lock
 * blocked every audited write of its tenant. Both are set in every transaction (SET LOCAL, sent with its
 * `begin`), which works behind PgBouncer. Configuration on every engine; the server's behaviour on
 * PostgreSQL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { allMigrations } from '../src/migrations.ts';
import { ConfigError, loadConfig } from '../src/platform/config/index.ts';
import { asTenantId, type Database, type Engine, openDatabase } from '../src/platform/db/index.ts';
import { toAppError } from '../src/platform/http/error-handler.ts';
import { openEngine } from '../src/runtime.ts';
import { createTestDatabase, engineUnderTest, type TestDatabase, testConfig } from './helpers.ts';

describe('configuration', () => {
  it('defaults to a 60 s statement timeout and a 30 s idle-in-transaction timeout', () => {
    const config = loadConfig({ DATA_DIR: 'memory://' });
    expect(config.databaseStatementTimeoutMs).toBe(60_000);
    expect(config.databaseIdleInTransactionTimeoutMs).toBe(30_000);
  });

  it('refuses a value that is not a whole number of milliseconds within bounds, naming the variable', () => {
    for (const [name, value] of [
      ['DATABASE_STATEMENT_TIMEOUT_MS', '-1'],
      ['DATABASE_STATEMENT_TIMEOUT_MS', '1.5'],
      ['DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS', '3600001'],
      ['DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS', 'soon'],
    ] as const) {
      const load = () => loadConfig({ DATA_DIR: 'memory://', [name]: value });
      expect(load).toThrow(ConfigError);
      expect(load).toThrow(new RegExp(name));
    }
  });
});

describe.skipIf(engineUnderTest !== 'postgres')('on PostgreSQL', () => {
  let database: TestDatabase;
  let engine: Engine;
  let db: Database;
  const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

  beforeAll(async () => {
    database = await createTestDatabase();
    const urls = database.urls;
    if (!urls) throw new Error('no PostgreSQL URLs');
    // The server's own path from the configuration (runtime.ts), with short timeouts.
    engine = await openEngine(
      testConfig({
        DATABASE_URL: urls.app,
        SECRET_KEY: randomBytes(32).toString('base64url'),
        DATABASE_STATEMENT_TIMEOUT_MS: '300',
        DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: '400',
      }),
    );
    db = await openDatabase(engine, { migrations: allMigrations, migrate: false });
  });
  afterAll(async () => {
    await db?.close();
    await database?.close();
  });

  const settings = sql<{ statement: string; idle: string }>`
    SELECT current_setting('statement_timeout') AS statement,
      current_setting('idle_in_transaction_session_timeout') AS idle`;

  it('every transaction carries both settings, tenant-scoped or not; nothing outlives it', async () => {
    const inSystem = await db.withSystem((tx) => settings.execute(tx));
    const inTenant = await db.withTenant(asTenantId(randomUUID()), (tx) => settings.execute(tx));
    for (const { rows } of [inSystem, inTenant])
      expect(rows).toEqual([{ statement: '300ms', idle: '400ms' }]);
    // SET LOCAL: the connection itself keeps the server's defaults (PgBouncer may hand it to anyone).
    const client = (await engine.appPool.connect()) as unknown as {
      query(text: string): Promise<{ rows: { statement: string }[] }>;
      release(): void;
    };
    try {
      const outside = await client.query(`SELECT current_setting('statement_timeout') AS statement`);
      expect(outside.rows[0]?.statement).not.toBe('300ms');
    } finally {
      client.release();
    }
  });

  it('a statement running past the timeout is cancelled and answered 503, not 500', async () => {
    const error = await db
      .withSystem((tx) => sql`SELECT pg_sleep(5)`.execute(tx))
      .then(
        () => null,
        (e: Error) => e,
      );
    expect(error?.message).toMatch(/statement timeout/);
    const answer = toAppError(error as Error);
    expect({ code: answer.code, status: answer.spec.status, retry: answer.extra.retryAfterSeconds }).toEqual({
      code: 'unavailable',
      status: 503,
      retry: 5,
    });
    expect(answer.detail).toMatch(/took too long on this request and cancelled it, changing nothing/);
    // The pool goes on serving.
    expect((await db.withSystem((tx) => sql<{ one: number }>`SELECT 1 AS one`.execute(tx))).rows).toEqual([
      { one: 1 },
    ]);
  });

  it('a transaction left idle past the timeout is ended and its locks go; the process lives on', async () => {
    const lock = sql`SELECT pg_advisory_xact_lock(424242)`;
    // The holder takes the lock, then waits on something else (as a hung request would) and sends nothing.
    const holder = db.withSystem(async (tx) => {
      await lock.execute(tx);
      await sleep(1_000);
      await sql`SELECT 1`.execute(tx);
    });
    const held = holder.then(
      () => 'committed',
      (e: Error) => e.message,
    );
    await sleep(100);
    // Without the timeout this waits until the holder ends (and then the statement timeout cancels it).
    await db.withSystem((tx) => lock.execute(tx));
    expect(await held).toMatch(/idle-in-transaction timeout|Connection terminated/);
    expect((await db.withSystem((tx) => sql<{ one: number }>`SELECT 1 AS one`.execute(tx))).rows).toEqual([
      { one: 1 },
    ]);
  });
});
