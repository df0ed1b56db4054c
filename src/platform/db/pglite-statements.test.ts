import { PGlite } from '@electric-sql/pglite';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createStatementCache } from './pglite-statements.ts';

describe('PGlite prepared statements', () => {
  let db: PGlite;
  beforeAll(async () => {
    db = new PGlite();
    await db.waitReady;
    await db.exec(`CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL, at timestamptz, raw bytea, doc jsonb);
      CREATE ROLE reader NOLOGIN; GRANT SELECT ON items TO reader;
      CREATE TABLE owned (tenant text NOT NULL, n int NOT NULL);
      ALTER TABLE owned ENABLE ROW LEVEL SECURITY; ALTER TABLE owned FORCE ROW LEVEL SECURITY;
      CREATE POLICY mine ON owned USING (tenant = current_setting('app.tenant', true));
      GRANT SELECT ON owned TO reader;
      INSERT INTO owned VALUES ('a', 1), ('b', 2);`);
  });
  afterAll(() => db.close());

  const namedStatements = async () =>
    (await db.query<{ n: number }>('SELECT count(*)::int AS n FROM pg_prepared_statements')).rows[0]?.n;

  it('answers like PGlite.query, parameters and results typed the same, and parses a text once', async () => {
    const statements = createStatementCache(db);
    const at = new Date('2026-01-02T03:04:05.678Z');
    const insert = 'INSERT INTO items (id, name, at, raw, doc) VALUES ($1, $2, $3, $4, $5) RETURNING *';
    const first = await statements.query(insert, [1, 'one', at, Buffer.from([1, 2, 255]), '{"a":[1]}']);
    const second = await statements.query(insert, [2, 'two', null, null, null]);
    expect(first.rows).toEqual([
      { id: 1, name: 'one', at, raw: new Uint8Array([1, 2, 255]), doc: { a: [1] } },
    ]);
    expect(second.affectedRows).toBe(1);
    const select = 'SELECT * FROM items WHERE id = ANY($1) ORDER BY id';
    expect((await statements.query(select, [[1, 2]])).rows).toEqual((await db.query(select, [[1, 2]])).rows);
    expect(await namedStatements()).toBe(2);
  });

  it('throws the database error (code kept), and the statement still works afterwards', async () => {
    const statements = createStatementCache(db);
    const insert = 'INSERT INTO items (id, name) VALUES ($1, $2)';
    await statements.query(insert, [10, 'ten']);
    await expect(statements.query(insert, [10, 'again'])).rejects.toMatchObject({ code: '23505' });
    await expect(statements.query('SELEC nothing', [])).rejects.toMatchObject({ code: '42601' });
    expect((await statements.query(insert, [11, 'eleven'])).affectedRows).toBe(1);
  });

  it('runs transaction control in the simple protocol around prepared statements', async () => {
    const statements = createStatementCache(db);
    const insert = 'INSERT INTO items (id, name) VALUES ($1, $2)';
    await statements.simple("begin; SELECT set_config('app.tenant', 'a', true)");
    await statements.query(insert, [20, 'rolled back']);
    expect((await statements.query("SELECT current_setting('app.tenant') AS t", [])).rows).toEqual([
      { t: 'a' },
    ]);
    await statements.simple('rollback');
    await statements.simple('begin');
    await statements.query(insert, [21, 'kept']);
    await statements.simple('commit');
    const { rows } = await db.query('SELECT id FROM items WHERE id IN (20, 21)');
    expect(rows).toEqual([{ id: 21 }]);
    await expect(statements.simple('SELEC 1')).rejects.toMatchObject({ code: '42601' });
  });

  it('keeps at most the bound of statements, closing the least recently used', async () => {
    await db.exec('DEALLOCATE ALL');
    const statements = createStatementCache(db, 3);
    const texts = [1, 2, 3, 4].map((n) => `SELECT ${n} + $1::int AS n`);
    for (const text of texts) await statements.query(text, [1]);
    expect(await namedStatements()).toBe(3);
    expect((await statements.query(texts[0] as string, [1])).rows).toEqual([{ n: 2 }]);
    expect(await namedStatements()).toBe(3);
  });

  it('applies row-level security of the role and setting at execution, not at preparation', async () => {
    const statements = createStatementCache(db);
    const read = 'SELECT n FROM owned ORDER BY n';
    await db.exec("SET ROLE reader; SET app.tenant = 'a'");
    expect((await statements.query(read, [])).rows).toEqual([{ n: 1 }]);
    await db.exec("SET app.tenant = 'b'");
    expect((await statements.query(read, [])).rows).toEqual([{ n: 2 }]);
    // Prepared as `reader`; run as the superuser (who bypasses the policy), then as `reader` again.
    await db.exec('RESET ROLE');
    expect((await statements.query(read, [])).rows).toEqual([{ n: 1 }, { n: 2 }]);
    await db.exec('SET ROLE reader');
    expect((await statements.query(read, [])).rows).toEqual([{ n: 2 }]);
    await db.exec('RESET ROLE; RESET app.tenant');
  });

  it('reset drops every statement, so a table changed by its owner is read in its new shape', async () => {
    const statements = createStatementCache(db);
    const all = 'SELECT * FROM items WHERE id = $1';
    await statements.query(all, [1]);
    await db.exec('ALTER TABLE items ADD COLUMN extra int');
    await statements.reset();
    expect(await namedStatements()).toBe(0);
    expect((await statements.query(all, [1])).rows[0]).toHaveProperty('extra', null);
  });
});
