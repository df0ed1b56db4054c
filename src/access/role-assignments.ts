import type { ActionContext } from '../platform/context.ts';
import type { TxGuard } from '../platform/db/index.ts';
import { audit } from './audit.ts';
import { adminPowersIn, isBuiltinRole } from './catalogue.ts';
import { accessError } from './errors.ts';
import { checkAssignment, customRole, refuseSelfAssignment } from './grants.ts';
import { refuseOperatorGrant, refuseUnapprovedAdminGrant } from './role-checks.ts';
import type { LockActiveTenantAdmins, RoleChange, RolesDeps } from './roles.ts';
import { inTenant, type Tx } from './tables.ts';

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

/** Who holds which role: granting and taking roles, and reading a user's. */
export function createRoleAssignments(deps: RolesDeps, change: RoleChange) {
  const { db, clock, userExists, holdings, lockActiveTenantAdmins, lockUsers } = deps;
  return {
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
     * be refused is refused now rather than put up for approval); the role's permissions, and for a custom
     * role its state as `lockedState` shows it (what the summary is written on, the approval's basis).
     * The role's row is held FOR SHARE while both are read, so they are one version of it.
     */
    async planAssignment(tenantId: string, ctx: ActionContext, userId: string, roleKey: string) {
      const held = await holdings(tenantId, ctx.actor);
      return inTenant(db, tenantId, async (tx) => {
        const permissions = await checkAssignment(tx, held, ctx, userId, roleKey, true);
        if (isBuiltinRole(roleKey)) return { permissions, state: undefined };
        const row = await customRole(tx, roleKey, false);
        const state = row ? { name: row.name, permissions: [...row.permissions].sort() } : null;
        return { permissions, state };
      });
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
