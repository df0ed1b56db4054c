/**
 * A deadlock PostgreSQL broke by rolling one transaction back is the server's moment, not the client's
 * input and not a failure: it is answered 503 with Retry-After (nothing changed; send it again).
 */
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toAppError } from '../src/platform/http/error-handler.ts';
import { engineUnderTest } from './helpers.ts';

describe.skipIf(engineUnderTest !== 'postgres')(
  'a transaction rolled back by a deadlock (PostgreSQL)',
  () => {
    const url = process.env.DATABASE_URL ?? '';
    const table = `deadlock_probe_${process.pid}`;
    const a = new pg.Client({ connectionString: url });
    const b = new pg.Client({ connectionString: url });
    beforeAll(async () => {
      await a.connect();
      await b.connect();
      await a.query(`CREATE TABLE ${table} (id int PRIMARY KEY, n int)`);
      await a.query(`INSERT INTO ${table} VALUES (1, 0), (2, 0)`);
    });
    afterAll(async () => {
      await a.query(`DROP TABLE IF EXISTS ${table}`).catch(() => {});
      await a.end();
      await b.end();
    });

    it('is answered 503 unavailable with a retry hint, not 500', async () => {
      await a.query('BEGIN');
      await b.query('BEGIN');
      await a.query(`UPDATE ${table} SET n = 1 WHERE id = 1`);
      await b.query(`UPDATE ${table} SET n = 1 WHERE id = 2`);
      // Each now waits for the row the other holds: PostgreSQL rolls one back (40P01).
      const outcomes = await Promise.allSettled([
        a.query(`UPDATE ${table} SET n = 2 WHERE id = 2`),
        b.query(`UPDATE ${table} SET n = 2 WHERE id = 1`),
      ]);
      await a.query('ROLLBACK');
      await b.query('ROLLBACK');
      const failed = outcomes.filter((o): o is PromiseRejectedResult => o.status === 'rejected');
      expect(failed).toHaveLength(1);
      const error = failed[0]?.reason as Error & { code?: string };
      expect(error.code).toBe('40P01');
      const problem = toAppError(error);
      expect(problem.spec.status).toBe(503);
      expect(problem.code).toBe('unavailable');
      expect(problem.extra.retryAfterSeconds).toBe(1);
      expect(problem.detail).toMatch(/send the request again/);
      // Other database errors stay the server's failure.
      const other = await a.query('SELECT * FROM no_such_table').then(
        () => null,
        (e: Error) => e,
      );
      expect(toAppError(other as Error).spec.status).toBe(500);
    });
  },
);
