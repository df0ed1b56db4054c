import { createInProcessBus } from './local.ts';
import { openPostgresBus } from './postgres.ts';
import { openRedisBus } from './redis.ts';
import type { BusKind, InvalidationBus } from './types.ts';

export { createInProcessBus } from './local.ts';
export type { BusKind, InvalidationBus } from './types.ts';

export interface InvalidationBusOptions {
  /** REDIS_URL: Redis pub/sub, preferred when set. */
  redisUrl?: string | undefined;
  /** DATABASE_URL: PostgreSQL LISTEN/NOTIFY when there is no Redis. Neither: in-process (one node). */
  databaseUrl?: string | undefined;
  /** One channel carries every topic; nodes of one deployment must agree on it. */
  channel?: string;
  /** Connection name (application_name / CLIENT SETNAME). */
  name?: string;
  /** Connection failures and throwing handlers; the bus keeps going. */
  onError?: (error: unknown) => void;
}

export function invalidationBusKind(options: InvalidationBusOptions): BusKind {
  if (options.redisUrl) return 'redis';
  if (options.databaseUrl) return 'postgres';
  return 'in-process';
}

/**
 * Cross-node cache invalidation: Redis when REDIS_URL is set, else PostgreSQL when DATABASE_URL is set,
 * else in-process (the embedded database is one node by construction).
 */
export async function openInvalidationBus(options: InvalidationBusOptions = {}): Promise<InvalidationBus> {
  const channel = options.channel ?? 'rampart_invalidate';
  const name = options.name ?? 'rampart-bus';
  const onError = options.onError ?? (() => {});
  if (options.redisUrl) return openRedisBus({ url: options.redisUrl, channel, name, onError });
  if (options.databaseUrl) return openPostgresBus({ url: options.databaseUrl, channel, name, onError });
  return createInProcessBus(onError);
}
export { createInvalidatedCache, type InvalidatedCache, type InvalidatedCacheOptions } from './cache.ts';
