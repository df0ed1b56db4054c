import { describe, expect, it } from 'vitest';
import { createConcurrencyLimiter, HasherBusyError } from './limiter.ts';

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void } {
  let resolve = (): void => undefined;
  let reject = (_error: Error): void => undefined;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

describe('createConcurrencyLimiter', () => {
  it('runs at most maxConcurrent tasks and starts queued ones in arrival order', async () => {
    const limiter = createConcurrencyLimiter({ maxConcurrent: 2, maxQueue: 10 });
    const gates = Array.from({ length: 5 }, deferred);
    const started: number[] = [];
    const runs = gates.map((gate, i) =>
      limiter.run(async () => {
        started.push(i);
        await gate.promise;
      }),
    );
    await Promise.resolve();
    expect(started).toEqual([0, 1]);
    expect([limiter.active, limiter.queued]).toEqual([2, 3]);
    gates[1]?.resolve();
    await runs[1];
    await Promise.resolve();
    expect(started).toEqual([0, 1, 2]);
    for (const gate of gates) gate.resolve();
    await Promise.all(runs);
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect([limiter.active, limiter.queued]).toEqual([0, 0]);
  });

  it('frees the slot when a task fails', async () => {
    const limiter = createConcurrencyLimiter({ maxConcurrent: 1, maxQueue: 0 });
    await expect(limiter.run(() => Promise.reject(new Error('boom')))).rejects.toThrow('boom');
    await expect(limiter.run(() => Promise.resolve(7))).resolves.toBe(7);
    expect(limiter.active).toBe(0);
  });

  it('refuses beyond the queue with a Retry-After estimated from measured durations', async () => {
    let clock = 0;
    const limiter = createConcurrencyLimiter({ maxConcurrent: 1, maxQueue: 1, now: () => clock });
    // One task that "took" 3 s on the injected clock sets the estimate.
    await limiter.run(async () => {
      clock += 3000;
    });
    const gate = deferred();
    const running = limiter.run(() => gate.promise);
    const queued = limiter.run(() => Promise.resolve());
    const refused = await limiter.run(() => Promise.resolve()).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(HasherBusyError);
    // One running and one queued ahead, one at a time, ~3 s each.
    expect((refused as HasherBusyError).retryAfterSeconds).toBe(6);
    gate.resolve();
    await Promise.all([running, queued]);
  });

  it('never suggests retrying in less than a second', async () => {
    const limiter = createConcurrencyLimiter({ maxConcurrent: 1, maxQueue: 0, now: () => 0 });
    const gate = deferred();
    const running = limiter.run(() => gate.promise);
    const refused = await limiter.run(() => Promise.resolve()).catch((e: unknown) => e);
    expect((refused as HasherBusyError).retryAfterSeconds).toBe(1);
    gate.resolve();
    await running;
  });
});
