import { type Kysely, sql } from 'kysely';
import { APP_ROLE } from './engine.ts';

export interface RoleFacts {
  role: string;
  superuser: boolean;
  bypassRls: boolean;
  memberOfApp: boolean;
  ownedTables: number;
  /** Owns (or is a member of the owner of) the database or the `public` schema. */
  ownsDatabaseOrSchema: boolean;
  createRole: boolean;
  replication: boolean;
  /** The server-access roles it is a member of (pg_execute_server_program and the file ones). */
  serverRoles: string[];
}

/** Reads what the connected role may do, for the start-up refusal below. */
export async function readRoleFacts(db: Kysely<unknown>): Promise<RoleFacts> {
  const { rows } = await sql<RoleFacts>`
    SELECT current_user AS role,
           r.rolsuper AS superuser,
           r.rolbypassrls AS "bypassRls",
           pg_has_role(current_user, ${APP_ROLE}, 'USAGE') AS "memberOfApp",
           (SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p')
               AND pg_has_role(current_user, c.relowner, 'MEMBER')) AS "ownedTables",
           (pg_has_role(current_user, (SELECT nspowner FROM pg_namespace WHERE nspname = 'public'), 'MEMBER')
             OR pg_has_role(current_user,
               (SELECT datdba FROM pg_database WHERE datname = current_database()), 'MEMBER'))
             AS "ownsDatabaseOrSchema",
           r.rolcreaterole AS "createRole",
           r.rolreplication AS replication,
           coalesce((SELECT array_agg(s.rolname::text ORDER BY s.rolname) FROM pg_roles s
             WHERE s.rolname IN ('pg_execute_server_program', 'pg_read_server_files', 'pg_write_server_files')
               AND pg_has_role(current_user, s.oid, 'MEMBER')), '{}') AS "serverRoles"
      FROM pg_roles r WHERE r.rolname = current_user`.execute(db);
  const facts = rows[0];
  if (!facts) throw new Error('cannot read the database role');
  return facts;
}

/** Problems that make the role unfit to serve requests; empty when it is safe. */
export function roleProblems(facts: RoleFacts): string[] {
  const problems: string[] = [];
  if (facts.superuser) problems.push(`role ${facts.role} is a superuser: row-level security would not apply`);
  if (facts.bypassRls) problems.push(`role ${facts.role} has BYPASSRLS: tenant isolation would not apply`);
  if (facts.ownedTables > 0) {
    problems.push(`role ${facts.role} owns (or can act as the owner of) ${facts.ownedTables} tables`);
  }
  // Security review: a schema's or database's owner may drop any object in it, whoever owns the object,
  // and put its own in its place: a function the owner's SECURITY DEFINER functions call then runs with the
  // owner's rights (row-level security switched off). On PostgreSQL 15+ `public` belongs to the database's
  // owner, so a database created `OWNER <node login>` did this.
  if (facts.ownsDatabaseOrSchema) {
    problems.push(
      `role ${facts.role} owns (or can act as the owner of) the database or its public schema: it could ` +
        'replace objects the schema owner relies on',
    );
  }
  if (facts.createRole) {
    problems.push(`role ${facts.role} has CREATEROLE: it could grant itself other roles' rights`);
  }
  if (facts.replication) problems.push(`role ${facts.role} has REPLICATION: it could read every row`);
  if (facts.serverRoles.length > 0) {
    problems.push(
      `role ${facts.role} is a member of ${facts.serverRoles.join(', ')}: it could run programs or read ` +
        'and write files on the database server',
    );
  }
  if (!facts.memberOfApp) problems.push(`role ${facts.role} is not a member of ${APP_ROLE}`);
  return problems;
}

export class UnsafeRoleError extends Error {
  constructor(readonly problems: string[]) {
    super(
      `Refusing to serve with this database role:\n${problems.map((p) => `  - ${p}`).join('\n')}\n` +
        `Connect DATABASE_URL as a login role that is only a member of ${APP_ROLE} (see README, "PostgreSQL").`,
    );
    this.name = 'UnsafeRoleError';
  }
}
