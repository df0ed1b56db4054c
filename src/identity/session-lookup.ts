import { sql } from 'kysely';
import { hashToken } from '../platform/crypto/tokens.ts';
import { type IdentityDeps, inTenant, type TenantRef } from './deps.ts';
import { asNow, type CachedSession, sessionCache } from './session-cache.ts';
import { currentStage, secondFactorRequired, type ValidSession } from './session-stage.ts';
import { SESSION_PREFIX } from './session-tokens.ts';

// last_seen_at is written at most this often: a write per request would cost more than it tells.
export const TOUCH_EVERY_MS = 60_000;

/**
 * When a session ends at the latest: its stored expiry, or sooner when the tenant has since shortened
 * the absolute limit (the limit is the tenant's current setting, not the one at sign-in).
 */
const absoluteEnd = (createdAt: Date, expiresAt: Date, absoluteHours: number) =>
  Math.min(expiresAt.getTime(), createdAt.getTime() + absoluteHours * 3_600_000);

/** When a password changed at `changedAt` passes a maximum age of `maxAgeDays` (as sign-in decides). */
export function passwordExpiry(changedAt: Date | null, maxAgeDays: number | null): number | null {
  if (changedAt === null || maxAgeDays === null) return null;
  return changedAt.getTime() + maxAgeDays * 86_400_000;
}

/** Finding live sessions: the one behind a token (cached per node) and a user's list. */
export function createSessionLookup(deps: IdentityDeps) {
  const cache = sessionCache(deps);

  /** Records a use in last_seen_at, at most once a minute per session and node. */
  const touch = (tenant: TenantRef, id: string, now: Date) =>
    inTenant(deps, tenant, (tx) =>
      tx
        .updateTable('sessions')
        .set({ last_seen_at: now })
        .where('id', '=', id)
        .where('last_seen_at', '<', now)
        .execute(),
    );

  /** The database's answer, which also refreshes this node's copy. */
  const load = (tenant: TenantRef, hash: Buffer, key: string, now: Date) => {
    const mark = cache.mark();
    return inTenant(deps, tenant, async (tx) => {
      const row = await tx
        .selectFrom('sessions as s')
        .innerJoin('users as u', 'u.id', 's.user_id')
        .innerJoin('identity_settings as st', 'st.tenant_id', 's.tenant_id')
        .leftJoin('user_totp as t', 't.user_id', 's.user_id')
        .select([
          's.id',
          's.tenant_id',
          's.user_id',
          's.stage',
          's.kind',
          's.mfa_at',
          's.created_at',
          's.last_seen_at',
          's.expires_at',
        ])
        .select(['u.email', 'u.role', 'st.session_idle_minutes', 'st.session_absolute_hours'])
        .select(['st.mfa_required', 't.confirmed_at as totp_confirmed_at'])
        .select(['u.password_changed_at', 'st.max_age_days'])
        .where('s.token_hash', '=', hash)
        .where('s.revoked_at', 'is', null)
        .where('s.expires_at', '>', now)
        .where('u.status', '=', 'active')
        .executeTakeFirst();
      if (!row) return null;
      const expiresAt = absoluteEnd(row.created_at, row.expires_at, row.session_absolute_hours);
      if (now.getTime() >= expiresAt) return null;
      const idleMs = row.session_idle_minutes * 60_000;
      if (now.getTime() - row.last_seen_at.getTime() > idleMs) return null;
      let lastSeenStored = row.last_seen_at.getTime();
      if (now.getTime() - lastSeenStored > TOUCH_EVERY_MS) {
        await tx.updateTable('sessions').set({ last_seen_at: now }).where('id', '=', row.id).execute();
        lastSeenStored = now.getTime();
      }
      const totpEnrolled = row.totp_confirmed_at !== null;
      const required = secondFactorRequired(row.mfa_required, row.role);
      const session: ValidSession = Object.freeze({
        id: row.id,
        tenantId: row.tenant_id,
        userId: row.user_id,
        email: row.email,
        role: row.role,
        stage: currentStage(row.stage, row.mfa_at, required, totpEnrolled),
        kind: row.kind,
        mfaAt: row.mfa_at,
        createdAt: row.created_at,
        totpEnrolled,
      });
      const entry: CachedSession = {
        session,
        expiresAt,
        idleMs,
        lastSeenStored,
        lastUsed: now.getTime(),
        passwordExpiresAt: passwordExpiry(row.password_changed_at, row.max_age_days),
        expiredView: null,
      };
      cache.put(key, entry, mark, now.getTime());
      return asNow(entry, now.getTime());
    });
  };

  return {
    /**
     * The live session behind a token: not revoked, within absolute and idle limits, user active.
     * Answered from this node's cache when it holds the session (no database round trip): the absolute
     * limit is checked exactly against the cached expiry; a session that looks idle here is re-read,
     * since another node may have seen it used; last_seen_at is written at most once a minute.
     */
    async validate(tenant: TenantRef, token: string): Promise<ValidSession | null> {
      if (!token.startsWith(`${SESSION_PREFIX}_`)) return null;
      const hash = hashToken(token);
      // Looked up by the token's SHA-256, like the database index: timing can tell at most something
      // about a hash, and nobody can choose a token whose hash they want.
      const key = hash.toString('base64');
      const now = deps.clock.now();
      const nowMs = now.getTime();
      const hit = cache.get(key, nowMs);
      if (!hit) return load(tenant, hash, key, now);
      // A token of another tenant's session proves nothing here (the database path finds nothing too).
      if (hit.session.tenantId !== tenant.id) return null;
      if (nowMs >= hit.expiresAt) {
        cache.delete(key);
        return null;
      }
      if (nowMs - Math.max(hit.lastUsed, hit.lastSeenStored) > hit.idleMs)
        return load(tenant, hash, key, now);
      hit.lastUsed = Math.max(hit.lastUsed, nowMs);
      if (nowMs - hit.lastSeenStored > TOUCH_EVERY_MS) {
        await touch(tenant, hit.session.id, now);
        hit.lastSeenStored = nowMs;
      }
      return asNow(hit, nowMs);
    },

    list: (tenant: TenantRef, userId: string) =>
      inTenant(deps, tenant, (tx) => {
        const now = deps.clock.now();
        return tx
          .selectFrom('sessions as s')
          .innerJoin('identity_settings as st', 'st.tenant_id', 's.tenant_id')
          .select(['s.id', 's.kind', 's.created_at', 's.last_seen_at', 's.ip', 's.user_agent'])
          .where('s.user_id', '=', userId)
          .where('s.revoked_at', 'is', null)
          .where('s.expires_at', '>', now)
          .where(sql<boolean>`s.created_at + st.session_absolute_hours * interval '1 hour' > ${now}`)
          .orderBy('s.created_at', 'desc')
          .execute();
      }),
  };
}
