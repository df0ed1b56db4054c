import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolStats } from '../db/index.ts';
import { routeConfig } from './route-config.ts';

export interface MetricsOptions {
  poolStats: () => PoolStats;
  engine: string;
}

declare module 'fastify' {
  interface FastifyInstance {
    metrics: Registry;
  }
}

/** One registry per app instance, so tests can build many apps in one process. */
export const metricsPlugin = fp<MetricsOptions>(
  async (app: FastifyInstance, { poolStats, engine }) => {
    const registry = new Registry();
    collectDefaultMetrics({ register: registry, prefix: 'rampart_' });
    const latency = new Histogram({
      name: 'rampart_http_request_duration_seconds',
      help: 'HTTP request latency by route template, method and status',
      labelNames: ['route', 'method', 'status'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers: [registry],
    });
    const pool = new Gauge({
      name: 'rampart_db_pool_connections',
      help: 'Database pool connections by state',
      labelNames: ['engine', 'state'],
      registers: [registry],
      collect() {
        const stats = poolStats();
        this.set({ engine, state: 'total' }, stats.total);
        this.set({ engine, state: 'idle' }, stats.idle);
        this.set({ engine, state: 'waiting' }, stats.waiting);
      },
    });
    void pool;
    app.decorate('metrics', registry);
    // One labelled child per (route, method, status), found by a string key: prom-client would otherwise
    // hash the label object on every observation. Bounded: route templates, not raw URLs, are labels.
    const children = new Map<string, { observe(value: number): void }>();
    app.addHook('onResponse', (request, reply, done) => {
      // The template, not the raw URL: raw paths would make label cardinality unbounded.
      const route = routeConfig(request).url ?? 'unmatched';
      const key = `${route} ${request.method} ${reply.statusCode}`;
      let child = children.get(key);
      if (!child) {
        child = latency.labels({ route, method: request.method, status: String(reply.statusCode) });
        children.set(key, child);
      }
      child.observe(reply.elapsedTime / 1000);
      done();
    });
  },
  { name: 'rampart-metrics' },
);
