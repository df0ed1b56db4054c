import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import { openRedis, REDIS_KEEPALIVE_MS } from '../redis.ts';
import { LocalDispatch } from './local.ts';
import type { InvalidationBus } from './types.ts';
import { decodeMessage, encodeMessage } from './wire.ts';

export interface RedisBusOptions {
  url: string;
  channel: string;
  /** CLIENT SETNAME of the bus's connections. */
  name: string;
  onError: (error: unknown) => void;
}

const readyTimeoutMs = 5_000;

function whenReady(redis: Redis): Promise<void> {
  if (redis.status === 'ready') return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      redis.off('ready', onReady);
      reject(new Error('Redis did not become ready within 5 s (REDIS_URL)'));
    }, readyTimeoutMs);
    const onReady = () => {
      clearTimeout(timer);
      resolve();
    };
    redis.once('ready', onReady);
  });
}

/** How long a restored connection may take to confirm the subscription before it is made again. */
const RESUBSCRIBE_DEADLINE_MS = 5_000;

/**
 * Redis pub/sub on one channel. A subscribed connection can run no other command, so the subscriber is
 * a dedicated connection and publishing uses a second one. ioredis reconnects by itself; we subscribe
 * again ourselves (not autoResubscribe) so the reset handlers run only once the subscription is back,
 * and they run when the connection is lost as well. The publisher is an openRedis connection: a publish
 * to a Redis that stopped answering fails after REDIS_COMMAND_TIMEOUT_MS instead of hanging its caller.
 */
export async function openRedisBus(options: RedisBusOptions): Promise<InvalidationBus> {
  const node = randomUUID();
  const local = new LocalDispatch(options.onError);
  const subscriber = new Redis(options.url, {
    connectionName: `${options.name}-sub`,
    lazyConnect: true,
    autoResubscribe: false,
    maxRetriesPerRequest: null,
    connectTimeout: 2_000,
    // No command timeout here: a subscribed connection waits for messages, not for replies. Keepalive
    // notices a vanished peer, so 'close' resets the caches and the subscription is made again.
    keepAlive: REDIS_KEEPALIVE_MS,
    retryStrategy: (attempt) => Math.min(attempt * 100, 2_000),
  });
  subscriber.on('error', () => {});
  const publisher = openRedis(options.url, `${options.name}-pub`);
  let closed = false;
  let subscribed = false;
  // Set once the first subscription is in place; from then on, 'ready' means a restored connection.
  let initialDone = false;

  subscriber.on('message', (channel: string, payload: string) => {
    if (channel !== options.channel) return;
    const message = decodeMessage(payload);
    if (message && message.node !== node) local.deliver(message.topic, message.key);
  });
  subscriber.on('close', () => {
    if (closed || !subscribed) return;
    subscribed = false;
    local.reset();
  });
  // Each subscription attempt after a reconnect; an answer to an attempt given up on is ignored.
  let attempt = 0;
  const retrySubscription = (error: unknown) => {
    attempt += 1;
    options.onError(error);
    // Drop the connection: ioredis reconnects and 'ready' tries again.
    subscriber.disconnect(true);
  };
  subscriber.on('ready', () => {
    if (closed || subscribed || !initialDone) return;
    const mine = ++attempt;
    // A Redis that takes the connection and never answers SUBSCRIBE would leave this node unsubscribed
    // (its caches off) for good: past the deadline the connection is dropped and made again.
    const deadline = setTimeout(() => {
      if (mine === attempt && !closed)
        retrySubscription(new Error('Redis did not confirm SUBSCRIBE in time'));
    }, RESUBSCRIBE_DEADLINE_MS).unref();
    subscriber.subscribe(options.channel).then(
      () => {
        clearTimeout(deadline);
        if (mine !== attempt || closed) return;
        subscribed = true;
        // Subscribed again: whatever was published meanwhile is lost, so caches go.
        local.reset();
      },
      (error: unknown) => {
        clearTimeout(deadline);
        if (mine === attempt && !closed) retrySubscription(error);
      },
    );
  });

  try {
    await subscriber.connect();
    await whenReady(publisher);
    await subscriber.subscribe(options.channel);
    subscribed = true;
    initialDone = true;
  } catch (error) {
    subscriber.disconnect();
    publisher.disconnect();
    throw error;
  }

  return {
    async publish(topic, key) {
      if (closed) throw new Error('the invalidation bus is closed');
      const payload = encodeMessage({ node, topic, key });
      local.deliver(topic, key);
      await publisher.publish(options.channel, payload);
    },
    subscribe: (topic, handler) => local.subscribe(topic, handler),
    onReset: (handler) => local.onReset(handler),
    live: () => subscribed && !closed,
    async close() {
      if (closed) return;
      closed = true;
      await Promise.all([subscriber.quit().catch(() => {}), publisher.quit().catch(() => {})]);
    },
  };
}
