import type { ActionContext } from '../platform/context.ts';
import { rolePermissions } from './cache.ts';
import { adminPowersIn, builtinRoles, isBuiltinRole } from './catalogue.ts';
import { accessError } from './errors.ts';
import type { Tx } from './tables.ts';

/*
 * The checks on giving permissions away (security review: custom roles and assignments let their
 * writers raise themselves): nobody gives a permission they do not hold, nobody gives themselves a role.
 * What the caller holds comes from `holdings.ts`, read before the caller's transaction.
 */

/** The permissions a built-in role or one of this tenant's custom roles gives; null when there is no such role. */
async function permissionsOfRole(tx: Tx, key: string, lock = false): Promise<string[] | null> {
  if (isBuiltinRole(key)) return builtinRoles[key].permissions();
  const query = tx.selectFrom('access_roles').select('permissions').where('key', '=', key);
  const row = await (lock ? query.forShare() : query).executeTakeFirst();
  return row ? rolePermissions(key, row.permissions) : null;
}

/**
 * Refuses to give permissions the caller does not hold: otherwise anyone allowed to write roles or
 * assign them could raise themselves (or an accomplice) above their own rights.
 */
export function refuseUnheld(held: ReadonlySet<string>, given: readonly string[], what: string): void {
  const missing = given.filter((p) => !held.has(p));
  if (missing.length > 0) {
    throw accessError(
      'permission_not_held',
      `${what} would give ${missing.join(', ')}, which you do not hold; only someone who holds a permission may give it.`,
    );
  }
}

/** Nobody changes their own roles: a second person decides what someone may do. */
export function refuseSelfAssignment(ctx: ActionContext, userId: string): void {
  if (ctx.actor.type === 'user' && ctx.actor.id === userId) {
    throw accessError('self_assignment', 'You cannot give yourself a role; ask another administrator.');
  }
}

/** The checks before a role is granted: not to oneself, an existing role, nothing the caller lacks. */
export async function checkAssignment(
  tx: Tx,
  held: ReadonlySet<string>,
  ctx: ActionContext,
  userId: string,
  roleKey: string,
  /** Hold a custom role's row FOR SHARE until commit: a change of its permissions waits, or is seen. */
  lockRole = false,
): Promise<string[]> {
  refuseSelfAssignment(ctx, userId);
  const permissions = await permissionsOfRole(tx, roleKey, lockRole);
  if (!permissions) throw accessError('role_not_found', `There is no role "${roleKey}".`);
  refuseUnheld(held, permissions, `The role "${roleKey}"`);
  return permissions;
}

/** Whether anyone holds a custom role: a user by assignment, or an operator by a pending or live elevation. */
export async function roleHeld(tx: Tx, key: string, now: Date): Promise<boolean> {
  const assigned = await tx
    .selectFrom('access_assignments')
    .select('user_id')
    .where('role_key', '=', key)
    .limit(1)
    .executeTakeFirst();
  if (assigned) return true;
  const elevated = await tx
    .selectFrom('access_elevations')
    .select('id')
    .where('role_key', '=', key)
    .where((eb) =>
      eb.or([
        eb('status', '=', 'pending'),
        eb.and([eb('status', '=', 'active'), eb('expires_at', '>', now)]),
      ]),
    )
    .limit(1)
    .executeTakeFirst();
  return elevated !== undefined;
}

/**
 * A custom role's name and stored permissions (locked FOR UPDATE when the caller changes it, FOR SHARE
 * when it only needs it unchanged until it commits); null when there is none.
 */
export async function customRole(tx: Tx, key: string, lock: boolean | 'share') {
  const query = tx.selectFrom('access_roles').select(['name', 'permissions']).where('key', '=', key);
  const locked = lock === 'share' ? query.forShare() : lock ? query.forUpdate() : query;
  return (await locked.executeTakeFirst()) ?? null;
}

/**
 * The administrator powers a user's roles give, whether or not the user is disabled (what enabling them
 * again gives back). `lock`: their custom roles FOR SHARE, by key, until the caller commits (a role
 * change adding a power waits, or is seen); their assignments are not locked: a grant to them locks their
 * user row first, which the caller holds.
 */
export async function heldAdminPowers(tx: Tx, userId: string, lock = false): Promise<string[]> {
  return adminPowersIn(await rolePermissionsOfUser(tx, userId, lock));
}

/** Every permission the user's roles give (custom roles' rows FOR SHARE with `lock`), role by role. */
export async function rolePermissionsOfUser(tx: Tx, userId: string, lock = false): Promise<string[]> {
  const assigned = await tx
    .selectFrom('access_assignments')
    .select('role_key')
    .where('user_id', '=', userId)
    .orderBy('role_key')
    .execute();
  const permissions: string[] = [];
  for (const { role_key } of assigned)
    permissions.push(...((await permissionsOfRole(tx, role_key, lock)) ?? []));
  return [...new Set(permissions)];
}
