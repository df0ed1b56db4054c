import { sql } from 'kysely';
import type { ActionContext } from '../platform/context.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef, type Tx } from './deps.ts';
import { HasherBusyError } from './passwords/index.ts';

/**
 * Hashes that may be in a fast format (salted SHA-256, bcrypt below cost 10): the predicate of the
 * partial indexes of migration 0051, word for word, so the planner uses them. The hasher decides for
 * each row (wrapped.ts); a row that matches here but is not wrap-worthy is skipped.
 */
const mayBeFast = sql<boolean>`(password_hash LIKE 'sha256$%' OR password_hash LIKE 'sha256:%'
    OR password_hash LIKE '{SSHA256}%' OR password_hash LIKE '$2_$0_$%')`;

/** Where a run stopped, so the next one goes on past rows it skipped. */
export interface WrapCursor {
  user: string | null;
  history: { userId: string; hash: string } | null;
  usersDone: boolean;
}

export interface WrapRun {
  /** Rows replaced by their wrapped form (users and password history). */
  wrapped: number;
  /** Rows read that changed before the write (a sign-in or password change won): left as they are now. */
  changedMeanwhile: number;
  /** Rows read. */
  read: number;
  /** Where to go on from; null when the run reached the end of both tables. */
  cursor: WrapCursor | null;
  /** Whether shouldStop (or a full hasher queue) ended the run before it hashed every row it read. */
  stopped: boolean;
}

type Row = { table: 'users'; id: string; hash: string } | { table: 'history'; userId: string; hash: string };

type WrapDeps = Pick<IdentityDeps, 'db' | 'clock' | 'hasher'>;

/** Password hashes of the tenant (users and history) still in a fast legacy format. */
export async function countFastHashes(deps: Pick<IdentityDeps, 'db'>, tenant: TenantRef): Promise<number> {
  return inTenant(deps, tenant, async (tx) => {
    const { rows } = await sql<{ n: number }>`SELECT
        (SELECT count(*) FROM users WHERE ${mayBeFast})::int
      + (SELECT count(*) FROM password_history WHERE ${mayBeFast})::int AS n`.execute(tx);
    return rows[0]?.n ?? 0;
  });
}

/**
 * One run over one tenant: reads up to `limit` rows holding a fast hash, wraps each through the bounded
 * hasher (outside any transaction), then writes them in one tenant-scoped transaction with one summary
 * audit event. Each row is written only if it still holds the hash that was read (compare-and-set): a
 * password changed or upgraded at sign-in meanwhile is never overwritten.
 */
export async function wrapFastHashes(
  deps: WrapDeps,
  tenant: TenantRef,
  ctx: ActionContext,
  options: { limit: number; cursor?: WrapCursor | null; shouldStop?: () => boolean },
): Promise<WrapRun> {
  const start: WrapCursor = options.cursor ?? { user: null, history: null, usersDone: false };
  const rows = await inTenant(deps, tenant, (tx) => readRows(tx, start, options.limit));
  const done: Array<{ row: Row; wrapped: string }> = [];
  let handled = 0;
  for (const row of rows) {
    if (options.shouldStop?.()) break;
    let wrapped: string | null;
    try {
      wrapped = await deps.hasher.wrap(row.hash);
    } catch (error) {
      // Sign-ins filled the queue: they go first; the rest waits for the next run.
      if (!(error instanceof HasherBusyError)) throw error;
      break;
    }
    handled += 1;
    if (wrapped !== null) done.push({ row, wrapped });
  }
  const stopped = handled < rows.length;
  const written = done.length === 0 ? { users: 0, history: 0 } : await write(deps, tenant, ctx, done);
  return {
    wrapped: written.users + written.history,
    changedMeanwhile: done.length - written.users - written.history,
    read: rows.length,
    cursor: stopped || rows.length === options.limit ? advance(start, rows.slice(0, handled)) : null,
    stopped,
  };
}

async function readRows(tx: Tx, cursor: WrapCursor, limit: number): Promise<Row[]> {
  const rows: Row[] = [];
  if (!cursor.usersDone) {
    const users = await tx
      .selectFrom('users')
      .select(['id', 'password_hash'])
      .where(mayBeFast)
      .$if(cursor.user !== null, (q) => q.where('id', '>', cursor.user as string))
      .orderBy('id')
      .limit(limit)
      .execute();
    for (const u of users)
      if (u.password_hash) rows.push({ table: 'users', id: u.id, hash: u.password_hash });
    if (rows.length === limit) return rows;
  }
  const { history } = cursor;
  const old = await tx
    .selectFrom('password_history')
    .select(['user_id', 'password_hash'])
    .distinct()
    .where(mayBeFast)
    .$if(history !== null, (q) =>
      q.where(sql<boolean>`(user_id, password_hash) > (${history?.userId}, ${history?.hash})`),
    )
    .orderBy('user_id')
    .orderBy('password_hash')
    .limit(limit - rows.length)
    .execute();
  for (const h of old) {
    rows.push({ table: 'history', userId: h.user_id, hash: h.password_hash });
  }
  return rows;
}

/** The cursor past the rows handled (hashed, or skipped as not wrap-worthy). */
function advance(start: WrapCursor, handled: Row[]): WrapCursor {
  const next: WrapCursor = { ...start };
  for (const row of handled) {
    if (row.table === 'users') next.user = row.id;
    else {
      next.usersDone = true;
      next.history = { userId: row.userId, hash: row.hash };
    }
  }
  return next;
}

async function write(
  deps: WrapDeps,
  tenant: TenantRef,
  ctx: ActionContext,
  done: Array<{ row: Row; wrapped: string }>,
): Promise<{ users: number; history: number }> {
  return inTenant(deps, tenant, async (tx) => {
    const written = { users: 0, history: 0 };
    for (const { row, wrapped } of done) {
      // Compare-and-set: only a row still holding the hash that was wrapped.
      const result =
        row.table === 'users'
          ? await tx
              .updateTable('users')
              .set({ password_hash: wrapped })
              .where('id', '=', row.id)
              .where('password_hash', '=', row.hash)
              .executeTakeFirst()
          : await tx
              .updateTable('password_history')
              .set({ password_hash: wrapped })
              // Every old entry of the user holding this very hash: they are the same secret.
              .where('user_id', '=', row.userId)
              .where('password_hash', '=', row.hash)
              .executeTakeFirst();
      written[row.table] += Number(result.numUpdatedRows);
    }
    if (written.users + written.history > 0) {
      await audit(deps, tx, tenant, ctx, {
        action: 'identity.password.hashes_wrapped',
        outcome: 'success',
        details: { count: written.users + written.history, users: written.users, history: written.history },
      });
    }
    return written;
  });
}
