import type { FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';
import { collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { PoolStats } from '../db/index.ts';

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
    app.addHook('onResponse', async (request, reply) => {
      // The template, not the raw URL: raw paths would make label cardinality unbounded.
      const route = request.routeOptions.url ?? 'unmatched';
      latency.observe(
        { route, method: request.method, status: String(reply.statusCode) },
        reply.elapsedTime / 1000,
      );
    });
  },
  { name: 'rampart-metrics' },
);
