import type { FastifyReply, FastifyRequest } from 'fastify';
import { AppError } from '../../platform/http/problem.ts';
import type { TenantRef } from '../deps.ts';
import { requestCookie, secureCookiesFor, sessionCookieName, setSessionCookie } from '../http-auth.ts';
import { signedInRecently } from '../reauth.ts';
import type { IdentityService } from '../service.ts';
import type { SessionStage, ValidSession } from '../session-stage.ts';
import { csrfTokenFor } from '../session-tokens.ts';
import { type FormError, field } from './layout.ts';

export interface PageTenant {
  ref: TenantRef;
  name: string;
}

export interface PagesOptions {
  identity: IdentityService;
  /** The active tenant behind a slug, with its display name (suspended and unknown tenants throw). */
  findTenant: (slug: string) => Promise<PageTenant>;
  /** PUBLIC_URL: its origin is the only one allowed to post the forms; https makes cookies Secure. */
  publicUrl: string;
  /** Records a refused (403) request by an identified caller; the audit capability supplies it. */
  onDenied?: (request: FastifyRequest, error: AppError) => Promise<void>;
}

/** Every URL of the hosted pages of one tenant. */
export const pathsFor = (slug: string) => {
  const base = `/t/${encodeURIComponent(slug)}`;
  return {
    base,
    signIn: `${base}/signin`,
    code: `${base}/signin/code`,
    signOut: `${base}/signout`,
    enrol: `${base}/mfa/enrol`,
    enrolStart: `${base}/mfa/enrol/start`,
    account: `${base}/account`,
    password: `${base}/account/password`,
    sessions: `${base}/account/sessions`,
    twoStep: `${base}/account/two-step`,
    revoke: (id: string) => `${base}/account/sessions/${encodeURIComponent(id)}/revoke`,
    signUp: `${base}/signup`,
    invite: `${base}/invite`,
    verify: `${base}/verify-email`,
    forgot: `${base}/forgot`,
    reset: `${base}/reset`,
  };
};
export type Paths = ReturnType<typeof pathsFor>;

/** Where a session in this stage belongs. */
export function landingFor(paths: Paths, stage: SessionStage, passwordExpired = false): string {
  if (stage === 'mfa') return passwordExpired ? `${paths.code}?next=password` : paths.code;
  if (stage === 'enrol') return paths.enrol;
  if (stage === 'password') return paths.password;
  return passwordExpired ? paths.password : paths.account;
}

export const sendHtml = (reply: FastifyReply, status: number, body: string) =>
  reply.status(status).type('text/html; charset=utf-8').send(body);

export const seeOther = (reply: FastifyReply, location: string) => reply.redirect(location, 303);

/** The cookie is scoped to the tenant's pages: another tenant's pages (and the JSON API) never see it. */
export function cookieJar(publicUrl: string) {
  const secure = secureCookiesFor(publicUrl);
  return {
    set: (reply: FastifyReply, slug: string, token: string) =>
      setSessionCookie(reply, token, secure, pathsFor(slug).base),
    clear: (reply: FastifyReply, slug: string) =>
      reply.clearCookie(sessionCookieName(secure), {
        path: pathsFor(slug).base,
        httpOnly: true,
        secure,
        sameSite: 'lax',
      }),
  };
}

/** The browser's session on this tenant's pages, if it has a live one (public pages look, never require). */
export async function browserSession(
  identity: IdentityService,
  tenant: TenantRef,
  request: FastifyRequest,
  publicUrl: string,
): Promise<ValidSession | null> {
  const token = requestCookie(request, sessionCookieName(secureCookiesFor(publicUrl)));
  if (!token) return null;
  const session = await identity.sessions.validate(tenant, token);
  return session?.kind === 'cookie' ? session : null;
}

export const csrfFor = (identity: IdentityService, session: ValidSession) =>
  csrfTokenFor(identity.deps, session.id);

/**
 * Turns an expected failure (wrong password, rejected password, used link...) into the message the form
 * shows, and sets the reply's status; anything unexpected propagates to the error page.
 */
export function formFailure(reply: FastifyReply, error: unknown): FormError {
  if (!(error instanceof AppError) || (error.spec.status >= 500 && error.code !== 'busy')) throw error;
  reply.status(error.spec.status);
  if (error.extra.retryAfterSeconds !== undefined)
    reply.header('retry-after', String(error.extra.retryAfterSeconds));
  const rules = error.code === 'password_rejected' ? (error.extra.errors ?? []).map((e) => e.message) : [];
  return rules.length > 0
    ? { message: 'The password does not meet the policy:', details: rules }
    : { message: error.detail };
}

/**
 * The current-password field of a form that asks for the password again once the sign-in is more than
 * 5 minutes old (reauth.ts): nothing for a fresh sign-in.
 */
export const reauthPasswordField = (identity: IdentityService, session: ValidSession, error?: FormError) =>
  !signedInRecently(identity.deps, session) &&
  field({
    name: 'currentPassword',
    label: 'Current password',
    type: 'password',
    autocomplete: 'current-password',
    maxLength: 1024,
    invalid: Boolean(error),
    hint: 'You signed in a while ago: confirm it is you.',
  });
