import type { InvalidationBus } from './types.ts';

/**
 * The dispatch every bus shares: handlers by topic and reset handlers. A handler that throws is reported
 * and does not keep the message from the others.
 */
export class LocalDispatch {
  readonly #topics = new Map<string, Set<(key: string) => void>>();
  readonly #resets = new Set<() => void>();
  readonly #onError: (error: unknown) => void;

  constructor(onError: (error: unknown) => void) {
    this.#onError = onError;
  }

  deliver(topic: string, key: string): void {
    const handlers = this.#topics.get(topic);
    if (!handlers) return;
    for (const handler of handlers) {
      try {
        handler(key);
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  reset(): void {
    for (const handler of this.#resets) {
      try {
        handler();
      } catch (error) {
        this.#onError(error);
      }
    }
  }

  subscribe(topic: string, handler: (key: string) => void): () => void {
    let handlers = this.#topics.get(topic);
    if (!handlers) {
      handlers = new Set();
      this.#topics.set(topic, handlers);
    }
    // A wrapper, so subscribing the same function twice gives two independent subscriptions.
    const entry = (key: string) => handler(key);
    handlers.add(entry);
    return () => {
      handlers.delete(entry);
    };
  }

  onReset(handler: () => void): () => void {
    const entry = () => handler();
    this.#resets.add(entry);
    return () => {
      this.#resets.delete(entry);
    };
  }
}

/** One process is one node (the embedded PGlite default): delivery is a synchronous function call. */
export function createInProcessBus(onError: (error: unknown) => void = () => {}): InvalidationBus {
  const local = new LocalDispatch(onError);
  let closed = false;
  return {
    async publish(topic, key) {
      if (closed) throw new Error('the invalidation bus is closed');
      local.deliver(topic, key);
    },
    subscribe: (topic, handler) => local.subscribe(topic, handler),
    onReset: (handler) => local.onReset(handler),
    // One node: nothing can be missed.
    live: () => !closed,
    async close() {
      closed = true;
    },
  };
}
