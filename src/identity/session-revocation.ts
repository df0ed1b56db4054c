import type { ActionContext } from '../platform/context.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef, type Tx } from './deps.ts';
import { identityError } from './errors.ts';
import { sessionsChanged } from './session-cache.ts';
import type { SessionLifetime } from './session-tokens.ts';

/** Ending sessions: one of the user's own, or all of a user's (an administrator's revoke-all). */
export function createSessionRevocation(deps: IdentityDeps) {
  return {
    /** Revokes one of the user's own sessions; false when there is no such live session. */
    revoke: (tenant: TenantRef, userId: string, sessionId: string, ctx: ActionContext) =>
      inTenant(deps, tenant, async (tx) => {
        const result = await tx
          .updateTable('sessions')
          .set({ revoked_at: deps.clock.now() })
          .where('id', '=', sessionId)
          .where('user_id', '=', userId)
          .where('revoked_at', 'is', null)
          .executeTakeFirst();
        const revoked = result.numUpdatedRows > 0n;
        if (revoked) {
          sessionsChanged(deps, tx, `session:${sessionId}`);
          await audit(deps, tx, tenant, ctx, {
            action: 'identity.session.revoked',
            outcome: 'success',
            target: { type: 'session', id: sessionId },
            details: { userId },
          });
        }
        return revoked;
      }),

    /** Revokes one of the caller's own live sessions; 404 when there is none with that id. */
    async revokeOwn(tenant: TenantRef, userId: string, sessionId: string, ctx: ActionContext): Promise<void> {
      if (!(await this.revoke(tenant, userId, sessionId, ctx))) {
        throw identityError('session_not_found', 'You have no live session with this id.');
      }
    },

    revokeAll: (tenant: TenantRef, userId: string, ctx: ActionContext) =>
      inTenant(deps, tenant, async (tx) => {
        const count = await revokeAllInTx(deps, tx, userId);
        await audit(deps, tx, tenant, ctx, {
          action: 'identity.session.revoked_all',
          outcome: 'success',
          target: { type: 'user', id: userId },
          details: { count },
        });
        return count;
      }),
  };
}

/** Ends every live session of a user, except `keep` (the caller's own, on a password change). */
export async function revokeAllInTx(
  deps: IdentityDeps,
  tx: Tx,
  userId: string,
  keep?: string,
): Promise<number> {
  await lockUser(tx, userId);
  let query = tx
    .updateTable('sessions')
    .set({ revoked_at: deps.clock.now() })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null);
  if (keep) query = query.where('id', '!=', keep);
  const result = await query.executeTakeFirst();
  sessionsChanged(deps, tx, `user:${userId}`);
  return Number(result.numUpdatedRows);
}

/**
 * Ends one session (a rotation at a privilege change, for instance); every node forgets it. Answers its
 * lifetime, which the rotated session carries on: a second factor must not restart the clock, or a
 * client with an authenticator could keep one sign-in alive forever. Null when it had ended already.
 */
export async function revokeSessionInTx(
  deps: IdentityDeps,
  tx: Tx,
  sessionId: string,
): Promise<SessionLifetime | null> {
  await lockUserOf(tx, sessionId);
  // Only a live session: one revoked meanwhile (sign-out, password reset, disable) answers null, and the
  // caller issues nothing in its place.
  const row = await tx
    .updateTable('sessions')
    .set({ revoked_at: deps.clock.now() })
    .where('id', '=', sessionId)
    .where('revoked_at', 'is', null)
    .returning(['created_at', 'expires_at'])
    .executeTakeFirst();
  if (!row) return null;
  sessionsChanged(deps, tx, `session:${sessionId}`);
  return { createdAt: row.created_at, expiresAt: row.expires_at };
}

/**
 * Whatever ends all of a user's sessions and whatever rotates one takes the user's row first, so they run
 * one after the other: a revoke-all that started first is seen by the rotation (the old session is
 * revoked, no new one is issued); one that starts later sees the rotated session and ends it too.
 * Without the lock a revoke-all's statement could miss a session inserted after its snapshot.
 */
const lockUser = (tx: Tx, userId: string) =>
  tx.selectFrom('users').select('id').where('id', '=', userId).forUpdate().execute();

const lockUserOf = (tx: Tx, sessionId: string) =>
  tx
    .selectFrom('users')
    .select('id')
    .where('id', '=', tx.selectFrom('sessions').select('user_id').where('id', '=', sessionId))
    .forUpdate()
    .execute();
