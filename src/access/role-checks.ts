import type { Kysely } from 'kysely';
import type { ActionContext } from '../platform/context.ts';
import type { AnyTenantTx, TxGuard } from '../platform/db/index.ts';
import { accessError } from './errors.ts';
import { heldAdminPowers, refuseUnheld, rolePermissionsOfUser } from './grants.ts';
import type { RolesDeps } from './roles.ts';
import { type AccessTables, inTenant, type Tx } from './tables.ts';

/**
 * The four-eyes gate decides before the write, in its own transaction: a grant of a role that gained
 * administrator powers meanwhile, or a change adding them to a role that became held meanwhile, would
 * otherwise run unapproved (two requests sent together: one makes the role an admin role, the other
 * grants it). So an unapproved change by a person decides again here, under the role's lock; the
 * platform's own calls (system actor) and approved runs (which pass their guard) are not gated.
 */
export async function refuseUnapprovedAdminGrant(
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
export function refuseOperatorGrant(ctx: ActionContext, guard: TxGuard | undefined, what: string): void {
  if (guard || ctx.actor.type !== 'operator') return;
  throw accessError(
    'approval_now_required',
    `${what} gives lasting access, which an operator under an elevation gives only with the approval of a ` +
      'person of this tenant (the role may have changed while this request was checked). Send it again to ask.',
  );
}

/** What other services ask of a user's roles: the administrator powers they give, and what may be given. */
export function createRoleChecks({ db, holdings, adminGrantGated }: RolesDeps) {
  return {
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
  };
}

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
