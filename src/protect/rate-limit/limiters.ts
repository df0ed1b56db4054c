import { hash } from 'node:crypto';
import { type RateLimiterAbstract, RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import { platformError } from '../../platform/http/errors.ts';
import { addressKey } from './address-key.ts';
import type { Limit, Limits, RouteClass, Scope } from './policy.ts';
import type { LimiterFactory, StoreKind } from './store.ts';

export interface Decision {
  /** `class-scope`, the policy's name in the RateLimit headers. */
  policy: string;
  /** This policy's item in RateLimit-Policy (`"class-scope";q=points;w=seconds`), built once per limiter. */
  policyHeader: string;
  limit: Limit;
  allowed: boolean;
  remaining: number;
  resetSeconds: number;
}

export interface StoreFailure {
  store: StoreKind;
  routeClass: RouteClass;
  failClosed: boolean;
  error: unknown;
}

interface Pair {
  shared: RateLimiterAbstract;
  /** Per-node stand-in while the shared store is unreachable and the class fails open. */
  local: RateLimiterAbstract;
  limit: Limit;
  policy: string;
  policyHeader: string;
}

export interface RateLimitersOptions {
  limits: Limits;
  factory: LimiterFactory;
  store: StoreKind;
  /** Classes refused (503) while the shared store is unreachable. */
  failClosed: ReadonlySet<string>;
  onStoreFailure: (failure: StoreFailure) => void;
  /** How long a call to the shared store may take before it counts as failed (default STORE_DEADLINE_MS). */
  storeDeadlineMs?: number;
}

/**
 * The longest a request waits for the shared counter store. A store that stops answering (a stalled
 * PostgreSQL, a Redis whose command timeout did not apply) is then treated like one that is down, so the
 * class's fail mode decides (503 or the per-node count) instead of the request hanging. Above Redis's own
 * command timeout (platform/redis.ts), so that one reports first; the late answer is dropped.
 */
export const STORE_DEADLINE_MS = 2_000;

export class StoreDeadlineError extends Error {
  constructor(ms: number) {
    super(`the rate-limit store did not answer within ${ms} ms`);
    this.name = 'StoreDeadlineError';
  }
}

/** Settles as `promise` does, or rejects with StoreDeadlineError after `ms`. */
function within<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new StoreDeadlineError(ms)), ms);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}

/**
 * Account names (emails) never reach Redis or the counter table in clear: a short hash keys them.
 * One-shot `crypto.hash` (no Hash object): this runs on every signed-in request.
 */
export const accountKey = (name: string) => hash('sha256', name, 'base64url').slice(0, 32);

function decisionOf(pair: Pair, res: RateLimiterRes, allowed: boolean): Decision {
  return {
    policy: pair.policy,
    policyHeader: pair.policyHeader,
    limit: pair.limit,
    allowed,
    remaining: Math.max(0, res.remainingPoints),
    resetSeconds: Math.max(1, Math.ceil(res.msBeforeNext / 1000)),
  };
}

function unavailable() {
  return platformError('unavailable', 'Request limits cannot be checked right now; retry shortly.', {
    retryAfterSeconds: 5,
  });
}

/** One limiter per (class, scope) on the shared store, each with a per-node twin for failing open. */
export function createRateLimiters(options: RateLimitersOptions) {
  const deadlineMs = options.storeDeadlineMs ?? STORE_DEADLINE_MS;
  // The memory store answers synchronously: no timer on that hot path.
  const shared = <T>(call: Promise<T>): Promise<T> =>
    options.store === 'memory' ? call : within(call, deadlineMs);
  const pairs = new Map<string, Pair>();
  const pairFor = (name: string, limit: Limit): Pair => ({
    shared: options.factory(name, limit),
    local: new RateLimiterMemory({
      keyPrefix: `${name}-local`,
      points: limit.points,
      duration: limit.seconds,
    }),
    limit,
    policy: name,
    policyHeader: `"${name}";q=${limit.points};w=${limit.seconds}`,
  });
  for (const [routeClass, byScope] of Object.entries(options.limits)) {
    for (const [scope, limit] of Object.entries(byScope as Record<string, Limit>)) {
      pairs.set(`${routeClass}-${scope}`, pairFor(`${routeClass}-${scope}`, limit));
    }
  }

  const failed = (routeClass: RouteClass, error: unknown) => {
    const failClosed = options.failClosed.has(routeClass);
    options.onStoreFailure({ store: options.store, routeClass, failClosed, error });
    if (failClosed) throw unavailable();
  };

  /** Takes one point; null when the class has no limit for this scope. */
  async function consume(routeClass: RouteClass, scope: Scope, key: string): Promise<Decision | null> {
    const pair = pairs.get(`${routeClass}-${scope}`);
    if (!pair) return null;
    try {
      return decisionOf(pair, await shared(pair.shared.consume(key)), true);
    } catch (error) {
      // rate-limiter-flexible rejects with the result when the points are used up, with an Error when the store fails.
      if (error instanceof RateLimiterRes) return decisionOf(pair, error, false);
      failed(routeClass, error);
    }
    try {
      return decisionOf(pair, await pair.local.consume(key), true);
    } catch (error) {
      if (error instanceof RateLimiterRes) return decisionOf(pair, error, false);
      throw error;
    }
  }

  /**
   * The failed sign-in budget per address (an IPv6 address counts as its /64: address-key.ts), in the
   * shape identity's sign-in uses (its FailureBudget: charged before the verdict, refunded after a right
   * one). A store failure follows the sign-in class's setting: closed refuses the sign-in (503), open
   * uses this node's count.
   */
  const failures = pairs.get('failures-ip') as Pair;
  const failedSignIns = {
    async get(ip: string) {
      const key = addressKey(ip);
      try {
        return await shared(failures.shared.get(key));
      } catch (error) {
        failed('signin', error);
        return failures.local.get(key);
      }
    },
    async charge(ip: string) {
      const key = addressKey(ip);
      const taken = async (consumed: Promise<RateLimiterRes>) => {
        try {
          return { allowed: true, msBeforeNext: (await consumed).msBeforeNext };
        } catch (error) {
          if (error instanceof RateLimiterRes) return { allowed: false, msBeforeNext: error.msBeforeNext };
          throw error;
        }
      };
      try {
        return await taken(shared(failures.shared.consume(key, 1)));
      } catch (error) {
        failed('signin', error);
        return taken(failures.local.consume(key, 1));
      }
    },
    async refund(ip: string) {
      const key = addressKey(ip);
      try {
        return await shared(failures.shared.reward(key, 1));
      } catch (error) {
        // The attempt is answered already; only the counting is degraded.
        options.onStoreFailure({ store: options.store, routeClass: 'signin', failClosed: false, error });
        return failures.local.reward(key, 1);
      }
    },
  };

  return { consume, failedSignIns };
}

export type RateLimiters = ReturnType<typeof createRateLimiters>;
export type FailedSignInLimiter = RateLimiters['failedSignIns'];
