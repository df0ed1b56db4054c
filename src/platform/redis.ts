import { Redis } from 'ioredis';

export type { Redis } from 'ioredis';

/**
 * Opens the shared Redis connection named by REDIS_URL. Commands fail fast while Redis is down
 * (no offline queue): each caller decides whether that fails open or closed, and says so.
 * Reconnection is automatic, with a capped backoff.
 */
export function openRedis(url: string, name = 'rampart'): Redis {
  const redis = new Redis(url, {
    connectionName: name,
    lazyConnect: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
  });
  // Without a listener ioredis reports every failed reconnect as an unhandled 'error' event.
  redis.on('error', () => {});
  return redis;
}
