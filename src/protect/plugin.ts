import type { Server as HttpsServer } from 'node:https';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import type { Config } from '../platform/config/index.ts';
import { clientAddressPlugin } from './client-address.ts';
import { securityHeadersPlugin } from './headers.ts';
import type { Protection } from './protection.ts';
import { rateLimitPlugin } from './rate-limit/plugin.ts';
import { blockListPlugin } from './reputation/plugin.ts';
import { tlsFilesOf, watchTlsFiles } from './tls.ts';

export interface ProtectOptions {
  config: Config;
  protection: Protection;
}

/** HSTS only where the browser reached us over HTTPS: our own TLS, or a proxy's behind an https PUBLIC_URL. */
function hstsFor(config: Config): number | null {
  const https = tlsFilesOf(config) !== null || config.publicUrl.startsWith('https://');
  return https && config.hstsMaxAgeSeconds > 0 ? config.hstsMaxAgeSeconds : null;
}

/**
 * The cross-cutting protections, registered at the root (after metrics, before any route) so they reach
 * every route: security headers, rate limits, the TLS certificate watcher.
 */
export const protectPlugin = fp<ProtectOptions>(
  async (app: FastifyInstance, { config, protection }) => {
    protection.useLogger(app.log);
    protection.registerMetrics(app.metrics);
    app.addHook('onClose', () => protection.close());
    await protection.ready();
    await app.register(securityHeadersPlugin, { hstsMaxAgeSeconds: hstsFor(config) });
    if (config.trustProxy.length > 0) await app.register(clientAddressPlugin);
    if (config.ipBlocklists.length > 0) await app.register(blockListPlugin, { protection });
    if (config.rateLimitEnabled) {
      await app.register(rateLimitPlugin, {
        limiters: protection.limiters,
        onLimited: (routeClass, scope) => protection.countLimited(routeClass, scope),
      });
    }
    if (tlsFilesOf(config)) {
      // With the https option Fastify's server is a node:https Server (its type says http).
      const reloader = watchTlsFiles(app.server as unknown as HttpsServer, config, app.log);
      app.addHook('onClose', async () => reloader?.stop());
    }
  },
  { name: 'rampart-protect', dependencies: ['rampart-metrics'] },
);
