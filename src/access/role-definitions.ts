import type { ActionContext } from '../platform/context.ts';
import type { TxGuard } from '../platform/db/index.ts';
import { audit } from './audit.ts';
import { adminPowersIn, builtinRoles, isBuiltinRole, permissionDef } from './catalogue.ts';
import { accessError } from './errors.ts';
import { customRole, refuseUnheld, roleHeld } from './grants.ts';
import { refuseOperatorGrant, refuseUnapprovedAdminGrant } from './role-checks.ts';
import type { LockUsers, RoleChange, RolesDeps } from './roles.ts';
import { inTenant, type Tx } from './tables.ts';

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

/**
 * The holders of a role, each user row locked (FOR NO KEY UPDATE, as lockUsers takes it) before the
 * holders are read again: read, lock the new ones, read again until no new holder appears, so the set
 * the deletion acts on is read with every holder locked. Holders are locked in ascending id order; one
 * that appears between two reads (a concurrent grant) is locked after the others, the rare case the
 * retry in `change` (roles.ts) covers.
 */
async function lockHolders(
  tx: Tx,
  lockUsers: LockUsers,
  key: string,
  locked = new Set<string>(),
): Promise<string[]> {
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

/** A tenant's custom roles (built-in ones are listed, never written): create, change, delete. */
export function createRoleDefinitions(deps: RolesDeps, change: RoleChange) {
  const { db, clock, holdings, lockUsers } = deps;
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
        // Assignments left by an earlier role of this key (one granted while it was being deleted, before
        // `remove` deleted the role first) would give the new role to their users at once, unasked:
        // removed first, their user rows locked before Access's rows (lock order, docs/access.md).
        const leftover = await lockHolders(tx, lockUsers, key);
        const cleared =
          leftover.length === 0
            ? 0n
            : (await tx.deleteFrom('access_assignments').where('role_key', '=', key).executeTakeFirst())
                .numDeletedRows;
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
          details: {
            permissions: permissions.join(' '),
            ...(cleared > 0n ? { leftoverAssignmentsRemoved: Number(cleared) } : {}),
          },
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
     * the caller's transaction and locked until it commits: FOR UPDATE for a change of the role, FOR SHARE
     * for a grant of it (which needs it unchanged, and takes it FOR SHARE again: two approved grants of
     * one role whose approvers hold it would each wait for the other to upgrade its lock).
     */
    async lockedState(tx: Tx, key: string, lock: true | 'share' = true) {
      const row = await customRole(tx, key, lock);
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
        const locked = new Set(await lockHolders(tx, lockUsers, key));
        // The role's row next: a grant in flight holds it FOR SHARE with its assignment not yet committed
        // (invisible to the read above), so this waits for the grant's commit, and grants after it find
        // no role. Security review: the assignments were deleted before the role, the racing grant's
        // survived, and a role created later with this key was held by its user at once.
        const deleted = await tx.deleteFrom('access_roles').where('key', '=', key).executeTakeFirst();
        if (deleted.numDeletedRows === 0n)
          throw accessError('role_not_found', `There is no custom role "${key}".`);
        // Then the holders again, in a new statement that sees such a grant: its user is locked now, after
        // the role (the rare out-of-order case the retry in `change` covers), before its assignment goes.
        await lockHolders(tx, lockUsers, key, locked);
        const removed = await tx
          .deleteFrom('access_assignments')
          .where('role_key', '=', key)
          .executeTakeFirst();
        await audit(clock, tx, tenantId, ctx, {
          action: 'access.role.deleted',
          outcome: 'success',
          target: { type: 'role', id: key },
          details: { assignmentsRemoved: Number(removed.numDeletedRows) },
        });
      }),
  };
}
