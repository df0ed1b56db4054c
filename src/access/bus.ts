/**
 * Cross-node cache invalidation, as src/platform/bus/ provides it (PostgreSQL LISTEN/NOTIFY or Redis).
 * Access keeps effective permissions in memory and drops a tenant's entries when any node changes them.
 */
export interface InvalidationBus {
  /** After commit; delivered to every node including this one. */
  publish(topic: string, key: string): Promise<void>;
  subscribe(topic: string, handler: (key: string) => void): () => void;
  /** Messages may have been missed: drop whole caches. */
  onReset(handler: () => void): () => void;
  close(): Promise<void>;
}

/** One process only: for a single node and for tests. */
export function createLocalBus(): InvalidationBus {
  const handlers = new Map<string, Set<(key: string) => void>>();
  const resets = new Set<() => void>();
  return {
    async publish(topic, key) {
      for (const handler of handlers.get(topic) ?? []) handler(key);
    },
    subscribe(topic, handler) {
      const set = handlers.get(topic) ?? new Set();
      handlers.set(topic, set);
      set.add(handler);
      return () => set.delete(handler);
    },
    onReset(handler) {
      resets.add(handler);
      return () => resets.delete(handler);
    },
    async close() {
      handlers.clear();
      resets.clear();
    },
  };
}
