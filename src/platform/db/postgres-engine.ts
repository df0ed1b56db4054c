import pg from 'pg';
import type { Engine, OwnerSession } from './engine.ts';

export interface PostgresSource {
  /** The application role's connection string. */
  url: string;
  /** The schema owner's connection string; needed only to migrate. */
  ownerUrl?: string | undefined;
  poolMax: number;
}

export async function openPostgresEngine(source: PostgresSource): Promise<Engine> {
  const app = new pg.Pool({ connectionString: source.url, max: source.poolMax, application_name: 'rampart' });
  // An idle client losing its server connection must not crash the process.
  app.on('error', () => {});
  const probe = await app.connect();
  probe.release();
  return {
    kind: 'postgres',
    // Kysely's destroy() must not end the pool twice: the engine owns it.
    appPool: { connect: () => app.connect() as never, end: async () => {} },
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
