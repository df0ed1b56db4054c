import type { Clock } from '../platform/context.ts';
import { elevationPermissions, rolePermissions, type UserDisabled } from './cache.ts';
import { isBuiltinRole } from './catalogue.ts';
import type { Holder } from './holdings.ts';
import type { Tx } from './tables.ts';

/*
 * What someone holds, read in the caller's transaction with every row that gives it locked FOR SHARE
 * until that transaction commits (security review: approvals:decide and elevations:decide were checked
 * through the cache, outside the transaction that then acted on them, so a role removed in between did
 * not stop the action). Whatever could take a permission away writes one of these rows and so waits for
 * the caller, or the caller waits for it and then reads its result (READ COMMITTED re-reads a locked row
 * once its writer commits):
 * - a user: their `users` row (identity's disable), their assignments (a role removed, a role deleted),
 *   the custom roles among them (a role narrowed);
 * - an operator: their active elevations in the tenant (revoked) and the custom roles they name.
 * Locks are taken in the order identity's disable and lockActiveTenantAdmins take theirs (the user row,
 * then Access's rows), so a removal of tenant-admin and this check cannot deadlock.
 * Not covered: an elevation reaching its expiry (the clock) and a tenant suspended meanwhile (tenancy's
 * row; its routes refuse a suspended tenant's requests from then on).
 */

type LockedRole = { key: string; permissions: string[]; created_at: Date };

/** The custom roles among these keys, locked FOR SHARE (ordered by key: every locker takes the same order). */
async function lockRoles(tx: Tx, keys: readonly string[]): Promise<Map<string, LockedRole>> {
  const custom = [...new Set(keys.filter((k) => !isBuiltinRole(k)))].sort();
  if (custom.length === 0) return new Map();
  const rows = await tx
    .selectFrom('access_roles')
    .select(['key', 'permissions', 'created_at'])
    .where('key', 'in', custom)
    .orderBy('key')
    .forShare()
    .execute();
  return new Map(rows.map((r) => [r.key, r]));
}

async function userHoldings(tx: Tx, userId: string, userDisabled: UserDisabled): Promise<Set<string>> {
  // A disabled user keeps their assignments but holds nothing (as the cache answers).
  if (await userDisabled(tx, userId, true)) return new Set();
  const assigned = await tx
    .selectFrom('access_assignments')
    .select('role_key')
    .where('user_id', '=', userId)
    .orderBy('role_key')
    .forShare()
    .execute();
  const roles = await lockRoles(
    tx,
    assigned.map((a) => a.role_key),
  );
  return new Set(
    assigned.flatMap((a) => rolePermissions(a.role_key, roles.get(a.role_key)?.permissions ?? null)),
  );
}

async function operatorHoldings(
  tx: Tx,
  operatorId: string,
  now: Date,
  operatorActive: (tx: Tx, operatorId: string) => Promise<boolean>,
): Promise<Set<string>> {
  // A disabled operator holds nothing, whatever elevation is still on record (the operator row first,
  // FOR SHARE: a disable waits for this transaction, or is seen by it).
  if (!(await operatorActive(tx, operatorId))) return new Set();
  const elevations = await tx
    .selectFrom('access_elevations')
    .select(['role_key', 'permissions', 'starts_at'])
    .where('operator_id', '=', operatorId)
    .where('status', '=', 'active')
    .where('expires_at', '>', now)
    .orderBy('id')
    .forShare()
    .execute();
  const roles = await lockRoles(
    tx,
    elevations.map((e) => e.role_key),
  );
  return new Set(
    elevations.flatMap((e) => {
      const role = roles.get(e.role_key);
      return [
        ...elevationPermissions({
          role_key: e.role_key,
          granted: e.permissions,
          permissions: role?.permissions ?? null,
          role_created_at: role?.created_at ?? null,
          starts_at: e.starts_at,
        }),
      ];
    }),
  );
}

/** The tenant permissions a person holds now, read and locked in the caller's transaction (see above). */
export function createLockedHoldings(
  clock: Clock,
  userDisabled: UserDisabled,
  operatorActive: (tx: Tx, operatorId: string) => Promise<boolean>,
) {
  return async (tx: Tx, who: Holder): Promise<ReadonlySet<string>> => {
    if (who.id === null) return new Set();
    if (who.type === 'user') return userHoldings(tx, who.id, userDisabled);
    if (who.type === 'operator') return operatorHoldings(tx, who.id, clock.now(), operatorActive);
    return new Set();
  };
}

export type LockedHoldings = ReturnType<typeof createLockedHoldings>;
