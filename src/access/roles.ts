import type { Kysely } from 'kysely';
import type { ActionContext, Clock } from '../platform/context.ts';
import { type AnyTenantTx, type Database, isTransientConflict, type TxGuard } from '../platform/db/index.ts';
import { audit } from './audit.ts';
import type { PermissionCache } from './cache.ts';
import { adminPowersIn, builtinRoles, isBuiltinRole, permissionDef } from './catalogue.ts';
import { accessError } from './errors.ts';
import {
  checkAssignment,
  customRole,
  heldAdminPowers,
  refuseSelfAssignment,
  refuseUnheld,
  roleHeld,
  rolePermissionsOfUser,
} from './grants.ts';
import type { Holdings } from './holdings.ts';
import { type AccessTables, inTenant, type Tx } from './tables.ts';

export interface RoleView {
  key: string;
  name: string;
  builtin: boolean;
  permissions: string[];
}

export interface RoleInput {
  name: string;
  permissions: string[];
}

interface RolesDeps {
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
 * The four-eyes gate decides before the write, in its own transaction: a grant of a role that gained
 * administrator powers meanwhile, or a change adding them to a role that became held meanwhile, would
 * otherwise run unapproved (two requests sent together: one makes the role an admin role, the other
 * grants it). So an unapproved change by a person decides again here, under the role's lock; the
 * platform's own calls (system actor) and approved runs (which pass their guard) are not gated.
 */
async function refuseUnapprovedAdminGrant(
  tx: Tx,
  deps: Pick<RolesDeps, 'adminGrantGated'>,
  ctx: ActionContext,
  guard: TxGuard | undefined,
  /** The administrator powers the write would give (adminPowersIn). */
  powers: readonly string[],
  what: string,
): Promise<void> {
  if (guard || ctx.actor.type === 'system' || powers.length === 0) return;
  if (!(await deps.adminGrantGated(tx))) return;
  throw accessError(
    'approval_now_required',
    `${what} now gives administrator powers (${powers.join(', ')}): the role changed while this request was checked. Send it again to ask for a second person's approval.`,
  );
}

/**
 * An operator (under an elevation) gives lasting access only through an approved request, which a
 * person of the tenant decided (elevated-grants.ts): the gate asks for one, and this refuses the write
 * should a request reach it unapproved (a role that gained permissions after the gate compared).
 */
function refuseOperatorGrant(ctx: ActionContext, guard: TxGuard | undefined, what: string): void {
  if (guard || ctx.actor.type !== 'operator') return;
  throw accessError(
    'approval_now_required',
    `${what} gives lasting access, which an operator under an elevation gives only with the approval of a ` +
      'person of this tenant (the role may have changed while this request was checked). Send it again to ask.',
  );
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

/**
 * The holders of a role, each user row locked (FOR NO KEY UPDATE, as lockUsers takes it) before the
 * holders are read again: read, lock the new ones, read again until no new holder appears, so the set
 * the deletion acts on is read with every holder locked. Holders are locked in ascending id order; one
 * that appears between two reads (a concurrent grant) is locked after the others, the rare case the
 * retry in `change` covers.
 */
async function lockHolders(tx: Tx, lockUsers: LockUsers, key: string): Promise<string[]> {
  const locked = new Set<string>();
  for (;;) {
    const rows = await tx
      .selectFrom('access_assignments')
      .select('user_id')
      .where('role_key', '=', key)
      .orderBy('user_id')
      .execute();
    const fresh = rows.map((r) => r.user_id).filter((id) => !locked.has(id));
    if (fresh.length === 0) return [...locked];
    await lockUsers(tx, fresh);
    for (const id of fresh) locked.add(id);
  }
}

/** Only tenant permissions can be given through a tenant's role; platform ones belong to operators. */
function checkPermissions(permissions: readonly string[]): string[] {
  for (const name of permissions) {
    if (permissionDef(name)?.scope !== 'tenant') {
      throw accessError('unknown_permission', `"${name}" is not a tenant permission in the catalogue.`);
    }
  }
  return [...new Set(permissions)].sort();
}

const builtinViews = (): RoleView[] =>
  Object.entries(builtinRoles).map(([key, role]) => ({
    key,
    name: role.name,
    builtin: true,
    permissions: role.permissions(),
  }));

/**
 * Refuses to take tenant-admin from the tenant's last active administrator: nobody could assign roles
 * afterwards. The locks are taken before the delete, so a concurrent disable or removal of another
 * administrator waits for this transaction (or this one for it) and the second sees the first's result.
 */
async function keepAnAdmin(tx: Tx, lock: LockActiveTenantAdmins, userId: string): Promise<void> {
  const admins = await lock(tx);
  if (admins.includes(userId) && admins.length === 1) {
    throw accessError(
      'last_tenant_admin',
      'This user is the tenant\u2019s only active administrator; grant tenant-admin to another user first.',
    );
  }
}

export function createRoleService({
  db,
  clock,
  cache,
  userExists,
  holdings,
  lockActiveTenantAdmins,
  lockUsers,
  adminGrantGated,
}: RolesDeps) {
  const deps = { adminGrantGated };
  /**
   * Runs a change and, once it committed, tells every node to drop the tenant's cached permissions. A
   * deadlock or serialization failure rolled the whole transaction back, so it is run again (a few times
   * at most): the lock order below makes them rare, not impossible (a holder appearing mid-deletion).
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
    async list(tenantId: string): Promise<RoleView[]> {
      const custom = await inTenant(db, tenantId, (tx) =>
        tx.selectFrom('access_roles').selectAll().orderBy('key').execute(),
      );
      return [
        ...builtinViews(),
        ...custom.map((r) => ({ key: r.key, name: r.name, builtin: false, permissions: r.permissions })),
      ];
    },

    async create(tenantId: string, ctx: ActionContext, key: string, input: RoleInput) {
      if (isBuiltinRole(key)) throw accessError('builtin_role', `"${key}" is a built-in role.`);
      const permissions = checkPermissions(input.permissions);
      refuseUnheld(await holdings(tenantId, ctx.actor), permissions, `The role "${key}"`);
      return change(tenantId, async (tx) => {
        const now = clock.now();
        const inserted = await tx
          .insertInto('access_roles')
          .values({
            tenant_id: tenantId,
            key,
            name: input.name,
            permissions,
            created_at: now,
            updated_at: now,
          })
          .onConflict((oc) => oc.columns(['tenant_id', 'key']).doNothing())
          .returning('key')
          .executeTakeFirst();
        if (!inserted)
          throw accessError('role_exists', `A role "${key}" exists already; change it with PUT.`);
        await audit(clock, tx, tenantId, ctx, {
          action: 'access.role.created',
          outcome: 'success',
          target: { type: 'role', id: key },
          details: { permissions: permissions.join(' ') },
        });
        return { key, name: input.name, builtin: false, permissions };
      });
    },

    /**
     * What changing a custom role would add, for the four-eyes gate: refused outright when it adds a
     * permission the caller lacks; null when the route will refuse it anyway (built-in or unknown role).
     */
    async planUpdate(tenantId: string, ctx: ActionContext, key: string, input: RoleInput) {
      if (isBuiltinRole(key)) return null;
      const permissions = checkPermissions(input.permissions);
      const held = await holdings(tenantId, ctx.actor);
      return inTenant(db, tenantId, async (tx) => {
        const current = await customRole(tx, key, false);
        if (!current) return null;
        const added = permissions.filter((p) => !current.permissions.includes(p));
        refuseUnheld(held, added, `Changing the role "${key}"`);
        // `state`: the role as `lockedState` shows it, what the summary of the added powers is written on.
        const state = { name: current.name, permissions: [...current.permissions].sort() };
        return { permissions, added, held: await roleHeld(tx, key, clock.now()), state };
      });
    },

    /**
     * A custom role's name and permissions as stored (what an approved change would overwrite), read in
     * the caller's transaction and locked until it commits.
     */
    async lockedState(tx: Tx, key: string) {
      const row = await customRole(tx, key, true);
      return row ? { name: row.name, permissions: [...row.permissions].sort() } : null;
    },

    /**
     * Changes a custom role; it may add only permissions the caller holds (keeping others is allowed).
     * An approved change passes the approval's `guard`, run first in this transaction.
     */
    async update(tenantId: string, ctx: ActionContext, key: string, input: RoleInput, guard?: TxGuard) {
      if (isBuiltinRole(key))
        throw accessError('builtin_role', `"${key}" is built in; create a custom role.`);
      const permissions = checkPermissions(input.permissions);
      const held = await holdings(tenantId, ctx.actor);
      return change(tenantId, async (tx) => {
        await guard?.(tx);
        // Locked, so the trail's "before" is what this change replaced even when two changes race.
        const current = await customRole(tx, key, true);
        if (!current) throw accessError('role_not_found', `There is no custom role "${key}".`);
        const added = permissions.filter((p) => !current.permissions.includes(p));
        refuseUnheld(held, added, `Changing the role "${key}"`);
        if (added.length > 0) refuseOperatorGrant(ctx, guard, `Adding ${added.join(', ')} to "${key}"`);
        const powers = adminPowersIn(added);
        if (powers.length > 0 && (await roleHeld(tx, key, clock.now()))) {
          await refuseUnapprovedAdminGrant(tx, deps, ctx, guard, powers, `Changing the held role "${key}"`);
        }
        await tx
          .updateTable('access_roles')
          .set({ name: input.name, permissions, updated_at: clock.now() })
          .where('key', '=', key)
          .execute();
        await audit(clock, tx, tenantId, ctx, {
          action: 'access.role.updated',
          outcome: 'success',
          target: { type: 'role', id: key },
          details: {
            permissions: permissions.join(' '),
            permissionsBefore: [...current.permissions].sort().join(' '),
            name: input.name,
            nameBefore: current.name,
          },
        });
        return { key, name: input.name, builtin: false, permissions };
      });
    },

    /** Deletes a custom role and, in the same transaction, every assignment of it. */
    remove: (tenantId: string, ctx: ActionContext, key: string) =>
      change(tenantId, async (tx) => {
        if (isBuiltinRole(key))
          throw accessError('builtin_role', `"${key}" is built in and cannot be deleted.`);
        // Lock order (docs/access.md): the holders' user rows, ascending, before any of Access's rows.
        await lockHolders(tx, lockUsers, key);
        const removed = await tx
          .deleteFrom('access_assignments')
          .where('role_key', '=', key)
          .executeTakeFirst();
        const deleted = await tx.deleteFrom('access_roles').where('key', '=', key).executeTakeFirst();
        if (deleted.numDeletedRows === 0n)
          throw accessError('role_not_found', `There is no custom role "${key}".`);
        await audit(clock, tx, tenantId, ctx, {
          action: 'access.role.deleted',
          outcome: 'success',
          target: { type: 'role', id: key },
          details: { assignmentsRemoved: Number(removed.numDeletedRows) },
        });
      }),

    userRoles: (tenantId: string, userId: string) =>
      inTenant(db, tenantId, async (tx) => {
        const rows = await tx
          .selectFrom('access_assignments')
          .select('role_key')
          .where('user_id', '=', userId)
          .orderBy('role_key')
          .execute();
        return rows.map((r) => r.role_key);
      }),

    /**
     * The checks `assign` makes, without granting anything (for the four-eyes gate, so a grant that would
     * be refused is refused now rather than put up for approval); the role's permissions.
     */
    async planAssignment(tenantId: string, ctx: ActionContext, userId: string, roleKey: string) {
      const held = await holdings(tenantId, ctx.actor);
      return inTenant(db, tenantId, (tx) => checkAssignment(tx, held, ctx, userId, roleKey));
    },

    /** The administrator powers a user's roles give: what enabling them again gives back (four-eyes gate). */
    adminPowersOf: (tenantId: string, userId: string) =>
      inTenant(db, tenantId, (tx) => heldAdminPowers(tx, userId)),

    /**
     * For identity's enable, in its transaction with the user's row locked: the administrator powers
     * enabling the user gives back when granting them needs a second person's approval in this tenant
     * (`access.grant-tenant-admin` on its list); empty otherwise. The gate decides before the write, so
     * the write decides again here: a role that gained a power, or a grant, meanwhile is seen (custom
     * roles and the access settings FOR SHARE until it commits).
     */
    async adminPowersToApprove(tx: AnyTenantTx, userId: string): Promise<string[]> {
      const powers = await heldAdminPowers(tx as Tx, userId, true);
      if (powers.length === 0 || !(await adminGrantGated(tx as Tx))) return [];
      return powers;
    },

    /**
     * The checks of enabling a user again: it gives back nothing the caller lacks, as assigning their
     * roles would (approved or not: an approval lets a second person agree, not the runner exceed their
     * own rights), and an operator's enable is lasting access, run only approved. The caller's holdings are read now, before the enable's transaction opens (they may need
     * a read of their own); the user's role permissions in it, custom roles FOR SHARE.
     */
    async enableChecker(tenantId: string, ctx: ActionContext, approved: boolean) {
      const held = await holdings(tenantId, ctx.actor);
      return async (tx: AnyTenantTx, userId: string) => {
        // The gate asks for an operator's enable when it reads the user disabled; this catches a user
        // disabled after it looked.
        if (!approved) refuseOperatorGrant(ctx, undefined, 'Enabling this user again');
        refuseUnheld(held, await rolePermissionsOfUser(tx as Tx, userId, true), 'Enabling this user again');
      };
    },

    /** Refuses giving these permissions (a built-in role on invitation) when the caller lacks one. */
    async checkGrant(tenantId: string, ctx: ActionContext, permissions: readonly string[], what: string) {
      refuseUnheld(await holdings(tenantId, ctx.actor), permissions, what);
    },

    /**
     * Grants a role; granting one the user holds already changes nothing and records nothing. Never to
     * oneself, and never a role giving a permission the caller does not hold. An approved grant passes
     * the approval's `guard`, run first in this transaction.
     */
    async assign(tenantId: string, ctx: ActionContext, userId: string, roleKey: string, guard?: TxGuard) {
      refuseSelfAssignment(ctx, userId);
      // Users are disabled, never deleted, so the answer cannot go stale before the insert below (whose
      // foreign key would refuse a missing user anyway).
      if (!(await userExists(tenantId, userId))) {
        throw accessError('user_not_found', 'There is no such user in this tenant.');
      }
      const held = await holdings(tenantId, ctx.actor);
      return change(tenantId, async (tx) => {
        // Lock order (docs/access.md): every user row this grant locks, ascending, first: the target's
        // (the grant updates its role label) and the approver's (the guard reads it). The guard alone
        // took the approver's, then the grant the target's, while a role deletion locks its holders in id
        // order: with both among the holders, the two deadlocked.
        await lockUsers(tx, [userId, ...(guard?.userIds ?? [])]);
        await guard?.(tx);
        const permissions = await checkAssignment(tx, held, ctx, userId, roleKey, true);
        refuseOperatorGrant(ctx, guard, `Granting the role "${roleKey}"`);
        const powers = adminPowersIn(permissions);
        await refuseUnapprovedAdminGrant(tx, deps, ctx, guard, powers, `The role "${roleKey}"`);
        const inserted = await tx
          .insertInto('access_assignments')
          .values({ tenant_id: tenantId, user_id: userId, role_key: roleKey })
          .onConflict((oc) => oc.columns(['tenant_id', 'user_id', 'role_key']).doNothing())
          .returning('role_key')
          .executeTakeFirst();
        const changed = inserted !== undefined;
        if (changed) {
          await audit(clock, tx, tenantId, ctx, {
            action: 'access.role.granted',
            outcome: 'success',
            target: { type: 'user', id: userId },
            details: { role: roleKey },
          });
        }
        return { changed };
      });
    },

    /** Takes a role from a user; never the tenant's last active tenant-admin (refused, nothing changes). */
    unassign: (tenantId: string, ctx: ActionContext, userId: string, roleKey: string) =>
      change(tenantId, async (tx) => {
        if (roleKey === 'tenant-admin') await keepAnAdmin(tx, lockActiveTenantAdmins, userId);
        await lockUsers(tx, [userId]);
        const deleted = await tx
          .deleteFrom('access_assignments')
          .where('user_id', '=', userId)
          .where('role_key', '=', roleKey)
          .executeTakeFirst();
        if (deleted.numDeletedRows === 0n) {
          throw accessError('role_not_found', `The user does not hold the role "${roleKey}".`);
        }
        await audit(clock, tx, tenantId, ctx, {
          action: 'access.role.removed',
          outcome: 'success',
          target: { type: 'user', id: userId },
          details: { role: roleKey },
        });
      }),
  };
}

export type RoleService = ReturnType<typeof createRoleService>;

/**
 * Whether the user holds a role beyond member (staff, tenant-admin or a custom role), read in the
 * caller's tenant-scoped transaction: the anomaly rules treat such users' sign-ins as staff sign-ins.
 */
export async function holdsStaffRole<DB>(tx: Kysely<DB>, userId: string): Promise<boolean> {
  // Any tenant-scoped transaction will do: row-level security keeps it to the caller's tenant.
  const row = await (tx as unknown as Kysely<AccessTables>)
    .selectFrom('access_assignments')
    .select('role_key')
    .where('user_id', '=', userId)
    .where('role_key', '<>', 'member')
    .limit(1)
    .executeTakeFirst();
  return row !== undefined;
}
