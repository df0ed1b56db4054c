import type { ActionContext } from '../platform/context.ts';
import { hmac } from '../platform/crypto/keys.ts';
import { newToken, safeEqual } from '../platform/crypto/tokens.ts';
import type { IdentityDeps, Tx } from './deps.ts';
import type { IdentitySettings } from './policy.ts';
import type { StoredStage } from './session-stage.ts';

export const SESSION_PREFIX = 'rmp_s';

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

/** Under the current key or a previous one: a page rendered before a SECRET_KEY rotation still submits. */
export const csrfMatches = (deps: IdentityDeps, sessionId: string, given: string) =>
  [deps.keys.mac, ...(deps.keys.previousMacs ?? [])].some((key) =>
    safeEqual(hmac(key, `csrf:${sessionId}`).toString('base64url'), given),
  );
