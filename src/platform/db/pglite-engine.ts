import { PGlite } from '@electric-sql/pglite';
import type { PostgresPoolClient, PostgresQueryResult } from 'kysely';
import { APP_ROLE, type Engine, type OwnerSession } from './engine.ts';
import { heldBegin } from './held-begin.ts';
import { createStatementCache } from './pglite-statements.ts';

const transactionControl = new Set(['begin', 'commit', 'rollback']);

/**
 * PGlite is one single-user PostgreSQL backend in this process. Every unit of work (a transaction, or a
 * lone query) holds it exclusively, so a queue stands in for a connection pool.
 */
class Exclusive {
  #tail: Promise<void> = Promise.resolve();
  #waiting = 0;
  #busy = false;

  get waiting(): number {
    return this.#waiting;
  }
  get busy(): boolean {
    return this.#busy;
  }

  acquire(): Promise<() => void> {
    this.#waiting += 1;
    let release!: () => void;
    const next = new Promise<void>((resolve) => {
      release = resolve;
    });
    const granted = this.#tail.then(() => {
      this.#waiting -= 1;
      this.#busy = true;
      return () => {
        this.#busy = false;
        release();
      };
    });
    this.#tail = this.#tail.then(() => next);
    return granted;
  }
}

const commandOf = (sql: string): PostgresQueryResult<unknown>['command'] =>
  (/^\s*(\w+)/.exec(sql)?.[1]?.toUpperCase() ?? 'SELECT') as PostgresQueryResult<unknown>['command'];

// Keep the embedded engine small: the defaults size shared buffers for a dedicated server.
const embeddedConf = ['shared_buffers = 16MB', 'wal_buffers = 512kB', 'max_connections = 10'].join('\n');

export interface PgliteSource {
  /** A directory, or `memory://` for a throw-away in-memory database. */
  dataDir: string;
  /** A data-directory tarball (PGlite dumpDataDir) to start from: tests clone a migrated database this way. */
  loadDataDir?: Blob;
}

export interface PgliteEngine extends Engine {
  /** The whole data directory as a tarball (tests start many databases from one migrated snapshot). */
  dump(): Promise<Blob>;
}

export async function openPgliteEngine(source: PgliteSource): Promise<PgliteEngine> {
  const options = {
    postgresqlconf: embeddedConf,
    ...(source.loadDataDir ? { loadDataDir: source.loadDataDir } : {}),
  };
  const db =
    source.dataDir === 'memory://'
      ? new PGlite(options)
      : new PGlite({ ...options, dataDir: source.dataDir });
  await db.waitReady;
  const lock = new Exclusive();
  const statements = createStatementCache(db);
  let appRoleActive = false;

  const client = (release: () => void): PostgresPoolClient => {
    // Transaction control goes as simple queries, `begin` held back and sent with the tenant setting
    // (held-begin.ts). Other statements run as prepared statements (pglite-statements.ts): parsed and
    // planned once per text.
    const begin = heldBegin();
    const done = (command: string) => ({ command, rowCount: 0, rows: [] });
    return {
      async query(sql: string, params: ReadonlyArray<unknown>) {
        const step = begin.step(sql, params);
        if (step.kind === 'held') return done('BEGIN');
        if (step.kind === 'combined') {
          await statements.simple(step.text);
          return { command: 'SELECT', rowCount: 1, rows: [{ set_config: step.tenantId }] };
        }
        if (step.kind === 'flush') await statements.simple('begin');
        if (params.length === 0 && transactionControl.has(sql)) {
          await statements.simple(sql);
          return done(sql.toUpperCase());
        }
        const result = await statements.query(sql, params);
        return {
          command: commandOf(sql),
          rowCount: result.affectedRows ?? result.rows.length,
          rows: result.rows,
        };
      },
      release() {
        begin.reset();
        release();
      },
    } as PostgresPoolClient;
  };

  return {
    kind: 'pglite',
    appPool: {
      async connect() {
        const release = await lock.acquire();
        if (!appRoleActive) {
          release();
          throw new Error('the embedded database is not switched to the application role yet');
        }
        return client(release);
      },
      async end() {},
    },
    async asOwner(fn) {
      const release = await lock.acquire();
      try {
        // PGlite's session user is a superuser; the app runs under SET ROLE (see docs/decisions/0002).
        await db.exec('RESET ROLE');
        const owner: OwnerSession = {
          query: async (sql, params) => (await db.query(sql, params ?? [])).rows as never,
          exec: async (sql) => {
            await db.exec(sql);
          },
        };
        return await fn(owner);
      } finally {
        // The owner may have changed tables the app's prepared statements use. The cache forgets them
        // before DEALLOCATE runs, so if that fails they are only left unused, never run again.
        await statements.reset().catch(() => undefined);
        await db.exec(`SET ROLE ${APP_ROLE}`).then(
          () => {
            appRoleActive = true;
          },
          () => {
            appRoleActive = false;
          },
        );
        release();
      }
    },
    async dump() {
      const release = await lock.acquire();
      try {
        return await db.dumpDataDir('none');
      } finally {
        release();
      }
    },
    stats: () => ({ total: 1, idle: lock.busy ? 0 : 1, waiting: lock.waiting }),
    async close() {
      const release = await lock.acquire();
      try {
        await db.close();
      } finally {
        release();
      }
    },
  };
}
