/**
 * The app's PostgreSQL connections carry a statement timeout and an idle-in-transaction timeout
 * (DATABASE_STATEMENT_TIMEOUT_MS, DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS). Without them a transaction
 * whose request hung on something else kept its locks for good: one holding a chain head's row lock
 * blocked every audited write of its tenant. Configuration on every engine; the server's behaviour on
 * PostgreSQL.
 */
import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/platform/config/index.ts';
import type { Engine } from '../src/platform/db/index.ts';
import { toAppError } from '../src/platform/http/error-handler.ts';
import { openEngine } from '../src/runtime.ts';
import { createPostgresDatabase, engineUnderTest, testConfig } from './helpers.ts';

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
  let database: Awaited<ReturnType<typeof createPostgresDatabase>>;
  let engine: Engine;
  const connect = () =>
    engine.appPool.connect() as unknown as Promise<{
      query(sql: string): Promise<{ rows: Record<string, string>[] }>;
      release(error?: boolean): void;
    }>;

  beforeAll(async () => {
    database = await createPostgresDatabase();
    engine = await openEngine(
      testConfig({
        DATABASE_URL: database.owner,
        SECRET_KEY: randomBytes(32).toString('base64url'),
        DATABASE_STATEMENT_TIMEOUT_MS: '300',
        DATABASE_IDLE_IN_TRANSACTION_TIMEOUT_MS: '400',
      }),
    );
  });
  afterAll(async () => {
    await engine?.close();
    await database?.drop();
  });

  it('every app connection carries both settings', async () => {
    const client = await connect();
    try {
      const { rows } = await client.query(
        `SELECT current_setting('statement_timeout') AS statement,
          current_setting('idle_in_transaction_session_timeout') AS idle`,
      );
      expect(rows[0]).toEqual({ statement: '300ms', idle: '400ms' });
    } finally {
      client.release();
    }
  });

  it('a statement running past the timeout is cancelled', async () => {
    const client = await connect();
    try {
      const error = await client.query('SELECT pg_sleep(5)').then(
        () => null,
        (e: Error) => e,
      );
      expect(error?.message).toMatch(/statement timeout/);
      // Answered as a 503 with Retry-After that says what happened, not as a 500.
      const answer = toAppError(error as Error);
      expect({
        code: answer.code,
        status: answer.spec.status,
        retry: answer.extra.retryAfterSeconds,
      }).toEqual({
        code: 'unavailable',
        status: 503,
        retry: 5,
      });
      expect(answer.detail).toMatch(/took too long on this request and cancelled it, changing nothing/);
      // The connection itself is still good.
      expect((await client.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }]);
    } finally {
      client.release();
    }
  });

  it('a transaction left idle past the timeout is ended, and its row lock goes', async () => {
    const client = await connect();
    const other = await connect();
    try {
      await client.query('CREATE TABLE IF NOT EXISTS held (id int PRIMARY KEY, n int)');
      await client.query('INSERT INTO held VALUES (1, 0) ON CONFLICT DO NOTHING');
      await client.query('BEGIN');
      await client.query('UPDATE held SET n = n + 1 WHERE id = 1');
      // The holder sends nothing more; the server ends its session, and the waiting update goes through
      // (without the timeout it would wait until the statement timeout cancelled it).
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect((await other.query('UPDATE held SET n = n + 10 WHERE id = 1 RETURNING n')).rows).toEqual([
        { n: 10 },
      ]);
      await expect(client.query('SELECT 1')).rejects.toThrow();
    } finally {
      client.release(true);
      other.release();
    }
  });
});
