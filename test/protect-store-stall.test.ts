/**
 * A shared store that stops answering. A Redis paused for failover, or cut off by a partition that drops
 * packets without a reset, keeps its TCP connection open and answers nothing. ioredis had no command
 * timeout and the limiters waited on the store with no deadline, so every rate-limited request hung for
 * ever: neither RATE_LIMIT_FAIL_CLOSED (503) nor failing open (the per-node count) ever applied, and a
 * publish on the invalidation bus (a tenant suspended, a grant changed) held its request just the same.
 * Now a Redis command fails after REDIS_COMMAND_TIMEOUT_MS (src/platform/redis.ts) and the limiters give
 * any store STORE_DEADLINE_MS (src/protect/rate-limit/limiters.ts), after which the fail mode decides.
 * The Redis cases run only with REDIS_URL (a relay to it plays the stalled server).
 */

import type { AddressInfo } from 'node:net';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { type RateLimiterAbstract, RateLimiterMemory } from 'rate-limiter-flexible';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { type InvalidationBus, openInvalidationBus } from '../src/platform/bus/index.ts';
import {
  createRateLimiters,
  STORE_DEADLINE_MS,
  type StoreFailure,
} from '../src/protect/rate-limit/limiters.ts';
import { defaultLimits } from '../src/protect/rate-limit/policy.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

/** Resolves to 'no answer' when `promise` has not settled within `ms` (a bound on the wait, not a timing check). */
const settledWithin = <T>(promise: Promise<T>, ms: number) =>
  Promise.race([promise, new Promise<'no answer'>((r) => setTimeout(() => r('no answer'), ms))]);

/**
 * A TCP relay to the real Redis that, once stalled, keeps every connection open and forwards nothing:
 * what a paused primary or a silent partition looks like to the client.
 */
function stallingRelay(target: URL) {
  const sockets: Socket[] = [];
  let stalled = false;
  const server: Server = createServer((client) => {
    const upstream = connect(Number(target.port || 6379), target.hostname);
    sockets.push(client, upstream);
    client.on('data', (d) => {
      if (!stalled) upstream.write(d);
    });
    upstream.on('data', (d) => {
      if (!stalled) client.write(d);
    });
    client.on('error', () => {});
    upstream.on('error', () => {});
  });
  return {
    async url() {
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      return `redis://127.0.0.1:${(server.address() as AddressInfo).port}`;
    },
    stall: () => {
      stalled = true;
    },
    close() {
      for (const socket of sockets) socket.destroy();
      server.close();
    },
  };
}

describe.runIf(process.env.REDIS_URL)('a Redis that stops answering', () => {
  const redisUrl = new URL(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379');
  const relays: ReturnType<typeof stallingRelay>[] = [];
  let t: TestApp | undefined;
  let bus: InvalidationBus | undefined;
  afterAll(async () => {
    for (const relay of relays) relay.close();
    await t?.close();
    await bus?.close();
  });

  it('is answered by the fail mode (503 for sign-in, served for reads), not by a hang', async () => {
    const relay = stallingRelay(redisUrl);
    relays.push(relay);
    t = await buildTestApp({ env: { RATE_LIMIT_STORE: 'redis', REDIS_URL: await relay.url() } });
    await seedTenant(t, 'acme');
    const { app, asOperator } = t;
    const read = () =>
      app.inject({ url: '/api/v1/tenants', headers: asOperator, remoteAddress: '198.18.7.7' });
    const signIn = () =>
      app.inject({
        method: 'POST',
        url: '/api/v1/t/acme/auth/signin',
        remoteAddress: '198.18.7.8',
        payload: { email: 'x@acme.test', password: 'not-the-password-1' },
      });
    expect((await read()).statusCode).toBe(200);
    relay.stall();
    // 10 s is far beyond any sensible rate-limit check; before the fix neither request ever finished.
    const [r1, r2] = await Promise.all([settledWithin(read(), 10_000), settledWithin(signIn(), 10_000)]);
    expect(r1 === 'no answer' ? r1 : r1.statusCode).toBe(200);
    expect(r2 === 'no answer' ? r2 : r2.statusCode).toBe(503);
  }, 60_000);

  it('fails a publish on the invalidation bus instead of holding its caller', async () => {
    const relay = stallingRelay(redisUrl);
    relays.push(relay);
    bus = await openInvalidationBus({ redisUrl: await relay.url(), name: 'rampart-test-stall' });
    await bus.publish('tenants', 'acme');
    relay.stall();
    const outcome = await settledWithin(
      bus.publish('tenants', 'acme').then(
        () => 'published',
        (error: Error) => error.message,
      ),
      10_000,
    );
    expect(outcome).toMatch(/timed out/i);
  }, 60_000);
});

describe('a counter store that never answers', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  /** Limiters on a store whose every call stays pending (a stalled PostgreSQL, say). */
  function stalledLimiters(failures: StoreFailure[]) {
    const never = () => new Promise<never>(() => {});
    return createRateLimiters({
      limits: defaultLimits(),
      factory: (name, { points, seconds }) => {
        const limiter: RateLimiterAbstract = new RateLimiterMemory({
          keyPrefix: name,
          points,
          duration: seconds,
        });
        limiter.consume = never;
        limiter.get = never;
        limiter.reward = never;
        return limiter;
      },
      store: 'postgres',
      failClosed: new Set(['signin']),
      onStoreFailure: (failure) => failures.push(failure),
    });
  }

  it('is treated as unreachable after STORE_DEADLINE_MS: fail-closed classes get 503, the others the per-node count', async () => {
    vi.useFakeTimers();
    const failures: StoreFailure[] = [];
    const limiters = stalledLimiters(failures);
    // What each call came to, once it has: a decision, or the code of the error it was refused with.
    const outcomes: Record<string, unknown> = {};
    const track = (name: string, call: Promise<unknown>) =>
      call.then(
        (decision) => {
          outcomes[name] = { decision };
        },
        (error: { code?: string }) => {
          outcomes[name] = { refused: error.code };
        },
      );
    void track('api', limiters.consume('api', 'ip', '198.18.0.1'));
    void track('signin', limiters.consume('signin', 'ip', '198.18.0.1'));
    void track('charge', limiters.failedSignIns.charge('198.18.0.1'));
    void track('refund', limiters.failedSignIns.refund('198.18.0.1'));
    await vi.advanceTimersByTimeAsync(STORE_DEADLINE_MS);
    expect(outcomes).toEqual({
      api: { decision: expect.objectContaining({ policy: 'api-ip', allowed: true }) },
      signin: { refused: 'unavailable' },
      charge: { refused: 'unavailable' },
      refund: { decision: expect.anything() },
    });
    expect(failures.map((f) => [f.routeClass, f.failClosed])).toEqual([
      ['api', false],
      ['signin', true],
      ['signin', true],
      ['signin', false],
    ]);
  });
});
