import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import pg from 'pg';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  createInProcessBus,
  createInvalidatedCache,
  type InvalidationBus,
  openInvalidationBus,
} from './index.ts';

const databaseUrl = process.env.DATABASE_URL;
const redisUrl = process.env.REDIS_URL;

/** Collects what a bus delivers on a topic. */
function record(bus: InvalidationBus, topic: string) {
  const keys: string[] = [];
  const unsubscribe = bus.subscribe(topic, (key) => keys.push(key));
  return { keys, unsubscribe };
}

function countResets(bus: InvalidationBus) {
  const counter = { count: 0 };
  bus.onReset(() => {
    counter.count += 1;
  });
  return counter;
}

describe('in-process bus', () => {
  it('delivers to every subscriber of the topic synchronously, and not after unsubscribe', async () => {
    const bus = createInProcessBus();
    const a = record(bus, 'sessions');
    const b = record(bus, 'sessions');
    const other = record(bus, 'tenants');
    await bus.publish('sessions', 'k1');
    expect(a.keys).toEqual(['k1']);
    expect(b.keys).toEqual(['k1']);
    expect(other.keys).toEqual([]);
    a.unsubscribe();
    await bus.publish('sessions', 'k2');
    expect(a.keys).toEqual(['k1']);
    expect(b.keys).toEqual(['k1', 'k2']);
    await bus.close();
    await expect(bus.publish('sessions', 'k3')).rejects.toThrow(/closed/);
  });

  it('keeps delivering to the other handlers when one throws, and reports the error', async () => {
    const errors: unknown[] = [];
    const bus = createInProcessBus((error) => errors.push(error));
    bus.subscribe('t', () => {
      throw new Error('handler bug');
    });
    const ok = record(bus, 't');
    await bus.publish('t', 'k');
    expect(ok.keys).toEqual(['k']);
    expect(errors).toHaveLength(1);
  });
});

/** The cross-node buses: two nodes (two buses) on one broker, each with a channel of its own test. */
function crossNodeSuite(
  kind: string,
  open: (channel: string, name: string) => Promise<InvalidationBus>,
  dropConnection: (name: string) => Promise<number>,
) {
  describe(`${kind} bus, two nodes`, () => {
    const opened: InvalidationBus[] = [];
    const openNode = async (channel: string, name: string) => {
      const bus = await open(channel, name);
      opened.push(bus);
      return bus;
    };
    afterEach(async () => {
      await Promise.all(opened.splice(0).map((bus) => bus.close()));
    });
    const fresh = () => randomBytes(6).toString('hex');

    it('delivers a message to both nodes, once each, and only on its topic', async () => {
      const channel = `rampart_test_${fresh()}`;
      const a = await openNode(channel, `bus-a-${fresh()}`);
      const b = await openNode(channel, `bus-b-${fresh()}`);
      const onA = record(a, 'sessions');
      const onB = record(b, 'sessions');
      const otherTopic = record(b, 'tenants');
      await a.publish('sessions', 'hash-1');
      // The publisher delivers to itself before publish resolves.
      expect(onA.keys).toEqual(['hash-1']);
      await vi.waitFor(() => expect(onB.keys).toEqual(['hash-1']));
      await b.publish('sessions', 'hash-2');
      await vi.waitFor(() => expect(onA.keys).toEqual(['hash-1', 'hash-2']));
      expect(onB.keys).toEqual(['hash-1', 'hash-2']);
      expect(otherTopic.keys).toEqual([]);
    });

    it('does not cross channels (two deployments on one broker)', async () => {
      const a = await openNode(`rampart_test_${fresh()}`, `bus-a-${fresh()}`);
      const b = await openNode(`rampart_test_${fresh()}`, `bus-b-${fresh()}`);
      const onB = record(b, 't');
      await a.publish('t', 'k');
      // Sync point: a message B does receive, sent after the one it must not.
      const sync = record(b, 'sync');
      await b.publish('sync', 'done');
      await vi.waitFor(() => expect(sync.keys).toEqual(['done']));
      expect(onB.keys).toEqual([]);
    });

    it('fires reset when the connection is dropped and restored, then delivers again', async () => {
      const channel = `rampart_test_${fresh()}`;
      const bName = `bus-b-${fresh()}`;
      const a = await openNode(channel, `bus-a-${fresh()}`);
      const b = await openNode(channel, bName);
      const resets = countResets(b);
      const onB = record(b, 'sessions');
      expect(await dropConnection(bName)).toBe(1);
      // Once on losing the connection, once when listening again.
      await vi.waitFor(() => expect(resets.count).toBe(2), { timeout: 10_000 });
      await a.publish('sessions', 'after-reconnect');
      await vi.waitFor(() => expect(onB.keys).toEqual(['after-reconnect']));
    });

    // Defect: between a lost connection and the subscription being back, caches kept serving what they
    // read meanwhile, so a change made through another node in that window held until the safety TTL
    // (or for good, had the new subscription hung). Now the bus says it is not live and caches are off.
    it('is not live from a lost connection until subscribed again; a cache serves and stores nothing meanwhile', async () => {
      const channel = `rampart_test_${fresh()}`;
      const bName = `bus-b-${fresh()}`;
      const b = await openNode(channel, bName);
      const cache = createInvalidatedCache<string>({ bus: b, topic: 'c', maxEntries: 10, ttlMs: 60_000 });
      cache.put('k', 'before', cache.mark(), 0);
      expect(b.live()).toBe(true);
      expect(cache.get('k', 1)).toBe('before');
      const seen: Array<{ live: boolean; served: string | undefined }> = [];
      b.onReset(() => {
        // Runs when the connection is lost (not live) and again once subscribed (live).
        cache.put('k', 'during', cache.mark(), 2);
        seen.push({ live: b.live(), served: cache.get('k', 3) });
      });
      expect(await dropConnection(bName)).toBe(1);
      await vi.waitFor(() => expect(seen).toHaveLength(2), { timeout: 10_000 });
      expect(seen).toEqual([
        { live: false, served: undefined },
        { live: true, served: 'during' },
      ]);
      await b.close();
      expect(b.live()).toBe(false);
    });
  });
}

describe.skipIf(!databaseUrl)('PostgreSQL LISTEN/NOTIFY', () => {
  crossNodeSuite(
    'postgres',
    (channel, name) => openInvalidationBus({ databaseUrl, channel, name }),
    async (name) => {
      const admin = new pg.Client({ connectionString: databaseUrl });
      await admin.connect();
      try {
        // The listener's last statement is its LISTEN; the publisher's is pg_notify.
        const { rows } = await admin.query(
          `SELECT pg_terminate_backend(pid) AS ok FROM pg_stat_activity
            WHERE application_name = $1 AND query LIKE 'LISTEN%'`,
          [name],
        );
        return rows.length;
      } finally {
        await admin.end();
      }
    },
  );
});

describe.skipIf(!redisUrl)('Redis pub/sub', () => {
  crossNodeSuite(
    'redis',
    (channel, name) => openInvalidationBus({ redisUrl, databaseUrl, channel, name }),
    async (name) => {
      const admin = new Redis(redisUrl ?? '');
      try {
        const list = String(await admin.client('LIST'));
        const ids = list
          .split('\n')
          .filter((line) => line.includes(` name=${name}-sub `))
          .map((line) => /id=(\d+)/.exec(line)?.[1])
          .filter((id): id is string => Boolean(id));
        for (const id of ids) await admin.client('KILL', 'ID', id);
        return ids.length;
      } finally {
        admin.disconnect();
      }
    },
  );
});
