import type { FastifyRequest } from 'fastify';

/** The matched route's config: its declarations (access, permission, rate limit...) and Fastify's url and method. */
export type RouteConfig = FastifyRequest['routeOptions']['config'];

declare module 'fastify' {
  interface FastifyRequest {
    /** Set by routeConfig(); decorated in app.ts so every request has the same shape. */
    matchedRouteConfig: RouteConfig | null;
  }
}

/**
 * The config of the route a request matched, read once per request. Fastify's `request.routeOptions`
 * builds a new 13-field object on every read, and about ten hooks ask for the config of each request.
 * (Fastify routes before the first hook runs, so the first read already sees the matched route.)
 */
export function routeConfig(request: FastifyRequest): RouteConfig {
  request.matchedRouteConfig ??= request.routeOptions.config ?? noConfig;
  return request.matchedRouteConfig;
}

const noConfig = Object.freeze({}) as RouteConfig;
