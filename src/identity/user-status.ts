import type { Kysely } from 'kysely';
import type { ActionContext } from '../platform/context.ts';
import type { TxGuard } from '../platform/db/index.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef, type Tx } from './deps.ts';
import { identityError } from './errors.ts';
import { createLinks } from './links.ts';
import { withMail } from './outgoing-mail.ts';
import { revokeAllInTx } from './session-revocation.ts';
import type { IdentityTables, TenantIdentityTables } from './tables.ts';
import { createUserRepository, toPublicUser, type UserRow } from './users.ts';

const notFound = () => identityError('user_not_found', 'No user has this id in this tenant.');

/**
 * Locks the user rows of the tenant's active tenant-admins, ordered by id, in the caller's tenant-scoped
 * transaction, and returns their ids. Every change that could leave a tenant without an active
 * administrator takes these locks first (disabling a user here, removing the tenant-admin role in
 * Access): the same rows in the same order, so two such changes cannot deadlock and run one after the
 * other, and the second counts the administrators the first left.
 */
export async function lockActiveTenantAdmins<DB>(tx: Kysely<DB>): Promise<string[]> {
  // Row-level security keeps it to the caller's tenant. A matching row that another transaction is
  // changing is waited for and checked again once that commits (READ COMMITTED), so an administrator who
  // was disabled or lost the role meanwhile drops out of the answer.
  const rows = await (tx as unknown as Kysely<TenantIdentityTables>)
    .selectFrom('users')
    .select('id')
    .where('role', '=', 'tenant-admin')
    .where('status', '=', 'active')
    .orderBy('id')
    .forUpdate()
    .execute();
  return rows.map((r) => r.id);
}

/**
 * Locks these users' rows (FOR NO KEY UPDATE, ordered by id) in the caller's tenant-scoped transaction.
 * Access takes them before it deletes assignments: deleting one updates the user's derived role label
 * (a trigger), and Access's re-check of an approver locks the user row before their assignments, so the
 * user row must come first on both sides or the two deadlock.
 */
export async function lockUsers<DB>(tx: Kysely<DB>, userIds: readonly string[]): Promise<void> {
  if (userIds.length === 0) return;
  await (tx as unknown as Kysely<TenantIdentityTables>)
    .selectFrom('users')
    .select('id')
    .where('id', 'in', [...new Set(userIds)])
    .orderBy('id')
    .forNoKeyUpdate()
    .execute();
}

/** The active tenant-admins locked first, then the target (see lockActiveTenantAdmins). */
async function lockTarget(tx: Tx, userId: string): Promise<{ user: UserRow; otherAdmins: number }> {
  const admins = await lockActiveTenantAdmins<TenantIdentityTables>(tx);
  const user = await createUserRepository(tx).lockById(userId);
  if (!user) throw notFound();
  return { user, otherAdmins: admins.filter((id) => id !== userId).length };
}

/**
 * Whether an operator is active, read in any transaction and held FOR SHARE until the caller commits, so a
 * disable (which locks the row FOR UPDATE) waits for the caller or is seen by it (Access's re-checks of an
 * elevation's earlier approvers and of a platform approval's approver, in the transaction that acts).
 * The operators table is platform-wide; no tenant filter applies.
 */
export async function isOperatorActive<DB>(tx: Kysely<DB>, operatorId: string): Promise<boolean> {
  const row = await (tx as unknown as Kysely<IdentityTables>)
    .selectFrom('operators')
    .select('status')
    .where('id', '=', operatorId)
    .forShare()
    .executeTakeFirst();
  return row?.status === 'active';
}

/**
 * Whether a user is disabled, read in any tenant-scoped transaction (Access asks before granting anything).
 * `lock`: the row is held FOR SHARE until the caller commits, so a disable (which locks it FOR UPDATE)
 * waits for the caller, or the caller for it and then reads `disabled` (Access's re-check of an approver).
 */
export async function isUserDisabled<DB>(tx: Kysely<DB>, userId: string, lock = false): Promise<boolean> {
  // Row-level security keeps it to the caller's tenant.
  const query = (tx as unknown as Kysely<TenantIdentityTables>)
    .selectFrom('users')
    .select('status')
    .where('id', '=', userId);
  const row = await (lock ? query.forShare() : query).executeTakeFirst();
  return row?.status === 'disabled';
}

/**
 * What is four-eyes for a user whose roles give administrator powers, since it hands those powers on
 * (security reviews): enabling them again (users:write re-enabled a disabled tenant-admin alone),
 * resetting their second factor (whoever holds the password enrols next) and lifting their password lock
 * (each unlock is `threshold` more guesses at it). The four-eyes gate decides before the write, so an
 * unapproved write by a person decides again here, with the user's row locked (a grant to them waits)
 * and Access's rows read FOR SHARE: a role that gained a power meanwhile cannot slip through. The
 * platform's own calls (system actor) and approved runs (which pass their guard) are not gated.
 * `doing`: what the write does, as the refusal says it ("enabling them again").
 */
export async function refuseUnapprovedAdminChange(
  deps: Pick<IdentityDeps, 'adminPowersToApprove'>,
  tx: Tx,
  ctx: ActionContext,
  userId: string,
  guard: TxGuard | undefined,
  doing: string,
): Promise<void> {
  if (guard || ctx.actor.type === 'system' || !deps.adminPowersToApprove) return;
  const powers = await deps.adminPowersToApprove(tx, userId);
  if (powers.length === 0) return;
  throw identityError(
    'approval_now_required',
    `This user's roles give administrator powers (${powers.join(', ')}): ${doing} needs a ` +
      "second person's approval. Send the request again to ask for it.",
  );
}

export function createUserStatusService(deps: IdentityDeps) {
  /** After the commit: every node drops the tenant's cached permissions (a disabled user holds none). */
  const permissionsChanged = (tenant: TenantRef) => deps.userStatusChanged?.(tenant.id);

  return {
    /**
     * Disables a user: sign-in refused (answered like a wrong password), every session ended on every
     * node, pending password-reset links voided, no permission held. In one transaction with its audit.
     */
    async disable(tenant: TenantRef, ctx: ActionContext, userId: string, reason: string | null) {
      if (ctx.actor.type === 'user' && ctx.actor.id === userId) {
        throw identityError(
          'cannot_disable_self',
          'You cannot disable your own account; ask another administrator to do it.',
        );
      }
      const view = await inTenant(deps, tenant, async (tx) => {
        // A reset link mailed earlier must not work if the account is enabled again within its lifetime.
        // Voided before the user row is locked: redeeming a link locks the link, then the user, and the
        // same order here cannot deadlock with it.
        const links = await tx
          .updateTable('user_tokens')
          .set({ used_at: deps.clock.now() })
          .where('user_id', '=', userId)
          .where('purpose', '=', 'reset_password')
          .where('used_at', 'is', null)
          .executeTakeFirst();
        const { user, otherAdmins } = await lockTarget(tx, userId);
        if (user.status === 'disabled')
          throw identityError('user_already_disabled', 'This user is disabled already.');
        if (user.role === 'tenant-admin' && user.status === 'active' && otherAdmins === 0) {
          throw identityError(
            'last_tenant_admin',
            'This is the tenant\u2019s only active administrator; grant tenant-admin to another user first.',
          );
        }
        const updated = await createUserRepository(tx).update(userId, { status: 'disabled' });
        const sessionsEnded = await revokeAllInTx(deps, tx, userId);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.user.disabled',
          outcome: 'success',
          target: { type: 'user', id: userId },
          details: {
            reason,
            previousStatus: user.status,
            sessionsEnded,
            resetLinksVoided: Number(links.numUpdatedRows),
          },
        });
        return toPublicUser(updated, deps.clock.now());
      });
      await permissionsChanged(tenant);
      return view;
    },

    /**
     * Enables a disabled user again: `active`, or `invited` when they never set a password. Giving back
     * administrator powers is four-eyes (`access.grant-tenant-admin`, gated on the route); an approved
     * enable passes the approval's `guard`, run first in this transaction. Like assigning the user's
     * roles, it never gives back a permission the caller does not hold, approved or not.
     */
    async enable(tenant: TenantRef, ctx: ActionContext, userId: string, guard?: TxGuard) {
      // Access's checks of what enabling gives back: nothing the caller lacks, and an operator's enable only
      // approved (the platform's CLI is not a person holding roles).
      const givesNothingUnheld =
        ctx.actor.type === 'system'
          ? undefined
          : await deps.enableChecker?.(tenant.id, ctx, guard !== undefined);
      const view = await withMail(deps, tenant, async (tx, outbox) => {
        // Lock order (docs/access.md): the target's and the approver's user rows, ascending, before the
        // guard and Access's rows.
        await lockUsers<TenantIdentityTables>(tx, [userId, ...(guard?.userIds ?? [])]);
        await guard?.(tx);
        const repo = createUserRepository(tx);
        const user = await repo.lockById(userId);
        if (!user) throw notFound();
        if (user.status !== 'disabled') {
          throw identityError(
            'user_not_disabled',
            `This user is ${user.status}, not disabled; nothing to enable.`,
          );
        }
        await refuseUnapprovedAdminChange(deps, tx, ctx, userId, guard, 'enabling them again');
        await givesNothingUnheld?.(tx, userId);
        const status = user.password_hash === null ? 'invited' : 'active';
        const updated = await repo.update(userId, { status });
        // Invited again: with a new link, as the one mailed before may have lapsed meanwhile (an earlier
        // unused one stays valid until it expires; redeeming either uses up the other). Also the way to
        // renew a lapsed invitation: disable, then enable.
        if (status === 'invited')
          await createLinks(deps).issue(tx, tenant, userId, user.email, 'invite', outbox);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.user.enabled',
          outcome: 'success',
          target: { type: 'user', id: userId },
          details: { status, ...(status === 'invited' ? { invitationSent: true } : {}) },
        });
        return toPublicUser(updated, deps.clock.now());
      });
      await permissionsChanged(tenant);
      return view;
    },
  };
}
