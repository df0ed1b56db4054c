import pg from 'pg';
import type { Engine, OwnerSession } from './engine.ts';
import { heldBegin } from './held-begin.ts';

/**
 * What opens each transaction: `begin`, then the timeouts as `SET LOCAL` (they last to the end of the
 * transaction), sent in the same simple-protocol message as the `begin`, so they cost no round trip. Per
 * transaction rather than as startup parameters or session settings: PgBouncer in transaction pooling
 * refuses unknown startup parameters and would hand a session setting to other clients.
 */
function beginText(source: PostgresSource): string {
  for (const ms of [source.statementTimeoutMs, source.idleInTransactionTimeoutMs]) {
    // Written into the statement's text: whole milliseconds only (the configuration checks them too).
    if (ms !== undefined && !(Number.isSafeInteger(ms) && ms >= 0)) throw new Error(`not a timeout: ${ms}`);
  }
  const parts = ['begin'];
  if (source.statementTimeoutMs) parts.push(`SET LOCAL statement_timeout = ${source.statementTimeoutMs}`);
  if (source.idleInTransactionTimeoutMs)
    parts.push(`SET LOCAL idle_in_transaction_session_timeout = ${source.idleInTransactionTimeoutMs}`);
  return parts.join('; ');
}

/**
 * An application connection as Kysely uses it, with `begin` held back and sent together with the tenant
 * setting (held-begin.ts), and the timeouts set in every transaction.
 */
function withHeldBegin(client: pg.PoolClient, opening: string) {
  const begin = heldBegin(opening);
  // The pool listens for errors only on idle clients. A checked-out one whose server session ends between
  // statements (the idle-in-transaction timeout, pg_terminate_backend, a restart) emits 'error' with no
  // query to take it: unheard, that event ended the process. Heard here, it fails the next statement and
  // the connection is thrown away at release.
  let lost: Error | undefined;
  const onError = (error: Error) => {
    lost = error;
  };
  client.on('error', onError);
  const query = async (sql: string, params?: unknown[]) => {
    if (lost) throw lost;
    const step = begin.step(sql, params ?? []);
    if (step.kind === 'held') return { command: 'BEGIN', rowCount: null, rows: [] };
    if (step.kind === 'combined') {
      const results = (await client.query(step.text)) as unknown as pg.QueryResult[];
      return results[results.length - 1] as pg.QueryResult;
    }
    if (step.kind === 'flush') await client.query(opening);
    return client.query(sql, params);
  };
  return {
    query(sql: unknown, params?: unknown[]) {
      if (typeof sql === 'string') return query(sql, params);
      // A streaming Cursor must be returned unawaited. pg runs a client's queries in call order, so a held
      // `begin` queued first still opens the transaction; Rampart does not stream (Kysely's stream()).
      if (begin.takeHeld()) void client.query(opening).catch(() => {});
      return client.query(sql as never);
    },
    release(error?: Error | boolean) {
      begin.reset();
      client.removeListener('error', onError);
      client.release(error || lost);
    },
  };
}

export interface PostgresSource {
  /** The application role's connection string. */
  url: string;
  /** The schema owner's connection string; needed only to migrate. */
  ownerUrl?: string | undefined;
  poolMax: number;
  /**
   * PostgreSQL `statement_timeout` in every transaction of the app's connections, ms (0 or unset: none).
   * A runaway statement is cancelled instead of holding its connection and locks.
   */
  statementTimeoutMs?: number;
  /**
   * PostgreSQL `idle_in_transaction_session_timeout` in every transaction, ms (0 or unset: none). A
   * transaction whose client stopped sending (a request stuck on something else while it holds a chain
   * head's row lock, which every audited write of the tenant waits for) is ended by the server with its
   * connection, and the locks go.
   */
  idleInTransactionTimeoutMs?: number;
}

export async function openPostgresEngine(source: PostgresSource): Promise<Engine> {
  const opening = beginText(source);
  const app = new pg.Pool({ connectionString: source.url, max: source.poolMax, application_name: 'rampart' });
  // An idle client losing its server connection must not crash the process.
  app.on('error', () => {});
  const probe = await app.connect();
  probe.release();
  return {
    kind: 'postgres',
    // Kysely's destroy() must not end the pool twice: the engine owns it.
    appPool: {
      connect: async () => withHeldBegin(await app.connect(), opening) as never,
      end: async () => {},
    },
    async asOwner(fn) {
      if (!source.ownerUrl) {
        throw new Error(
          'DATABASE_OWNER_URL is not set: run migrations with the schema owner (rampart migrate)',
        );
      }
      const owner = new pg.Client({ connectionString: source.ownerUrl, application_name: 'rampart-migrate' });
      await owner.connect();
      try {
        const session: OwnerSession = {
          query: async (sql, params) => (await owner.query(sql, params ?? [])).rows,
          exec: async (sql) => {
            await owner.query(sql);
          },
        };
        return await fn(session);
      } finally {
        await owner.end();
      }
    },
    stats: () => ({ total: app.totalCount, idle: app.idleCount, waiting: app.waitingCount }),
    close: () => app.end(),
  };
}
