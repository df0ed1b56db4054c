import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

/**
 * The policy for anything that is not a hosted page: API answers are JSON and never a document, so
 * nothing may load, frame or be framed. Hosted pages (identity/pages) send their own, looser CSP
 * (`style-src 'self'` etc., still without 'unsafe-inline'); a route's own header wins over this default.
 */
export const API_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

export interface SecurityHeadersOptions {
  /** Strict-Transport-Security max-age; 0 or null sends none (plain HTTP in development). */
  hstsMaxAgeSeconds: number | null;
}

/** Headers every answer carries unless the route set its own. */
export function securityHeaders(hstsMaxAgeSeconds: number | null): Record<string, string> {
  return {
    'content-security-policy': API_CSP,
    'x-content-type-options': 'nosniff',
    // no-referrer for the API; the hosted pages use same-origin (their Origin check needs it, see there).
    'referrer-policy': 'no-referrer',
    'x-frame-options': 'DENY',
    // Own browsing-context group: a page opened from another site cannot reach ours through window.opener.
    'cross-origin-opener-policy': 'same-origin',
    // No-cors loads (img, script) from other sites are refused; CORS-approved fetches are not affected.
    'cross-origin-resource-policy': 'same-origin',
    ...(hstsMaxAgeSeconds
      ? { 'strict-transport-security': `max-age=${hstsMaxAgeSeconds}; includeSubDomains` }
      : {}),
  };
}

/**
 * Sets the defaults (and `Cache-Control: no-store` on /api/) in the first onSend hook (root level), so encapsulated plugins that set a header
 * later (the pages' CSP and referrer policy) override it, and routes that set one themselves keep theirs.
 */
export const securityHeadersPlugin = fp<SecurityHeadersOptions>(
  async (app: FastifyInstance, { hstsMaxAgeSeconds }) => {
    const defaults = Object.entries(securityHeaders(hstsMaxAgeSeconds));
    // Callback-style: an async hook costs a promise per answer.
    app.addHook('onSend', (request, reply, payload, done) => {
      for (const [name, value] of defaults) if (!reply.hasHeader(name)) reply.header(name, value);
      // API answers carry session tokens, TOTP secrets and recovery codes: no cache (browser or proxy)
      // may keep a copy. An auth API has nothing worth caching, so every /api/ answer says so.
      if (request.url.startsWith('/api/') && !reply.hasHeader('cache-control'))
        reply.header('cache-control', 'no-store');
      done(null, payload);
    });
  },
  { name: 'rampart-security-headers' },
);
