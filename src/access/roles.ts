import type { Clock } from '../platform/context.ts';
import { type Database, isTransientConflict } from '../platform/db/index.ts';
import type { PermissionCache } from './cache.ts';
import type { Holdings } from './holdings.ts';
import { createRoleAssignments } from './role-assignments.ts';
import { createRoleChecks } from './role-checks.ts';
import { createRoleDefinitions } from './role-definitions.ts';
import { inTenant, type Tx } from './tables.ts';

/*
 * A tenant's roles in three parts: the custom roles themselves (role-definitions.ts), who holds which
 * (role-assignments.ts), and the checks other services ask of them (role-checks.ts). All writes go
 * through one `change`.
 */

export interface RolesDeps {
  db: Database;
  clock: Clock;
  cache: PermissionCache;
  /** Asks identity whether the user exists in the tenant (capabilities never read each other's tables). */
  userExists: (tenantId: string, userId: string) => Promise<boolean>;
  /** What the caller holds: nobody gives a permission they do not hold themselves. */
  holdings: Holdings;
  lockActiveTenantAdmins: LockActiveTenantAdmins;
  lockUsers: LockUsers;
  /**
   * Whether granting administrator powers (`access.grant-tenant-admin`) is on the tenant's four-eyes
   * list, read in the caller's transaction with the access settings held until it commits.
   */
  adminGrantGated: (tx: Tx) => Promise<boolean>;
}

/**
 * Identity's lock on the tenant's active tenant-admins (their user rows, ordered by id, FOR UPDATE) in
 * Access's transaction; returns their ids. Identity's disable takes the same locks in the same order.
 */
export type LockActiveTenantAdmins = (tx: Tx) => Promise<string[]>;

/**
 * Identity's lock on these users' rows in Access's transaction, taken before their assignments are
 * deleted: the user row first, as the re-check of an approver (locked-holdings.ts) and a disable take it.
 */
export type LockUsers = (tx: Tx, userIds: readonly string[]) => Promise<void>;

const CONFLICT_ATTEMPTS = 3;

/** A role or assignment write, run by `change` below. */
export type RoleChange = <R>(tenantId: string, fn: (tx: Tx) => Promise<R>) => Promise<R>;

export function createRoleService(deps: RolesDeps) {
  const { db, cache } = deps;
  /**
   * Runs a change and, once it committed, tells every node to drop the tenant's cached permissions. A
   * deadlock or serialization failure rolled the whole transaction back, so it is run again (a few times
   * at most): the writes' lock order makes them rare, not impossible (a holder appearing mid-deletion).
   */
  async function change<R>(tenantId: string, fn: (tx: Tx) => Promise<R>): Promise<R> {
    for (let attempt = 1; ; attempt++) {
      try {
        const result = await inTenant(db, tenantId, fn);
        await cache.changed(tenantId);
        return result;
      } catch (error) {
        if (!isTransientConflict(error) || attempt >= CONFLICT_ATTEMPTS) throw error;
      }
    }
  }

  return {
    ...createRoleDefinitions(deps, change),
    ...createRoleAssignments(deps, change),
    ...createRoleChecks(deps),
  };
}

export type RoleService = ReturnType<typeof createRoleService>;
