import formbody from '@fastify/formbody';
import type { FastifyPluginAsyncTypebox } from '@fastify/type-provider-typebox';
import { Type } from '@sinclair/typebox';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { toAppError } from '../../platform/http/error-handler.ts';
import { strictObject } from '../../platform/http/schemas.ts';
import { accountPages } from './account-pages.ts';
import { stylesheet } from './assets.ts';
import { browserSession, landingFor, type PagesOptions, pathsFor, seeOther, sendHtml } from './context.ts';
import { enrolPages } from './enrol-pages.ts';
import { pageError } from './errors.ts';
import { html } from './html.ts';
import { renderPage } from './layout.ts';
import { linkPages } from './link-pages.ts';
import { signInPages } from './sign-in-pages.ts';
import { signUpPages } from './sign-up-pages.ts';
import { twoStepPages } from './two-step-pages.ts';

export type { PagesOptions } from './context.ts';

// No inline script or style anywhere, so the policy needs no 'unsafe-inline'; the QR code is a data: image.
export const PAGE_CSP =
  "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/**
 * The hosted sign-in pages: server-rendered HTML forms for one tenant at /t/:tenant/... Encapsulated, so
 * the form-body parser, the security headers and the HTML error pages apply to these routes only (the
 * JSON API keeps refusing form bodies).
 */
export const identityPages: FastifyPluginAsyncTypebox<PagesOptions> = async (app, options) => {
  const allowedOrigin = new URL(options.publicUrl).origin;
  await app.register(formbody, { bodyLimit: 64 * 1024 });

  app.addHook('onSend', async (_request, reply) => {
    reply.header('content-security-policy', PAGE_CSP);
    reply.header('x-content-type-options', 'nosniff');
    // same-origin, not no-referrer: under no-referrer Chromium sends `Origin: null` with every form POST
    // (Fetch: the origin is serialised per the referrer policy), which would defeat the Origin check
    // below. same-origin gives other sites no Referer at all (tokens in link URLs never leave the site).
    reply.header('referrer-policy', 'same-origin');
    reply.header('x-frame-options', 'DENY');
    if (!reply.hasHeader('cache-control')) reply.header('cache-control', 'no-store');
  });

  // Login CSRF: the pre-login forms have no session to bind a token to. Browsers send Origin on every
  // POST, so a form posted from another site is refused here; the session cookie is SameSite=Lax too.
  app.addHook('onRequest', async (request) => {
    if (request.method !== 'POST') return;
    const from = originOf(request);
    if (from !== null && from !== allowedOrigin) {
      throw pageError(
        'cross_origin',
        'This form was sent from another site. Open the page here and try again.',
      );
    }
    const type = request.headers['content-type'] ?? '';
    if (!type.toLowerCase().startsWith('application/x-www-form-urlencoded')) {
      throw pageError(
        'form_only',
        'These pages accept form submissions (application/x-www-form-urlencoded).',
      );
    }
  });

  app.setErrorHandler(async (error: FastifyError, request, reply) => {
    const problem = toAppError(error);
    if (problem.spec.status >= 500) request.log.error({ err: error }, 'page failed');
    else request.log.info({ code: problem.code }, 'page refused');
    if (problem.spec.status === 403 && options.onDenied) await options.onDenied(request, problem);
    const slug = tenantParam(request);
    if (
      slug &&
      (problem.code === 'unauthenticated' ||
        problem.code === 'step_up_required' ||
        problem.code === 'password_expired')
    ) {
      return seeOther(reply, await whereToGo(options, request, slug));
    }
    return errorPage(reply, problem.spec.status, problem.spec.title, problem.detail, slug);
  });

  app.get(
    '/assets/rampart.css',
    {
      config: { access: 'public' },
      schema: { hide: true, querystring: strictObject({ v: Type.Optional(Type.String({ maxLength: 64 })) }) },
    },
    async (_request, reply) =>
      reply
        .type('text/css; charset=utf-8')
        // The URL carries the content hash (see assets.ts), so it never changes under a cached copy.
        .header('cache-control', 'public, max-age=31536000, immutable')
        .send(stylesheet.body),
  );

  await app.register(signInPages, options);
  await app.register(enrolPages, options);
  await app.register(accountPages, options);
  await app.register(twoStepPages, options);
  await app.register(linkPages, options);
  await app.register(signUpPages, options);
};

function originOf(request: FastifyRequest): string | null {
  const origin = request.headers.origin;
  if (typeof origin === 'string') return origin;
  const referer = request.headers.referer;
  if (typeof referer !== 'string') return null;
  try {
    return new URL(referer).origin;
  } catch {
    return 'invalid';
  }
}

const tenantParam = (request: FastifyRequest) => {
  const slug = (request.params as { tenant?: unknown } | undefined)?.tenant;
  return typeof slug === 'string' && /^[a-z][a-z0-9-]{1,38}[a-z0-9]$/.test(slug) ? slug : null;
};

/** A page that needs another sign-in stage sends the browser to the step its session is at. */
async function whereToGo(options: PagesOptions, request: FastifyRequest, slug: string): Promise<string> {
  const paths = pathsFor(slug);
  try {
    const tenant = request.tenant ?? (await options.findTenant(slug)).ref;
    const session = await browserSession(options.identity, tenant, request, options.publicUrl);
    return session ? landingFor(paths, session.stage) : paths.signIn;
  } catch {
    return paths.signIn;
  }
}

function errorPage(reply: FastifyReply, status: number, title: string, detail: string, slug: string | null) {
  const back = slug && html`<p><a href="${pathsFor(slug).account}">Continue</a></p>`;
  return sendHtml(reply, status, renderPage({ title, error: { message: detail } }, html`${back}`));
}
