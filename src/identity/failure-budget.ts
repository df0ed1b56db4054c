import { RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible';
import type { ActionContext } from '../platform/context.ts';
import { AppError } from '../platform/http/problem.ts';
import { identityError } from './errors.ts';

/**
 * Failed password attempts per client address, across accounts (credential stuffing spreads over many):
 * the Protect capability's shared limiter (Redis or PostgreSQL, across nodes), or one per process.
 * An attempt is charged before its password is verified and refunded when it turns out not to be a
 * failure: checked first and charged after the verdict, every attempt of a parallel burst saw the full
 * budget and a burst of a hundred passed where fifty were allowed.
 */
export interface FailureBudget {
  get(key: string): Promise<{ remainingPoints: number; msBeforeNext: number } | null>;
  /** Takes one point: not allowed (with the wait) when the budget was used up before this attempt. */
  charge(key: string): Promise<{ allowed: boolean; msBeforeNext: number }>;
  /** Gives a charged point back: the attempt was right, or never evaluated. */
  refund(key: string): Promise<unknown>;
}

/** The per-process budget: 50 failures per address in 5 minutes, as Protect's default. */
export function memoryFailureBudget(): FailureBudget {
  const limiter = new RateLimiterMemory({ points: 50, duration: 300 });
  return {
    get: (key) => limiter.get(key),
    async charge(key) {
      try {
        const res = await limiter.consume(key, 1);
        return { allowed: true, msBeforeNext: res.msBeforeNext };
      } catch (error) {
        if (error instanceof RateLimiterRes) return { allowed: false, msBeforeNext: error.msBeforeNext };
        throw error;
      }
    },
    refund: (key) => limiter.reward(key, 1),
  };
}

/** The answer of an attempt that counts as a failed sign-in (a wrong password, or answered alike). */
const isFailedAttempt = (error: unknown) => error instanceof AppError && error.code === 'invalid_credentials';

/**
 * Runs a password attempt charged to the caller's address (none without one): `throttled` when the
 * budget is used up, once `recordThrottled` has audited the refusal (every attempt leaves an event: past
 * the budget a credential-stuffing run goes on trying accounts, and the trail must still name them); the
 * charge is given back unless the attempt fails as a wrong password does (not for a right one, one the
 * overloaded hasher never evaluated, or input refused before any check).
 */
export async function chargedAttempt<R>(
  budget: FailureBudget,
  ctx: ActionContext,
  attempt: () => Promise<R>,
  recordThrottled: () => Promise<void>,
): Promise<R> {
  const ip = ctx.ip;
  if (!ip) return attempt();
  const charged = await budget.charge(ip);
  if (!charged.allowed) {
    await recordThrottled();
    throw identityError('throttled', 'Too many failed sign-ins from your network; try again later.', {
      retryAfterSeconds: Math.ceil(charged.msBeforeNext / 1000),
    });
  }
  try {
    const result = await attempt();
    await budget.refund(ip);
    return result;
  } catch (error) {
    if (!isFailedAttempt(error)) await budget.refund(ip);
    throw error;
  }
}
