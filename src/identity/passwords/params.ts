import { argon2Limits } from '../../platform/config/index.ts';

/** Argon2id cost parameters, in the units the PHC string uses (m in KiB). */
export interface Argon2Params {
  memoryKiB: number;
  iterations: number;
  parallelism: number;
}

/**
 * OWASP Password Storage Cheat Sheet, first argon2id configuration: m=19 MiB, t=2, p=1.
 * It keeps a sign-in under ~50 ms on one core while making each guess cost 19 MiB of memory,
 * which is what hurts GPU/ASIC crackers.
 */
export const defaultArgon2Params: Argon2Params = Object.freeze({
  memoryKiB: 19_456,
  iterations: 2,
  parallelism: 1,
});

/**
 * Absolute bounds on the argon2 parameters Rampart parses or is configured with: beyond them a hash is no
 * accepted format at all. The argon2 bounds are the configuration's (ARGON2_* is checked against them at
 * load), so what it accepts the hasher takes. They are far above what a sign-in may cost; what an
 * imported or stored hash may cost relative to the configured parameters is bounded in cost-bound.ts.
 */
export const importLimits = Object.freeze({
  argon2MaxMemoryKiB: argon2Limits.maxMemoryKiB,
  argon2MaxIterations: argon2Limits.maxIterations,
  argon2MaxParallelism: argon2Limits.maxParallelism,
  bcryptMaxCost: 16,
});

/** Refuses parameters the argon2 reference implementation would reject, at construction rather than at first sign-in. */
export function assertValidArgon2Params(params: Argon2Params): void {
  const { memoryKiB, iterations, parallelism } = params;
  if (!Number.isInteger(parallelism) || parallelism < 1 || parallelism > importLimits.argon2MaxParallelism) {
    throw new RangeError(
      `argon2 parallelism must be an integer from 1 to ${importLimits.argon2MaxParallelism}`,
    );
  }
  if (!Number.isInteger(iterations) || iterations < 1 || iterations > importLimits.argon2MaxIterations) {
    throw new RangeError(
      `argon2 iterations must be an integer from 1 to ${importLimits.argon2MaxIterations}`,
    );
  }
  // Argon2 needs at least 8 KiB per lane.
  if (
    !Number.isInteger(memoryKiB) ||
    memoryKiB < 8 * parallelism ||
    memoryKiB > importLimits.argon2MaxMemoryKiB
  ) {
    throw new RangeError(
      `argon2 memoryKiB must be an integer from ${8 * parallelism} to ${importLimits.argon2MaxMemoryKiB}`,
    );
  }
}
