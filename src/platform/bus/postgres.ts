import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { LocalDispatch } from './local.ts';
import type { InvalidationBus } from './types.ts';
import { decodeMessage, encodeMessage } from './wire.ts';

export interface PostgresBusOptions {
  url: string;
  channel: string;
  /** application_name of the bus's connections, so an operator can find them in pg_stat_activity. */
  name: string;
  onError: (error: unknown) => void;
}

const maxBackoffMs = 2_000;

/**
 * LISTEN/NOTIFY on one channel. The listener is a dedicated connection (a pooled one would hand LISTEN
 * to whichever unit of work comes next); it reconnects with a capped backoff, and every loss and every
 * restored connection fires the reset handlers, since notifications sent meanwhile are gone for good.
 * Publishing goes through a separate one-connection pool, so a broken listener does not stop this node
 * from telling the others.
 */
export async function openPostgresBus(options: PostgresBusOptions): Promise<InvalidationBus> {
  const node = randomUUID();
  const local = new LocalDispatch(options.onError);
  // Requests that change what other nodes cache wait for their message to be published: bounded, so an
  // unreachable server fails the publish (reported; caches fall back on the TTL) instead of the request.
  const publisher = new pg.Pool({
    connectionString: options.url,
    max: 1,
    application_name: options.name,
    connectionTimeoutMillis: 5_000,
    query_timeout: 5_000,
  });
  publisher.on('error', () => {});
  let listener: pg.Client | null = null;
  let closed = false;
  let retry: NodeJS.Timeout | null = null;

  const receive = (payload: string | undefined) => {
    const message = payload ? decodeMessage(payload) : null;
    // Our own messages were delivered locally when published.
    if (message && message.node !== node) local.deliver(message.topic, message.key);
  };

  const listen = async (): Promise<pg.Client> => {
    // Bounded like the publisher: a server that takes the connection and never answers LISTEN would
    // leave this node not listening (its caches off) for good; a failed attempt is retried.
    const client = new pg.Client({
      connectionString: options.url,
      application_name: options.name,
      connectionTimeoutMillis: 5_000,
      query_timeout: 5_000,
    });
    client.on('notification', (n) => {
      if (n.channel === options.channel) receive(n.payload);
    });
    client.on('error', (error) => {
      options.onError(error);
      lost(client);
    });
    client.on('end', () => lost(client));
    try {
      await client.connect();
      await client.query(`LISTEN ${pg.escapeIdentifier(options.channel)}`);
    } catch (error) {
      await client.end().catch(() => {});
      throw error;
    }
    return client;
  };

  const reconnect = (attempt: number) => {
    retry = setTimeout(
      () => {
        retry = null;
        listen().then(
          (client) => {
            if (closed) {
              client.end().catch(() => {});
              return;
            }
            listener = client;
            // LISTEN is in place again: whatever was sent while we were away is lost, so caches go.
            local.reset();
          },
          (error: unknown) => {
            options.onError(error);
            if (!closed) reconnect(attempt + 1);
          },
        );
      },
      Math.min(attempt * 100, maxBackoffMs),
    );
  };

  function lost(client: pg.Client) {
    if (closed || client !== listener) return;
    listener = null;
    client.end().catch(() => {});
    // Drop caches now too: until we listen again, nothing tells us about changes.
    local.reset();
    reconnect(1);
  }

  try {
    listener = await listen();
  } catch (error) {
    await publisher.end();
    throw error;
  }

  return {
    async publish(topic, key) {
      if (closed) throw new Error('the invalidation bus is closed');
      const payload = encodeMessage({ node, topic, key });
      local.deliver(topic, key);
      await publisher.query('SELECT pg_notify($1, $2)', [options.channel, payload]);
    },
    subscribe: (topic, handler) => local.subscribe(topic, handler),
    onReset: (handler) => local.onReset(handler),
    live: () => listener !== null && !closed,
    async close() {
      if (closed) return;
      closed = true;
      if (retry) clearTimeout(retry);
      const client = listener;
      listener = null;
      await Promise.all([client?.end().catch(() => {}), publisher.end()]);
    },
  };
}
