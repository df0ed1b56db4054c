import { sql } from 'kysely';
import { createInvalidatedCache } from '../platform/bus/index.ts';
import type { ActionContext } from '../platform/context.ts';
import { hmac } from '../platform/crypto/keys.ts';
import { hashToken, newToken, safeEqual } from '../platform/crypto/tokens.ts';
import { afterCommit, audit, type IdentityDeps, inTenant, type TenantRef, type Tx } from './deps.ts';
import { identityError } from './errors.ts';
import type { IdentitySettings } from './policy.ts';
import type { UserRole } from './tables.ts';

export const SESSION_PREFIX = 'rmp_s';
// last_seen_at is written at most this often: a write per request would cost more than it tells.
export const TOUCH_EVERY_MS = 60_000;
/** Bus topic of session invalidations; keys are `session:<id>`, `user:<id>` or `tenant:<id>`. */
export const SESSIONS_TOPIC = 'identity.sessions';
// Validated sessions kept per node. The bus removes them on every change; the TTL only bounds a lost message.
const CACHE_TTL_MS = 30_000;
const CACHE_MAX_ENTRIES = 20_000;
const STEP_UP_WINDOW_MS = 5 * 60_000;

/** The stage a session is stored in: what its sign-in left to do. */
export type StoredStage = 'mfa' | 'enrol' | 'active';
/**
 * The stage a session is in now: its stored stage, or `password` when it is `active` but the user's
 * password has passed the tenant's maximum age (computed at each request; only changing the password,
 * seeing and ending the session are allowed until then).
 */
export type SessionStage = StoredStage | 'password';

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
  /** The user has a confirmed authenticator (whether or not this session used it). */
  totpEnrolled: boolean;
}

/** Whether the tenant's 2FA enforcement covers a user with this role label. */
export const secondFactorRequired = (policy: IdentitySettings['mfa_required'], role: UserRole) =>
  policy === 'all' || (policy === 'staff' && role !== 'member');

/**
 * The stage a session is in now. One signed in without a second factor while 2FA was not asked of the
 * user falls back to the step a sign-in would give today (`mfa` with an authenticator, else `enrol`)
 * once the tenant asks it: enforcement turned on, or a staff role granted. Its signed-in routes then
 * answer as for that stage, until the second factor is given or enrolled.
 */
export function currentStage(
  stored: StoredStage,
  mfaAt: Date | null,
  required: boolean,
  totpEnrolled: boolean,
): StoredStage {
  if (stored !== 'active' || mfaAt !== null || !required) return stored;
  return totpEnrolled ? 'mfa' : 'enrol';
}

/** When a session began (the password sign-in) and when it ends at the latest. */
export interface SessionLifetime {
  createdAt: Date;
  expiresAt: Date;
}

export async function createSession(
  deps: IdentityDeps,
  tx: Tx,
  settings: IdentitySettings,
  input: {
    tenantId: string;
    userId: string;
    stage: StoredStage;
    kind: 'cookie' | 'bearer';
    mfaAt: Date | null;
    /** A rotated session keeps the sign-in time and absolute expiry of the one it replaces. */
    carried?: SessionLifetime;
  },
  ctx: ActionContext,
): Promise<{ id: string; token: string }> {
  const now = deps.clock.now();
  const lifetime = input.carried ?? {
    createdAt: now,
    expiresAt: new Date(now.getTime() + settings.session_absolute_hours * 3_600_000),
  };
  const { token, hash } = newToken(SESSION_PREFIX);
  const row = await tx
    .insertInto('sessions')
    .values({
      tenant_id: input.tenantId,
      user_id: input.userId,
      token_hash: hash,
      stage: input.stage,
      kind: input.kind,
      created_at: lifetime.createdAt,
      last_seen_at: now,
      expires_at: lifetime.expiresAt,
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

export const hasRecentSecondFactor = (deps: Pick<IdentityDeps, 'clock'>, session: ValidSession) =>
  session.mfaAt !== null && deps.clock.now().getTime() - session.mfaAt.getTime() <= STEP_UP_WINDOW_MS;

/**
 * When a session ends at the latest: its stored expiry, or sooner when the tenant has since shortened
 * the absolute limit (the limit is the tenant's current setting, not the one at sign-in).
 */
const absoluteEnd = (createdAt: Date, expiresAt: Date, absoluteHours: number) =>
  Math.min(expiresAt.getTime(), createdAt.getTime() + absoluteHours * 3_600_000);

/** What a node keeps about a validated session, by token hash. */
interface CachedSession {
  session: ValidSession;
  /** absoluteEnd under the settings read with it; a settings change drops the entry (`tenant:<id>`). */
  expiresAt: number;
  idleMs: number;
  /** last_seen_at as this node last read or wrote it. */
  lastSeenStored: number;
  /** The latest use this node has seen. */
  lastUsed: number;
  /** When the user's password passes the tenant's maximum age (null: no maximum, or never set). */
  passwordExpiresAt: number | null;
  /** The session as seen once the password has expired (stage `password`), made on first need. */
  expiredView: ValidSession | null;
}

/** When a password changed at `changedAt` passes a maximum age of `maxAgeDays` (as sign-in decides). */
export function passwordExpiry(changedAt: Date | null, maxAgeDays: number | null): number | null {
  if (changedAt === null || maxAgeDays === null) return null;
  return changedAt.getTime() + maxAgeDays * 86_400_000;
}

/**
 * The session at `nowMs`: an `active` one whose password has passed the maximum age is in stage
 * `password`. A password change moves password_changed_at and drops the user's cached sessions
 * (`user:<id>`), and a settings change drops the tenant's, so the entry is never older than either.
 */
function asNow(entry: CachedSession, nowMs: number): ValidSession {
  const { session, passwordExpiresAt } = entry;
  if (session.stage !== 'active' || passwordExpiresAt === null || nowMs <= passwordExpiresAt) return session;
  entry.expiredView ??= Object.freeze({ ...session, stage: 'password' as const });
  return entry.expiredView;
}

/**
 * Tells every node that sessions changed, once the transaction commits: one session (`session:<id>`),
 * all of a user's (`user:<id>`: revoke-all, password change, anything that changes the user's status
 * or role) or all of a tenant's (`tenant:<id>`: session settings).
 */
export function sessionsChanged(
  deps: IdentityDeps,
  tx: Tx,
  key: `${'session' | 'user' | 'tenant'}:${string}`,
) {
  // Waited for before the request answers (inTenant awaits it): Redis PUBLISH replies once every
  // subscriber's connection has the message, PostgreSQL NOTIFY once it is committed. Local delivery
  // happens inside publish, synchronously; only the broker hop can fail. The change has committed, so
  // the request still succeeds; other nodes then rely on their reset on reconnect and the TTL.
  afterCommit(tx, () =>
    deps.bus.publish(SESSIONS_TOPIC, key).catch((error: unknown) => deps.onBackgroundError?.(error)),
  );
}

function sessionCache(deps: IdentityDeps) {
  const cache = createInvalidatedCache<CachedSession>({
    bus: deps.bus,
    topic: SESSIONS_TOPIC,
    maxEntries: CACHE_MAX_ENTRIES,
    ttlMs: CACHE_TTL_MS,
    onMessage(key, cache) {
      const [kind, id] = key.split(':', 2);
      if (kind === 'session') cache.deleteWhere((c) => c.session.id === id);
      else if (kind === 'user') cache.deleteWhere((c) => c.session.userId === id);
      else if (kind === 'tenant') cache.deleteWhere((c) => c.session.tenantId === id);
      else cache.clear();
    },
  });
  // A role change moves the user's role label, and with it whether 2FA is asked of them: Access
  // announces every permission change per tenant, and this node then re-reads that tenant's sessions.
  const { permissionsTopic } = deps;
  if (permissionsTopic) {
    deps.bus.subscribe(permissionsTopic, (tenantId) =>
      cache.deleteWhere((c) => c.session.tenantId === tenantId),
    );
  }
  return cache;
}

export function createSessionService(deps: IdentityDeps) {
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
