import type { LightMyRequestResponse } from 'fastify';
import pg from 'pg';
import { expect, vi } from 'vitest';
import { databaseState } from './access-helpers.ts';
import type { TestApp } from './helpers.ts';

/** Holds a tenant's audit chain head: a request then writes its change and waits to append its event. */
export const CHAIN_HEAD_LOCK = 'SELECT 1 FROM audit_chain_heads WHERE chain = $1 FOR UPDATE';

/**
 * On PostgreSQL, a session that holds one row lock while a test sends requests, and a count of the
 * sessions waiting for a lock: how race tests make an interleaving certain instead of likely.
 */
export async function rowHolder(t: TestApp) {
  const owner = t.database.urls?.owner;
  if (!owner) throw new Error('rowHolder needs PostgreSQL (PGlite runs one transaction at a time)');
  const holder = new pg.Client({ connectionString: owner });
  const watcher = new pg.Client({ connectionString: owner });
  await holder.connect();
  await watcher.connect();
  return {
    /** Opens a transaction that takes `lockSql`'s lock and keeps it until `release`. */
    async hold(lockSql: string, params: unknown[]) {
      await holder.query('BEGIN');
      await holder.query(lockSql, params);
    },
    /** Runs a statement in a second session, outside the held transaction. */
    async run(text: string, params: unknown[]) {
      return watcher.query(text, params);
    },
    async release() {
      await holder.query('COMMIT');
    },
    /** Resolves once at least `n` sessions wait for a lock; throws after about ten seconds. */
    async waiting(n: number) {
      for (let i = 0; i < 400; i++) {
        const { rows } = await watcher.query<{ n: number }>(
          `SELECT count(*)::int AS n FROM pg_stat_activity
           WHERE datname = current_database() AND wait_event_type = 'Lock'`,
        );
        if ((rows[0]?.n ?? 0) >= n) return;
        await new Promise((resolve) => setTimeout(resolve, 25));
      }
      throw new Error(`fewer than ${n} sessions ever waited`);
    },
    async close() {
      await holder.query('ROLLBACK').catch(() => {});
      await holder.end();
      await watcher.end();
    },
  };
}

/**
 * Sends `second` so that its gate reads the settings (through `service.get`) before `first` runs (its
 * gate and write) and commits, and its write comes after: two PUTs sent together, the earlier read
 * committing later. The database as `first` left it is returned too.
 */
export async function secondGatedBeforeFirst<A extends unknown[], R>(
  t: TestApp,
  service: { get: (...args: A) => Promise<R> },
  first: () => Promise<LightMyRequestResponse>,
  second: () => Promise<LightMyRequestResponse>,
) {
  const read = service.get;
  let firstAnswer: LightMyRequestResponse | undefined;
  let afterFirst: Awaited<ReturnType<typeof databaseState>> | undefined;
  const gateRead = vi.spyOn(service, 'get').mockImplementationOnce(async (...args: A) => {
    const seen = await read(...args);
    firstAnswer = await first();
    afterFirst = await databaseState(t);
    return seen;
  });
  try {
    const secondAnswer = await second();
    expect(gateRead).toHaveBeenCalled();
    if (!firstAnswer || !afterFirst) throw new Error('the second request never reached its gate');
    return { first: firstAnswer, second: secondAnswer, afterFirst };
  } finally {
    gateRead.mockRestore();
  }
}
