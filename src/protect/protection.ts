import type { FastifyBaseLogger } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { recordAuditEvent } from '../audit/index.ts';
import type { Config } from '../platform/config/index.ts';
import type { Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { openRedis, type Redis } from '../platform/redis.ts';
import { createRateLimiters, type RateLimiters, type StoreFailure } from './rate-limit/limiters.ts';
import { applyOverrides, defaultLimits } from './rate-limit/policy.ts';
import { limiterFactory, type StoreKind, storeKindFor } from './rate-limit/store.ts';

export interface ProtectionDeps {
  config: Config;
  db: Database;
  clock: Clock;
  log: FastifyBaseLogger;
}

export interface Protection {
  store: StoreKind;
  limiters: RateLimiters;
  /** Waits (at most a few seconds) for the shared store's first connection; the fail modes cover the rest. */
  ready(): Promise<void>;
  /** Adds the Protect counters to the app's registry (called once the metrics plugin exists). */
  registerMetrics(registry: Registry): void;
  close(): Promise<void>;
}

/** How often one node writes "the counter store is unreachable" to the audit trail per route class. */
const AUDIT_EVERY_MS = 60_000;

/**
 * Builds the shared protections from the configuration: the rate limiters on the chosen store (opening
 * its own Redis connection when that store is Redis). Store failures are logged, counted and audited.
 */
export function createProtection({ config, db, clock, log }: ProtectionDeps): Protection {
  const limits = defaultLimits();
  const problems = applyOverrides(limits, config.rateLimits);
  if (problems.length > 0) throw new Error(problems.join('\n'));
  const store = storeKindFor(config);
  if (store === 'redis' && !config.redisUrl) throw new Error('RATE_LIMIT_STORE=redis needs REDIS_URL');
  const redis: Redis | undefined =
    store === 'redis' && config.redisUrl ? openRedis(config.redisUrl, 'rampart-rate-limit') : undefined;

  let storeErrors: Counter<'store' | 'class'> | null = null;
  const lastAudit = new Map<string, number>();
  const onStoreFailure = (failure: StoreFailure) => {
    storeErrors?.inc({ store: failure.store, class: failure.routeClass });
    const now = clock.now().getTime();
    if (now - (lastAudit.get(failure.routeClass) ?? 0) < AUDIT_EVERY_MS) return;
    lastAudit.set(failure.routeClass, now);
    const mode = failure.failClosed ? 'closed' : 'open';
    log.error(
      { err: failure.error, store: failure.store, routeClass: failure.routeClass, mode },
      'rate-limit store unreachable',
    );
    db.withSystem((tx) =>
      recordAuditEvent(
        tx,
        clock,
        { actor: { type: 'system', id: 'protect' }, ip: null, userAgent: null, requestId: null },
        {
          tenantId: null,
          action: 'protect.ratelimit.store_unavailable',
          outcome: 'failure',
          details: { store: failure.store, routeClass: failure.routeClass, mode },
        },
      ),
    ).catch((error: unknown) => log.error({ err: error }, 'could not audit the rate-limit store failure'));
  };

  const limiters = createRateLimiters({
    limits,
    factory: limiterFactory(store, { ...(redis ? { redis } : {}), db }),
    store,
    failClosed: new Set(config.rateLimitFailClosed),
    onStoreFailure,
  });

  return {
    store,
    limiters,
    async ready() {
      if (!redis || redis.status === 'ready') return;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          redis.off('ready', done);
          redis.off('error', done);
          resolve();
        };
        const timer = setTimeout(done, 3_000);
        redis.once('ready', done);
        redis.once('error', done);
      });
    },
    registerMetrics(registry) {
      storeErrors = new Counter({
        name: 'rampart_rate_limit_store_errors_total',
        help: 'Rate-limit checks that could not reach the shared counter store',
        labelNames: ['store', 'class'],
        registers: [registry],
      });
    },
    async close() {
      redis?.disconnect();
    },
  };
}
