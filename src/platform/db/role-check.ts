import { type Kysely, sql } from 'kysely';
import { APP_ROLE } from './engine.ts';

export interface RoleFacts {
  role: string;
  superuser: boolean;
  bypassRls: boolean;
  memberOfApp: boolean;
  ownedTables: number;
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
               AND pg_has_role(current_user, c.relowner, 'MEMBER')) AS "ownedTables"
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
