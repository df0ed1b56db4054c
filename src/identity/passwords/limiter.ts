/**
 * Thrown when the hashing queue is full. The HTTP layer answers 503 with Retry-After: refusing
 * early keeps memory bounded (each running argon2id holds m KiB) and keeps queued sign-ins from
 * waiting longer than a client would.
 */
export class HasherBusyError extends Error {
  readonly retryAfterSeconds: number;

  constructor(retryAfterSeconds: number) {
    super('Password hashing is at capacity; retry later.');
    this.name = 'HasherBusyError';
    this.retryAfterSeconds = retryAfterSeconds;
  }
}

export interface ConcurrencyLimiter {
  /** Runs task when a slot is free; rejects with HasherBusyError when the queue is full. */
  run<T>(task: () => Promise<T>): Promise<T>;
  readonly active: number;
  readonly queued: number;
}

export interface LimiterOptions {
  maxConcurrent: number;
  maxQueue: number;
  /** Monotonic milliseconds; injectable so the Retry-After estimate is testable. */
  now?: () => number;
}

// Weight of the newest duration in the moving average: smooths one slow outlier.
const smoothing = 0.2;

export function createConcurrencyLimiter(options: LimiterOptions): ConcurrencyLimiter {
  const { maxConcurrent, maxQueue } = options;
  if (!Number.isInteger(maxConcurrent) || maxConcurrent < 1) {
    throw new RangeError('maxConcurrent must be an integer >= 1');
  }
  if (!Number.isInteger(maxQueue) || maxQueue < 0) {
    throw new RangeError('maxQueue must be an integer >= 0');
  }
  const now = options.now ?? (() => performance.now());
  const waiting: Array<() => void> = [];
  let active = 0;
  let averageMs = 0;

  function retryAfterSeconds(): number {
    // Everything ahead of a retry must drain first, maxConcurrent at a time.
    const drainMs = ((active + waiting.length) / maxConcurrent) * averageMs;
    return Math.max(1, Math.ceil(drainMs / 1000));
  }

  function acquire(): Promise<void> | undefined {
    if (active < maxConcurrent) {
      active += 1;
      return undefined;
    }
    if (waiting.length >= maxQueue) throw new HasherBusyError(retryAfterSeconds());
    return new Promise((resolve) => waiting.push(resolve));
  }

  function release(): void {
    const next = waiting.shift();
    // Hand the slot straight to the next waiter so a newcomer cannot overtake the queue.
    if (next === undefined) active -= 1;
    else next();
  }

  async function run<T>(task: () => Promise<T>): Promise<T> {
    const slot = acquire();
    if (slot !== undefined) await slot;
    const started = now();
    try {
      return await task();
    } finally {
      const elapsed = now() - started;
      averageMs = averageMs === 0 ? elapsed : averageMs + smoothing * (elapsed - averageMs);
      release();
    }
  }

  return {
    run,
    get active() {
      return active;
    },
    get queued() {
      return waiting.length;
    },
  };
}
