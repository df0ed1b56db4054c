/**
 * Tenant isolation is enforced by PostgreSQL row-level security, not by the application's filters.
 * Each test plays an application that forgot (or was tricked out of) its tenant filter and checks that
 * the database still refuses, on the embedded engine and on PostgreSQL.
 *
 * What differs between the engines, honestly:
 * - PostgreSQL: the app logs in as rampart_test_app, a member of rampart_app with no other rights. It
 *   cannot become the owner by any SQL: SET ROLE and SET SESSION AUTHORIZATION are refused.
 * - PGlite: there is one session and its session user is the superuser `postgres`; the engine runs the
 *   app under `SET ROLE rampart_app`. Every privilege and RLS check below applies to rampart_app and
 *   holds the same, but raw SQL that says `SET ROLE postgres` or `RESET ROLE` would succeed, because
 *   PostgreSQL checks SET ROLE against the session user. The embedded path's defence is that no code
 *   issues role SQL and every query is parameterised; the test below pins that gap so it stays visible.
 */

import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { sql } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { recordAuditEvent } from '../src/audit/index.ts';
import { allMigrations } from '../src/migrations.ts';
import { systemClock, systemContext } from '../src/platform/context.ts';
import {
  asTenantId,
  openDatabase,
  openPgliteEngine,
  openPostgresEngine,
  roleProblems,
  type TenantId,
  UnsafeRoleError,
} from '../src/platform/db/index.ts';
import { createTenancyService } from '../src/tenancy/index.ts';
import { createTestDatabase, engineUnderTest, type TestDatabase } from './helpers.ts';

let t: TestDatabase;
let tenantA: TenantId;
let tenantB: TenantId;
/** A tenant with no settings row yet: inserting one for it must still be refused from tenant A. */
let tenantC: TenantId;

const ctx = systemContext('isolation-test');

beforeAll(async () => {
  t = await createTestDatabase();
  const tenancy = createTenancyService({ db: t.db, clock: systemClock });
  const create = async (slug: string) =>
    asTenantId((await tenancy.create(ctx, { slug, displayName: slug, region: 'eu-de' })).id);
  tenantA = await create('iso-a');
  tenantB = await create('iso-b');
  tenantC = await t.db.withSystem(async (tx) => {
    const { rows } = await sql<{ id: string }>`
      INSERT INTO tenants (slug, display_name, region) VALUES ('iso-c', 'C', 'eu-de') RETURNING id`.execute(
      tx,
    );
    return asTenantId(rows[0]?.id ?? '');
  });
});
afterAll(async () => {
  await t?.close();
});

/** Runs one statement as the app role with tenant A set. */
const asTenantA = (query: string) => t.db.withTenant(tenantA, (tx) => sql.raw(query).execute(tx));
/** Runs one statement as the app role with no tenant set. */
const asSystem = (query: string) => t.db.withSystem((tx) => sql.raw(query).execute(tx));
/** What is really stored, read as the schema owner. */
const ownerRead = <R>(query: string, params: unknown[] = []) =>
  t.engine.asOwner((o) => o.query<R>(query, params));

describe('with tenant A set, tenant B is out of reach', () => {
  it('reads none of B’s rows, even when asking for them by id', async () => {
    const all = await asTenantA('SELECT tenant_id FROM tenant_settings');
    expect(all.rows).toEqual([{ tenant_id: tenantA }]);
    const targeted = await asTenantA(`SELECT * FROM tenant_settings WHERE tenant_id = '${tenantB}'`);
    expect(targeted.rows).toHaveLength(0);
  });

  it('updates and deletes 0 of B’s rows, and B’s row is unchanged', async () => {
    const update = await asTenantA(
      `UPDATE tenant_settings SET settings = '{"owned": true}' WHERE tenant_id = '${tenantB}'`,
    );
    expect(Number(update.numAffectedRows)).toBe(0);
    const del = await asTenantA(`DELETE FROM tenant_settings WHERE tenant_id = '${tenantB}'`);
    expect(Number(del.numAffectedRows)).toBe(0);
    const unfiltered = await asTenantA(`UPDATE tenant_settings SET updated_at = now()`);
    expect(Number(unfiltered.numAffectedRows)).toBe(1); // A's own row only
    const stored = await ownerRead<{ settings: unknown }>(
      'SELECT settings FROM tenant_settings WHERE tenant_id = $1',
      [tenantB],
    );
    expect(stored).toEqual([{ settings: {} }]);
  });

  it('cannot insert a row for another tenant (WITH CHECK)', async () => {
    await expect(asTenantA(`INSERT INTO tenant_settings (tenant_id) VALUES ('${tenantC}')`)).rejects.toThrow(
      /row-level security/,
    );
    expect(await ownerRead('SELECT 1 FROM tenant_settings WHERE tenant_id = $1', [tenantC])).toHaveLength(0);
  });

  it('cannot move its own row to another tenant (WITH CHECK on UPDATE)', async () => {
    await expect(asTenantA(`UPDATE tenant_settings SET tenant_id = '${tenantC}'`)).rejects.toThrow(
      /row-level security/,
    );
  });

  it('cannot write or read another tenant’s audit events', async () => {
    await t.db.withTenant(tenantB, (tx) =>
      recordAuditEvent(tx, systemClock, ctx, {
        tenantId: tenantB,
        action: 'identity.settings.updated',
        outcome: 'success',
      }),
    );
    await expect(
      t.db.withTenant(tenantA, (tx) =>
        recordAuditEvent(tx, systemClock, ctx, {
          tenantId: tenantB,
          action: 'identity.settings.updated',
          outcome: 'success',
        }),
      ),
    ).rejects.toThrow(/row-level security/);
    const seen = await asTenantA(`SELECT action FROM audit_events WHERE tenant_id = '${tenantB}'`);
    expect(seen.rows).toHaveLength(0);
  });
});

describe('with no tenant set, tenant-owned tables read as empty', () => {
  it('returns 0 tenant rows from every table that has tenant_id, while the owner sees them', async () => {
    const tables = await tenantTables();
    expect(tables).toEqual(expect.arrayContaining(['tenant_settings', 'audit_events']));
    for (const table of tables) {
      const { rows } = await asSystem(`SELECT count(*)::int AS n FROM ${table} WHERE tenant_id IS NOT NULL`);
      expect(rows, table).toEqual([{ n: 0 }]);
    }
    expect(await ownerRead('SELECT 1 FROM tenant_settings')).toHaveLength(2);
  });

  it('cannot write a tenant’s audit event without that tenant set', async () => {
    await expect(
      t.db.withSystem((tx) =>
        recordAuditEvent(tx, systemClock, ctx, {
          tenantId: tenantA,
          action: 'identity.settings.updated',
          outcome: 'success',
        }),
      ),
    ).rejects.toThrow(/row-level security/);
  });

  it('does not carry a tenant over from an earlier transaction on the same connection', async () => {
    await asTenantA('SELECT 1');
    const { rows } = await asSystem(`SELECT current_setting('rampart.tenant_id', true) AS tenant`);
    expect([null, '']).toContain((rows[0] as { tenant: string | null }).tenant);
    expect((await asSystem('SELECT 1 FROM tenant_settings')).rows).toHaveLength(0);
  });

  // Regression: withTenant threw synchronously, so a caller's .catch() or rejection handling missed it.
  it('refuses a tenant id that is not a UUID before it reaches SQL, as a rejected promise', async () => {
    await expect(t.db.withTenant('iso-a' as TenantId, async () => 1)).rejects.toThrow(/UUID/);
  });
});

describe('the catalogue: every tenant-owned table is under row-level security', () => {
  it('has RLS enabled and forced, tenant-scoped policies, and an index led by tenant_id', async () => {
    const rows = await ownerRead<{
      table: string;
      rls: boolean;
      forced: boolean;
      policies: string[];
      otherPolicies: string[];
      ledByTenant: boolean;
    }>(`
      SELECT c.relname AS table, c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
             coalesce((SELECT array_agg(coalesce(pg_get_expr(p.polqual, p.polrelid), '') || ' / ' ||
                                        coalesce(pg_get_expr(p.polwithcheck, p.polrelid), ''))
                         FROM pg_policy p WHERE p.polrelid = c.oid
                          AND (0 = ANY (p.polroles) OR 'rampart_app'::regrole = ANY (p.polroles))), '{}')
               AS policies,
             coalesce((SELECT array_agg(p.polname::text ORDER BY p.polname) FROM pg_policy p
                        WHERE p.polrelid = c.oid AND NOT (0 = ANY (p.polroles))
                          AND NOT ('rampart_app'::regrole = ANY (p.polroles))), '{}') AS "otherPolicies",
             EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indkey[0] = a.attnum) AS "ledByTenant"
        FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
       WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
       ORDER BY 1`);
    expect(rows.map((r) => r.table)).toEqual(expect.arrayContaining(['tenant_settings', 'audit_events']));
    for (const row of rows) {
      expect({ table: row.table, rls: row.rls, forced: row.forced, ledByTenant: row.ledByTenant }).toEqual({
        table: row.table,
        rls: true,
        forced: true,
        ledByTenant: true,
      });
      expect(row.policies.length, `${row.table} has no policy`).toBeGreaterThan(0);
      // Policies are permissive and OR together: a single one not bound to the current tenant opens the table.
      for (const policy of row.policies) expect(policy, row.table).toContain('rampart_current_tenant()');
      // Policies for other roles do not reach the app. The one there is lets the owner's
      // SECURITY DEFINER audit_chains() list chain names (migration 0053); any other is a decision to make.
      expect(row.otherPolicies, row.table).toEqual(
        row.table === 'audit_chain_heads' ? ['audit_chain_list'] : [],
      );
    }
  });

  it('does not let the app role own any table', async () => {
    const { rows } = await asSystem(`
      SELECT count(*)::int AS n FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE n.nspname = 'public' AND pg_has_role(current_user, c.relowner, 'MEMBER')`);
    expect(rows).toEqual([{ n: 0 }]);
  });
});

describe('the app role cannot switch isolation off', () => {
  it.each([
    'ALTER TABLE tenant_settings DISABLE ROW LEVEL SECURITY',
    'ALTER TABLE tenant_settings NO FORCE ROW LEVEL SECURITY',
    'ALTER POLICY tenant_isolation ON tenant_settings USING (true)',
    'DROP POLICY tenant_isolation ON tenant_settings',
    'CREATE POLICY open_door ON tenant_settings USING (true)',
    'ALTER TABLE tenant_settings OWNER TO rampart_app',
    'TRUNCATE tenant_settings',
    'CREATE TABLE smuggled (tenant_id uuid)',
    `CREATE OR REPLACE FUNCTION rampart_current_tenant() RETURNS uuid LANGUAGE sql AS $$ SELECT NULL::uuid $$`,
    `SELECT rampart_enable_tenant_rls('tenants')`,
    'ALTER ROLE rampart_app BYPASSRLS',
    'CREATE ROLE intruder LOGIN SUPERUSER',
  ])('refuses: %s', async (statement) => {
    await expect(asTenantA(statement)).rejects.toThrow(
      /must be owner|must be superuser|permission denied|must have|privilege/i,
    );
  });

  it('refuses to read with row security switched off instead of bypassing it', async () => {
    await expect(
      t.db.withSystem(async (tx) => {
        await sql`SET LOCAL row_security = off`.execute(tx);
        return sql`SELECT * FROM tenant_settings`.execute(tx);
      }),
    ).rejects.toThrow(/row-level security/);
  });

  it('leaves RLS, forcing and the policy in place after all those attempts', async () => {
    const rows = await ownerRead(`
      SELECT c.relrowsecurity AS rls, c.relforcerowsecurity AS forced,
             (SELECT count(*)::int FROM pg_policy p WHERE p.polrelid = c.oid) AS policies
        FROM pg_class c WHERE c.oid = 'tenant_settings'::regclass`);
    expect(rows).toEqual([{ rls: true, forced: true, policies: 1 }]);
  });

  it.runIf(engineUnderTest === 'postgres')('cannot become the owner (PostgreSQL)', async () => {
    const owner = await ownerRead<{ owner: string }>(
      `SELECT tableowner AS owner FROM pg_tables WHERE tablename = 'tenant_settings'`,
    );
    const ownerName = owner[0]?.owner ?? 'postgres';
    await expect(asTenantA(`SET ROLE ${ownerName}`)).rejects.toThrow(/permission denied/);
    await expect(asTenantA(`SET SESSION AUTHORIZATION ${ownerName}`)).rejects.toThrow(/permission denied/);
    // RESET ROLE is allowed but lands on the login role, which is just as limited.
    const { rows } = await t.db.withSystem(async (tx) => {
      await sql`RESET ROLE`.execute(tx);
      return sql<{ user: string }>`SELECT current_user AS user`.execute(tx);
    });
    expect(rows).toEqual([{ user: 'rampart_test_app' }]);
    expect((await asSystem('SELECT 1 FROM tenant_settings')).rows).toHaveLength(0);
  });

  it.runIf(engineUnderTest === 'pglite')(
    'runs as rampart_app under a superuser session (PGlite, see top)',
    async () => {
      const { rows } = await asSystem(`
      SELECT current_user AS "current", s.rolsuper AS "sessionIsSuperuser"
        FROM pg_roles s WHERE s.rolname = session_user`);
      expect(rows).toEqual([{ current: 'rampart_app', sessionIsSuperuser: true }]);
      // The gap, pinned: raw role SQL would escape. SET LOCAL keeps the probe inside a rolled-back transaction.
      const escaped = await t.db
        .withSystem(async (tx) => {
          await sql`SET LOCAL ROLE postgres`.execute(tx);
          const { rows: inner } = await sql<{
            n: number;
          }>`SELECT count(*)::int AS n FROM tenant_settings`.execute(tx);
          throw Object.assign(new Error('rollback'), { seen: inner[0]?.n });
        })
        .catch((error: { seen?: number }) => error.seen);
      expect(escaped).toBe(2);
      // ...and the app's next transaction is back under rampart_app and isolation.
      expect((await asSystem('SELECT current_user AS u')).rows).toEqual([{ u: 'rampart_app' }]);
      expect((await asSystem('SELECT 1 FROM tenant_settings')).rows).toHaveLength(0);
    },
  );
});

describe('the audit trail is append-only', () => {
  it.each([
    `UPDATE audit_events SET outcome = 'failure'`,
    'DELETE FROM audit_events',
    'TRUNCATE audit_events',
  ])('the app role is refused: %s', async (statement) => {
    await expect(asSystem(statement)).rejects.toThrow(/permission denied/);
  });

  it('even the owner is stopped by the trigger', async () => {
    await expect(ownerRead(`UPDATE audit_events SET outcome = 'failure'`)).rejects.toThrow(/append-only/);
    await expect(ownerRead('DELETE FROM audit_events')).rejects.toThrow(/append-only/);
    // Regression: TRUNCATE skipped the row trigger and emptied the trail as the owner.
    await expect(ownerRead('TRUNCATE audit_events')).rejects.toThrow(/append-only/);
  });
});

describe('start-up refuses an unsafe database role', () => {
  const safe = {
    role: 'rampart_node',
    superuser: false,
    bypassRls: false,
    memberOfApp: true,
    ownedTables: 0,
    ownsDatabaseOrSchema: false,
    createRole: false,
    replication: false,
    serverRoles: [],
  };

  it('roleProblems names each reason', () => {
    expect(roleProblems(safe)).toEqual([]);
    expect(roleProblems({ ...safe, superuser: true }).join()).toMatch(/superuser/);
    expect(roleProblems({ ...safe, bypassRls: true }).join()).toMatch(/BYPASSRLS/);
    expect(roleProblems({ ...safe, ownedTables: 3 }).join()).toMatch(/owns/);
    expect(roleProblems({ ...safe, memberOfApp: false }).join()).toMatch(/not a member of rampart_app/);
    expect(roleProblems({ ...safe, ownsDatabaseOrSchema: true }).join()).toMatch(
      /owns \(or can act as the owner of\) the database or its public schema/,
    );
    expect(roleProblems({ ...safe, createRole: true }).join()).toMatch(/CREATEROLE/);
    expect(roleProblems({ ...safe, replication: true }).join()).toMatch(/REPLICATION/);
    expect(roleProblems({ ...safe, serverRoles: ['pg_execute_server_program'] }).join()).toMatch(
      /member of pg_execute_server_program: it could run programs/,
    );
  });

  it.runIf(engineUnderTest === 'pglite')(
    'the embedded engine refuses when rampart_app has been given rights',
    async () => {
      const snapshot = new Blob([readFileSync(inject('pgliteSnapshot'))]);
      const engine = await openPgliteEngine({ dataDir: 'memory://', loadDataDir: snapshot });
      try {
        for (const [grant, revoke, reason] of [
          ['ALTER ROLE rampart_app BYPASSRLS', 'ALTER ROLE rampart_app NOBYPASSRLS', /BYPASSRLS/],
          ['ALTER ROLE rampart_app SUPERUSER', 'ALTER ROLE rampart_app NOSUPERUSER', /superuser/],
          [
            'ALTER TABLE tenant_settings OWNER TO rampart_app',
            'ALTER TABLE tenant_settings OWNER TO postgres',
            /owns/,
          ],
          // Security review: a schema's owner may replace what the owner's SECURITY DEFINER functions call.
          [
            'ALTER SCHEMA public OWNER TO rampart_app',
            'ALTER SCHEMA public OWNER TO pg_database_owner',
            /public schema/,
          ],
          ['ALTER ROLE rampart_app CREATEROLE', 'ALTER ROLE rampart_app NOCREATEROLE', /CREATEROLE/],
          ['ALTER ROLE rampart_app REPLICATION', 'ALTER ROLE rampart_app NOREPLICATION', /REPLICATION/],
          [
            'GRANT pg_execute_server_program TO rampart_app',
            'REVOKE pg_execute_server_program FROM rampart_app',
            /pg_execute_server_program/,
          ],
        ] as const) {
          await engine.asOwner((o) => o.exec(grant));
          const opened = openDatabase(engine, { migrations: allMigrations, migrate: false });
          await expect(opened).rejects.toBeInstanceOf(UnsafeRoleError);
          await expect(opened).rejects.toThrow(reason);
          await engine.asOwner((o) => o.exec(revoke));
        }
        const db = await openDatabase(engine, { migrations: allMigrations, migrate: false });
        await db.ping();
      } finally {
        await engine.close();
      }
    },
  );

  // Security review: a database created `OWNER <node login>` gives that login the public schema
  // (PostgreSQL 15+); it passed the check, then replaced a function the owner's SECURITY DEFINER
  // audit_prune_chain calls and ran its own code with the owner's rights.
  it.runIf(engineUnderTest === 'postgres')(
    'PostgreSQL refuses a login role that owns the database',
    async () => {
      const adminUrl = process.env.DATABASE_URL ?? '';
      const suffix = randomBytes(5).toString('hex');
      const role = `rampart_t_dbo_${suffix}`;
      const name = `rampart_t_dbo_${suffix}`;
      const at = (user?: string) => {
        const u = new URL(adminUrl);
        u.pathname = `/${name}`;
        if (user) {
          u.username = user;
          u.password = '';
        }
        return u.toString();
      };
      const admin = async (text: string) => {
        const c = new pg.Client({ connectionString: adminUrl });
        await c.connect();
        try {
          await c.query(text);
        } finally {
          await c.end();
        }
      };
      await admin(`CREATE ROLE ${role} LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE rampart_app`);
      await admin(`CREATE DATABASE ${name} OWNER ${role}`);
      const engine = await openPostgresEngine({ url: at(role), ownerUrl: at(), poolMax: 2 });
      try {
        const opened = openDatabase(engine, { migrations: allMigrations, migrate: true });
        await expect(opened).rejects.toBeInstanceOf(UnsafeRoleError);
        await expect(opened).rejects.toThrow(
          /owns \(or can act as the owner of\) the database or its public schema/,
        );
      } finally {
        await engine.close();
        await admin(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
        await admin(`DROP ROLE IF EXISTS ${role}`);
      }
    },
  );

  it.runIf(engineUnderTest === 'postgres')('PostgreSQL refuses the superuser as DATABASE_URL', async () => {
    const urls = t.urls;
    if (!urls) throw new Error('no PostgreSQL URLs');
    const engine = await openPostgresEngine({ url: urls.owner, poolMax: 2 });
    try {
      const opened = openDatabase(engine, { migrations: allMigrations, migrate: false });
      await expect(opened).rejects.toBeInstanceOf(UnsafeRoleError);
      await expect(opened).rejects.toThrow(/superuser/);
    } finally {
      await engine.close();
    }
  });

  it.runIf(engineUnderTest === 'postgres')('PostgreSQL refuses a BYPASSRLS login', async () => {
    const urls = t.urls;
    if (!urls) throw new Error('no PostgreSQL URLs');
    // Roles are cluster-wide; this one is only ever created here, so concurrent files do not race on it.
    await t.engine.asOwner((o) =>
      o.exec(`DO $$ BEGIN
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'rampart_test_bypass') THEN
          CREATE ROLE rampart_test_bypass LOGIN BYPASSRLS IN ROLE rampart_app; END IF; END $$`),
    );
    const url = new URL(urls.app);
    url.username = 'rampart_test_bypass';
    const engine = await openPostgresEngine({ url: url.toString(), poolMax: 2 });
    try {
      await expect(openDatabase(engine, { migrations: allMigrations, migrate: false })).rejects.toThrow(
        /BYPASSRLS/,
      );
    } finally {
      await engine.close();
    }
  });
});

describe('transactions as the engines send them (begin held back, sent with the tenant setting)', () => {
  const txid = sql<{ id: string }>`SELECT txid_current()::text AS id`;
  const tenantSetting = sql<{ t: string }>`SELECT current_setting('rampart.tenant_id', true) AS t`;

  it('a tenant transaction is one transaction, scoped from its first statement to its last', async () => {
    const seen = await t.db.withTenant(tenantA, async (tx) => ({
      first: (await txid.execute(tx)).rows[0]?.id,
      setting: (await tenantSetting.execute(tx)).rows[0]?.t,
      last: (await txid.execute(tx)).rows[0]?.id,
    }));
    expect(seen.setting).toBe(tenantA);
    expect(seen.last).toBe(seen.first);
    // SET LOCAL ended with it: the next transaction on the pool sees no tenant.
    expect((await t.db.withSystem((tx) => tenantSetting.execute(tx))).rows[0]?.t ?? '').toBe('');
  });

  it('a system transaction whose first statement writes still rolls that write back', async () => {
    await expect(
      t.db.withSystem(async (tx) => {
        const first = (await txid.execute(tx)).rows[0]?.id;
        await sql`INSERT INTO tenants (slug, display_name, region) VALUES ('iso-rolled-back', 'R', 'eu-de')`.execute(
          tx,
        );
        expect((await txid.execute(tx)).rows[0]?.id).toBe(first);
        throw new Error('undo');
      }),
    ).rejects.toThrow('undo');
    expect(await ownerRead(`SELECT id FROM tenants WHERE slug = 'iso-rolled-back'`)).toEqual([]);
  });
});

async function tenantTables(): Promise<string[]> {
  const rows = await ownerRead<{ table: string }>(`
    SELECT c.relname AS table FROM pg_class c
      JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' AND NOT a.attisdropped
     WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
       AND has_table_privilege('rampart_app', c.oid, 'SELECT')
     ORDER BY 1`);
  return rows.map((r) => r.table);
}
