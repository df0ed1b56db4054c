import cors from '@fastify/cors';
import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { routeConfig } from '../../platform/http/route-config.ts';
import { protectError } from '../errors.ts';
import type { TenantPolicyService } from './service.ts';

export interface TenantPolicyPluginOptions {
  policies: TenantPolicyService;
  /** The active tenant of a slug (throws for unknown or suspended ones). */
  resolveTenant: (slug: string) => Promise<{ id: string }>;
}

const tenantApi = /^\/api\/v1\/t\/([^/?#]{1,64})\//;

/** What a tenant's listed origin may do (the origin itself is decided per request). */
const corsPolicy = {
  methods: ['GET', 'POST', 'PUT', 'PATCH', 'DELETE'],
  allowedHeaders: ['authorization', 'content-type', 'x-request-id'],
  exposedHeaders: ['ratelimit', 'ratelimit-policy', 'retry-after', 'x-request-id'],
  // Bearer tokens only: cookies belong to the hosted pages, never to cross-origin calls.
  credentials: false,
  maxAge: 600,
};

/**
 * CORS on the tenant API from each tenant's own origin list (decision 0041), and the admin address
 * allowlist: a route that needs a permission (anything but `self`) on a tenant is administration.
 */
export const tenantPolicyPlugin = fp<TenantPolicyPluginOptions>(
  async (app: FastifyInstance, { policies, resolveTenant }) => {
    // @fastify/cors answers preflights from its own OPTIONS route, which declares no access rule: it is
    // public by nature (a browser asking what is allowed) and limited like any public route.
    app.addHook('onRoute', (route) => {
      if (route.method === 'OPTIONS' && route.url.endsWith('*') && !route.config?.access) {
        route.config = { ...route.config, access: 'public' };
      }
    });
    const originsFor = async (slug: string): Promise<string[]> => {
      try {
        return (await policies.get((await resolveTenant(decodeURIComponent(slug))).id)).corsOrigins;
      } catch {
        return [];
      }
    };
    // Most requests carry no Origin (or are not on the tenant API): their answer is the same every time,
    // so it is built once and handed over synchronously instead of through a promise per request. With
    // `origin: false` @fastify/cors only adds `Vary: Origin` and reads no other option, so none is passed
    // (it copies the options object twice per request).
    const noOrigin = Object.freeze({ origin: false as const });
    await app.register(cors, {
      hideOptionsRoute: true,
      delegator: (request, callback) => {
        const origin = request.headers.origin;
        const slug = typeof origin === 'string' ? tenantApi.exec(request.url)?.[1] : undefined;
        if (typeof origin !== 'string' || !slug) return callback(null, noOrigin);
        originsFor(slug).then(
          (origins) => callback(null, origins.includes(origin) ? { ...corsPolicy, origin } : noOrigin),
          (error: Error) => callback(error, { origin: false }),
        );
      },
    });

    const checkAdminAddress = async (tenantId: string, ip: string) => {
      if ((await policies.get(tenantId)).adminAllowed(ip)) return;
      throw protectError(
        'admin_address_not_allowed',
        `This tenant allows administration only from its listed addresses, and ${ip} is not one of them.`,
      );
    };
    // Callback-style: most requests (public, self, operator routes) have nothing to check here.
    app.addHook('preHandler', (request, _reply, done) => {
      const { access, permission } = routeConfig(request);
      if ((access !== 'user' && access !== 'tenant') || !permission || permission === 'self') return done();
      const tenant = (request as { tenant?: { id: string } | null }).tenant;
      if (!tenant) return done();
      checkAdminAddress(tenant.id, request.ip).then(() => done(), done);
    });
  },
  { name: 'rampart-tenant-policy' },
);
