import type { ActionContext } from '../platform/context.ts';
import { hmac } from '../platform/crypto/keys.ts';
import { hashToken, newToken, safeEqual } from '../platform/crypto/tokens.ts';
import { audit, type IdentityDeps, inTenant, type TenantRef, type Tx } from './deps.ts';
import { identityError } from './errors.ts';
import type { IdentitySettings } from './policy.ts';
import type { UserRole } from './tables.ts';

export const SESSION_PREFIX = 'rmp_s';
// last_seen_at is written at most this often: a write per request would cost more than it tells.
const TOUCH_EVERY_MS = 60_000;
const STEP_UP_WINDOW_MS = 5 * 60_000;

export type SessionStage = 'mfa' | 'enrol' | 'active';

export interface ValidSession {
  id: string;
  tenantId: string;
  userId: string;
  email: string;
  role: UserRole;
  stage: SessionStage;
  kind: 'cookie' | 'bearer';
  mfaAt: Date | null;
  createdAt: Date;
}

export async function createSession(
  deps: IdentityDeps,
  tx: Tx,
  settings: IdentitySettings,
  input: {
    tenantId: string;
    userId: string;
    stage: SessionStage;
    kind: 'cookie' | 'bearer';
    mfaAt: Date | null;
  },
  ctx: ActionContext,
): Promise<{ id: string; token: string }> {
  const now = deps.clock.now();
  const { token, hash } = newToken(SESSION_PREFIX);
  const row = await tx
    .insertInto('sessions')
    .values({
      tenant_id: input.tenantId,
      user_id: input.userId,
      token_hash: hash,
      stage: input.stage,
      kind: input.kind,
      created_at: now,
      last_seen_at: now,
      expires_at: new Date(now.getTime() + settings.session_absolute_hours * 3_600_000),
      mfa_at: input.mfaAt,
      revoked_at: null,
      ip: ctx.ip,
      user_agent: ctx.userAgent,
    })
    .returning('id')
    .executeTakeFirstOrThrow();
  return { id: row.id, token };
}

/** A CSRF token bound to the session: HMAC(session id), so nothing extra is stored. */
export const csrfTokenFor = (deps: IdentityDeps, sessionId: string) =>
  hmac(deps.keys.mac, `csrf:${sessionId}`).toString('base64url');

export const csrfMatches = (deps: IdentityDeps, sessionId: string, given: string) =>
  safeEqual(csrfTokenFor(deps, sessionId), given);

export const hasRecentSecondFactor = (deps: IdentityDeps, session: ValidSession) =>
  session.mfaAt !== null && deps.clock.now().getTime() - session.mfaAt.getTime() <= STEP_UP_WINDOW_MS;

export function createSessionService(deps: IdentityDeps) {
  return {
    /** The live session behind a token: not revoked, within absolute and idle limits, user active. */
    validate: (tenant: TenantRef, token: string): Promise<ValidSession | null> =>
      inTenant(deps, tenant, async (tx) => {
        if (!token.startsWith(`${SESSION_PREFIX}_`)) return null;
        const now = deps.clock.now();
        const row = await tx
          .selectFrom('sessions as s')
          .innerJoin('users as u', 'u.id', 's.user_id')
          .innerJoin('identity_settings as st', 'st.tenant_id', 's.tenant_id')
          .select([
            's.id',
            's.tenant_id',
            's.user_id',
            's.stage',
            's.kind',
            's.mfa_at',
            's.created_at',
            's.last_seen_at',
          ])
          .select(['u.email', 'u.role', 'st.session_idle_minutes'])
          .where('s.token_hash', '=', hashToken(token))
          .where('s.revoked_at', 'is', null)
          .where('s.expires_at', '>', now)
          .where('u.status', '=', 'active')
          .executeTakeFirst();
        if (!row) return null;
        if (now.getTime() - row.last_seen_at.getTime() > row.session_idle_minutes * 60_000) return null;
        if (now.getTime() - row.last_seen_at.getTime() > TOUCH_EVERY_MS) {
          await tx.updateTable('sessions').set({ last_seen_at: now }).where('id', '=', row.id).execute();
        }
        return {
          id: row.id,
          tenantId: row.tenant_id,
          userId: row.user_id,
          email: row.email,
          role: row.role,
          stage: row.stage,
          kind: row.kind,
          mfaAt: row.mfa_at,
          createdAt: row.created_at,
        };
      }),

    list: (tenant: TenantRef, userId: string) =>
      inTenant(deps, tenant, (tx) =>
        tx
          .selectFrom('sessions')
          .select(['id', 'kind', 'created_at', 'last_seen_at', 'ip', 'user_agent'])
          .where('user_id', '=', userId)
          .where('revoked_at', 'is', null)
          .where('expires_at', '>', deps.clock.now())
          .orderBy('created_at', 'desc')
          .execute(),
      ),

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
  let query = tx
    .updateTable('sessions')
    .set({ revoked_at: deps.clock.now() })
    .where('user_id', '=', userId)
    .where('revoked_at', 'is', null);
  if (keep) query = query.where('id', '!=', keep);
  const result = await query.executeTakeFirst();
  return Number(result.numUpdatedRows);
}
