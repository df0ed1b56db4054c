import type { InvalidationBus } from './types.ts';

/**
 * A bounded, least-recently-used map whose entries the bus invalidates on every node. Entries also
 * expire after a safety TTL, which bounds how long a copy can outlive a change if a message is ever
 * lost without the connection dropping (a dropped connection clears the whole cache via onReset). While
 * the bus is not live (between a lost connection and the subscription being back) it serves and stores
 * nothing: every read goes to the database.
 */
export interface InvalidatedCache<V> {
  get(key: string, nowMs: number): V | undefined;
  /**
   * Take before reading the database, pass to put: the put is skipped when any invalidation arrived in
   * between, so a read that raced a change cannot install the old value after its invalidation ran.
   */
  mark(): number;
  put(key: string, value: V, mark: number, nowMs: number): void;
  delete(key: string): void;
  /** Drops every entry the predicate matches (invalidations by user or tenant: rare, so a scan). */
  deleteWhere(match: (value: V) => boolean): void;
  clear(): void;
  readonly size: number;
  /** Unsubscribes from the bus. */
  close(): void;
}

export interface InvalidatedCacheOptions<V> {
  bus: InvalidationBus;
  topic: string;
  /** At most this many entries; the least recently used goes first. */
  maxEntries: number;
  ttlMs: number;
  /** What a message on the topic drops; the default drops the entry with the message's key. */
  onMessage?: (key: string, cache: InvalidatedCache<V>) => void;
}

interface Entry<V> {
  value: V;
  storedAt: number;
}

export function createInvalidatedCache<V>(options: InvalidatedCacheOptions<V>): InvalidatedCache<V> {
  // A Map iterates in insertion order: re-inserting on a hit keeps the least recently used first.
  const entries = new Map<string, Entry<V>>();
  let epoch = 0;
  const cache: InvalidatedCache<V> = {
    get(key, nowMs) {
      // Not subscribed (connection lost): a change elsewhere would go unheard, so nothing is served.
      if (!options.bus.live()) return undefined;
      const entry = entries.get(key);
      if (!entry) return undefined;
      entries.delete(key);
      if (nowMs - entry.storedAt >= options.ttlMs || nowMs < entry.storedAt) return undefined;
      entries.set(key, entry);
      return entry.value;
    },
    mark: () => epoch,
    put(key, value, mark, nowMs) {
      if (mark !== epoch || !options.bus.live()) return;
      entries.delete(key);
      entries.set(key, { value, storedAt: nowMs });
      if (entries.size > options.maxEntries) {
        const oldest = entries.keys().next();
        if (!oldest.done) entries.delete(oldest.value);
      }
    },
    delete(key) {
      epoch += 1;
      entries.delete(key);
    },
    deleteWhere(match) {
      epoch += 1;
      for (const [key, entry] of entries) if (match(entry.value)) entries.delete(key);
    },
    clear() {
      epoch += 1;
      entries.clear();
    },
    get size() {
      return entries.size;
    },
    close() {
      unsubscribe();
      stopResets();
    },
  };
  const onMessage = options.onMessage ?? ((key, c) => c.delete(key));
  const unsubscribe = options.bus.subscribe(options.topic, (key) => onMessage(key, cache));
  const stopResets = options.bus.onReset(() => cache.clear());
  return cache;
}
