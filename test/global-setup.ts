import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { allMigrations } from '../src/migrations.ts';
import { migrate, openPgliteEngine } from '../src/platform/db/index.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    pgliteSnapshot: string;
  }
}

/** The login role test databases use on PostgreSQL: a member of rampart_app and nothing more. */
export const TEST_APP_LOGIN = 'rampart_test_app';

/**
 * Migrates once per run. On PGlite the migrated data directory becomes a tarball every test file starts
 * from; on PostgreSQL (DATABASE_URL set) the roles are prepared and each file creates its own database.
 */
export default async function setup(project: TestProject) {
  const adminUrl = process.env.DATABASE_URL;
  if (adminUrl) {
    const client = new pg.Client({ connectionString: adminUrl });
    await client.connect();
    try {
      await client.query(`DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rampart_app') THEN
          CREATE ROLE rampart_app NOLOGIN; END IF;
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '${TEST_APP_LOGIN}') THEN
          CREATE ROLE ${TEST_APP_LOGIN} LOGIN IN ROLE rampart_app; END IF;
      END $$`);
    } finally {
      await client.end();
    }
  }
  const engine = await openPgliteEngine({ dataDir: 'memory://' });
  await migrate(engine, allMigrations);
  const path = join(tmpdir(), `rampart-test-${process.pid}.tar`);
  writeFileSync(path, Buffer.from(await (await engine.dump()).arrayBuffer()));
  await engine.close();
  project.provide('pgliteSnapshot', path);
}
