import { Redis } from 'ioredis';

export type { Redis } from 'ioredis';

/**
 * How long one command may wait for its reply before it fails. A Redis that stops answering with the
 * connection still open (a paused primary during failover, a partition that drops packets without a
 * reset) would otherwise leave every command pending for ever, and with it every request that waits on
 * one: the caller's fail-open/closed handling only runs once the command fails. A healthy Redis answers
 * in well under a millisecond, so this is only ever reached by a stall.
 */
export const REDIS_COMMAND_TIMEOUT_MS = 500;

/**
 * TCP keepalive on every Redis connection (initial delay): a peer that vanished (host gone, no reset)
 * is noticed by the kernel and the connection is reopened, instead of waiting on a dead socket.
 */
export const REDIS_KEEPALIVE_MS = 10_000;

/**
 * Opens the shared Redis connection named by REDIS_URL. Commands fail fast while Redis is down
 * (no offline queue) and after REDIS_COMMAND_TIMEOUT_MS while it does not answer: each caller decides
 * whether that fails open or closed, and says so. Reconnection is automatic, with a capped backoff.
 * Not for a subscriber connection: it waits for messages, not replies (bus/redis.ts opens its own).
 */
export function openRedis(url: string, name = 'rampart'): Redis {
  const redis = new Redis(url, {
    connectionName: name,
    lazyConnect: false,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 1,
    connectTimeout: 2_000,
    commandTimeout: REDIS_COMMAND_TIMEOUT_MS,
    keepAlive: REDIS_KEEPALIVE_MS,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
  });
  // Without a listener ioredis reports every failed reconnect as an unhandled 'error' event.
  redis.on('error', () => {});
  return redis;
}
