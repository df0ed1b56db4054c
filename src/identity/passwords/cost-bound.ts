import type { ParsedHash } from './formats.ts';
import { type Argon2Params, defaultArgon2Params } from './params.ts';

/**
 * How much a stored hash may cost to verify, relative to a sign-in at the configured parameters. A stored
 * hash dictates its own verification cost, and the hasher's few slots (one per core) serve every sign-in
 * of every tenant: an imported argon2 hash at m=1 GiB, t=32 holds a slot for tens of seconds and 1 GiB per
 * wrong password, so a handful of such accounts, tried in a loop, would stall all sign-ins. The absolute
 * limits of params.ts only refuse what the argon2 library cannot run; these bound what it may be asked to.
 *
 * 8× admits the defaults of the common exporters (npm argon2 and argon2-cffi m=64 MiB, t=3, p=4; PHP
 * m=64 MiB, t=4, p=1; libsodium INTERACTIVE m=64 MiB, t=2) against the default m=19 MiB, t=2, and bcrypt
 * to cost 13 (~8× the default argon2id sign-in, cost 12 being the usual high setting of Rails, Django and
 * Laravel). The base is never below the defaults, so a deployment (or a test) configured cheaper does not
 * refuse hashes made at the defaults.
 */
export const hashCostBounds = Object.freeze({
  /** Multiple of the configured memory, and of the configured memory × iterations. */
  argon2Multiple: 8,
  /** Lanes: each may be a thread of its own beside the slot that runs it. */
  argon2MaxParallelism: 4,
  bcryptMaxCost: 13,
});

/** Why verifying this hash would cost too much, naming the limit; null when it is within the bounds. */
export function excessiveCost(parsed: ParsedHash, configured: Argon2Params): string | null {
  if (parsed.kind === 'argon2') return argon2Excess(parsed.params, configured);
  if (parsed.kind === 'bcrypt') return bcryptExcess(parsed.cost);
  if (parsed.kind !== 'wrapped') return null;
  const legacy = parsed.legacy.scheme === 'bcrypt' ? bcryptExcess(parsed.legacy.cost) : null;
  return legacy ?? argon2Excess(parsed.argon2Params, configured);
}

function argon2Excess(hash: Argon2Params, configured: Argon2Params): string | null {
  const { argon2Multiple: k, argon2MaxParallelism } = hashCostBounds;
  const memory = Math.max(configured.memoryKiB, defaultArgon2Params.memoryKiB);
  const work = Math.max(
    configured.memoryKiB * configured.iterations,
    defaultArgon2Params.memoryKiB * defaultArgon2Params.iterations,
  );
  const lanes = Math.max(configured.parallelism, argon2MaxParallelism);
  if (hash.parallelism > lanes) return `argon2 parallelism above the limit of ${lanes}`;
  if (hash.memoryKiB > k * memory) {
    return `argon2 memory above the limit of ${k * memory} KiB (${k}× the configured memory)`;
  }
  if (hash.memoryKiB * hash.iterations > k * work) {
    return `argon2 memory × iterations above the limit of ${k * work} KiB (${k}× the configured cost)`;
  }
  return null;
}

function bcryptExcess(cost: number): string | null {
  const max = hashCostBounds.bcryptMaxCost;
  return cost > max ? `bcrypt cost above the limit of ${max}` : null;
}
