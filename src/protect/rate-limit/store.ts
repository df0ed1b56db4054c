import { CompiledQuery } from 'kysely';
import {
  type RateLimiterAbstract,
  RateLimiterMemory,
  RateLimiterPostgres,
  RateLimiterRedis,
} from 'rate-limiter-flexible';
import type { Config } from '../../platform/config/index.ts';
import type { Database } from '../../platform/db/index.ts';
import type { Redis } from '../../platform/redis.ts';
import type { Limit } from './policy.ts';

export type StoreKind = 'memory' | 'redis' | 'postgres';

/**
 * `auto`: Redis when REDIS_URL is set (cluster-wide, fastest shared store); else PostgreSQL when
 * DATABASE_URL is set (several nodes may share it); else memory (the embedded database means one node).
 */
export function storeKindFor(config: Config): StoreKind {
  if (config.rateLimitStore !== 'auto') return config.rateLimitStore as StoreKind;
  if (config.redisUrl) return 'redis';
  return config.databaseUrl ? 'postgres' : 'memory';
}

export interface StoreDeps {
  redis?: Redis;
  db?: Database;
}

export type LimiterFactory = (name: string, limit: Limit) => RateLimiterAbstract;

/**
 * rate-limiter-flexible's PostgreSQL store speaks to a `pool`: an object with query({ text, values }).
 * This one runs each statement through the app role's system scope (the counters are platform-wide),
 * so it works the same on PGlite and PostgreSQL and never needs owner rights (the table is a migration).
 */
function postgresClient(db: Database) {
  return {
    async query(q: { text: string; values?: unknown[] }) {
      const result = await db.withSystem((tx) => tx.executeQuery(CompiledQuery.raw(q.text, q.values ?? [])));
      return { rows: result.rows, rowCount: result.rows.length };
    },
  };
}

export function limiterFactory(kind: StoreKind, deps: StoreDeps): LimiterFactory {
  switch (kind) {
    case 'memory':
      return (name, { points, seconds }) =>
        new RateLimiterMemory({ keyPrefix: name, points, duration: seconds });
    case 'redis': {
      const redis = deps.redis;
      if (!redis) throw new Error('RATE_LIMIT_STORE=redis needs REDIS_URL');
      return (name, { points, seconds }) =>
        new RateLimiterRedis({
          storeClient: redis,
          keyPrefix: `rampart:rl:${name}`,
          points,
          duration: seconds,
          // Fail at once while Redis is down (the caller applies the fail-open/closed setting).
          rejectIfRedisNotReady: true,
        });
    }
    case 'postgres': {
      const db = deps.db;
      if (!db) throw new Error('RATE_LIMIT_STORE=postgres needs the database');
      const client = postgresClient(db);
      return (name, { points, seconds }) =>
        new RateLimiterPostgres({
          storeClient: client,
          storeType: 'pool',
          tableName: 'protect_rate_limits',
          tableCreated: true,
          keyPrefix: name,
          points,
          duration: seconds,
        });
    }
  }
}
