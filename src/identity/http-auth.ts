import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Actor } from '../platform/context.ts';
import { asTenantId } from '../platform/db/index.ts';
import { bearerToken } from '../platform/http/access.ts';
import { routeConfig } from '../platform/http/route-config.ts';
import type { IdentityDeps, TenantRef } from './deps.ts';
import { identityError } from './errors.ts';
import type { IdentityService } from './service.ts';
import { hasRecentSecondFactor, type ValidSession } from './session-stage.ts';
import { csrfMatches } from './session-tokens.ts';

export const SESSION_COOKIE = 'rampart_session';

/**
 * The session cookie's name. Whenever the cookie is Secure (an https PUBLIC_URL) it carries the
 * `__Secure-` prefix, which browsers accept only from a secure origin with the Secure flag: a sibling
 * subdomain or someone on plain http cannot plant one (login CSRF: a planted cookie with a longer path
 * is sent first, and the victim would work in the planter's account). `__Host-` would also need `Path=/`,
 * and the cookie is scoped to its tenant's pages. Only this name is read: a planted unprefixed
 * `rampart_session` is ignored.
 */
export const sessionCookieName = (secure: boolean) =>
  secure ? `__Secure-${SESSION_COOKIE}` : SESSION_COOKIE;

/** Cookies are Secure when the public address is https (production requires it). */
export const secureCookiesFor = (publicUrl: string) => publicUrl.startsWith('https://');

declare module 'fastify' {
  interface FastifyRequest {
    tenant: TenantRef | null;
    session: ValidSession | null;
  }
}

/** Resolves `:tenant` in the path to an active tenant (suspended tenants are refused here). */
export type TenantResolver = (slug: string) => Promise<TenantRef>;

const safeMethods = new Set(['GET', 'HEAD', 'OPTIONS']);

/**
 * One cookie of the request, the header parsed on first use. @fastify/cookie runs with `hook: false`
 * (app/pipeline.ts): most requests (API calls with bearer tokens, health checks) have no cookie anyone
 * reads, and parsing every request's header up front cost each of them more than a tenth of a bare
 * route's time.
 */
export function requestCookie(request: FastifyRequest, name: string): string | undefined {
  const header = request.headers.cookie;
  request.cookies ??= header ? request.server.parseCookie(header) : {};
  // Sent twice, the name is refused altogether: `__Secure-` does not forbid `Domain=`, so a sibling
  // subdomain can plant its own session under a longer path, which browsers send first and the parser
  // keeps (login CSRF: the victim would work in the planter's account).
  if (header && header.split(';').filter((pair) => pair.trimStart().startsWith(`${name}=`)).length > 1) {
    return undefined;
  }
  return request.cookies[name];
}

export function tenantSlugOf(request: FastifyRequest): string {
  const slug = (request.params as { tenant?: unknown }).tenant;
  if (typeof slug !== 'string') throw new Error(`route ${routeConfig(request).url} has no :tenant parameter`);
  return slug;
}

/**
 * The authenticator behind `access: 'user'` (and the user half of `'tenant'`): a session token from the
 * cookie (browsers) or the Authorization header (API clients), valid in this tenant, in an allowed
 * sign-in stage; cookie sessions must also carry the CSRF token on every state change. What the user may
 * do is then decided by the route's permission (src/access/).
 */
export function userAuthenticator(
  identity: IdentityService,
  resolveTenant: TenantResolver,
  publicUrl: string,
) {
  const cookieName = sessionCookieName(secureCookiesFor(publicUrl));
  return async (request: FastifyRequest): Promise<Actor | null> => {
    const tenant = await resolveTenant(tenantSlugOf(request));
    request.tenant = tenant;
    const bearer = bearerToken(request);
    const cookie = requestCookie(request, cookieName);
    const token = bearer ?? cookie;
    if (!token) return null;
    const session = await identity.sessions.validate(tenant, token);
    if (!session) return null;
    // A token presented in the header must be a bearer session, a cookie a cookie session: a stolen
    // cookie value replayed as a header would otherwise skip the CSRF check below.
    if ((bearer && session.kind !== 'bearer') || (!bearer && session.kind !== 'cookie')) return null;
    const stages = routeConfig(request).stages ?? ['active'];
    if (!stages.includes(session.stage)) {
      if (session.stage === 'password') {
        // Identified, so the refusal is audited against this user like the others below.
        request.actor = { type: 'user', id: session.userId };
        throw identityError(
          'password_expired',
          `Your password is older than this organisation allows: change it first, at /t/${tenant.slug}/account/password.`,
        );
      }
      throw identityError(
        'step_up_required',
        session.stage === 'enrol'
          ? 'Enrol a second factor first.'
          : 'Enter the code from your authenticator first.',
      );
    }
    // Identified from here on: a refusal below (CSRF, missing permission) is audited against this user.
    request.session = session;
    request.actor = { type: 'user', id: session.userId };
    if (session.kind === 'cookie' && !safeMethods.has(request.method)) {
      const given =
        request.headers['x-csrf-token'] ?? (request.body as { _csrf?: unknown } | undefined)?._csrf;
      if (typeof given !== 'string' || !csrfMatches(identity.deps, session.id, given)) {
        throw identityError('csrf_failed', 'Reload the page and submit the form again.');
      }
    }
    return { type: 'user', id: session.userId };
  };
}

/** The tenant and session the access hook attached: present on every `user` route. */
export function signedIn(request: FastifyRequest): { tenant: TenantRef; session: ValidSession } {
  if (!request.tenant || !request.session) throw new Error('user route reached without a session');
  return { tenant: request.tenant, session: request.session };
}

/**
 * Whether a signed-in user must give a second factor before a sensitive change (policy, roles,
 * approvals): whenever they have a confirmed authenticator and this session has not used it within the
 * last 5 minutes. The user decides, not the session: one signed in before the authenticator was
 * enrolled never used it, and must not be the way around it.
 */
export function needsUserStepUp(deps: Pick<IdentityDeps, 'clock'>, request: FastifyRequest): boolean {
  const { session } = request;
  return Boolean(session?.totpEnrolled) && !(session && hasRecentSecondFactor(deps, session));
}

export function setSessionCookie(reply: FastifyReply, token: string, secure: boolean, path: string) {
  reply.setCookie(sessionCookieName(secure), token, { httpOnly: true, secure, sameSite: 'lax', path });
}

export const toTenantRef = (t: { id: string; slug: string }): TenantRef => ({
  id: asTenantId(t.id),
  slug: t.slug,
});
