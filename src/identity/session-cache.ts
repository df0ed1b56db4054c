import { createInvalidatedCache } from '../platform/bus/index.ts';
import { afterCommit, type IdentityDeps, type Tx } from './deps.ts';
import type { ValidSession } from './session-stage.ts';

/** Bus topic of session invalidations; keys are `session:<id>`, `user:<id>` or `tenant:<id>`. */
export const SESSIONS_TOPIC = 'identity.sessions';
// Validated sessions kept per node. The bus removes them on every change; the TTL only bounds a lost message.
const CACHE_TTL_MS = 30_000;
const CACHE_MAX_ENTRIES = 20_000;

/** What a node keeps about a validated session, by token hash. */
export interface CachedSession {
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

/**
 * The session at `nowMs`: an `active` one whose password has passed the maximum age is in stage
 * `password`. A password change moves password_changed_at and drops the user's cached sessions
 * (`user:<id>`), and a settings change drops the tenant's, so the entry is never older than either.
 */
export function asNow(entry: CachedSession, nowMs: number): ValidSession {
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

export function sessionCache(deps: IdentityDeps) {
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
