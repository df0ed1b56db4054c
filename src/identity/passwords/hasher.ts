import { randomBytes } from 'node:crypto';
import { availableParallelism } from 'node:os';
import argon2 from 'argon2';
import { excessiveCost } from './cost-bound.ts';
import { type ParsedHash, parseHash } from './formats.ts';
import { verifyBcrypt, verifySha256 } from './legacy.ts';
import { createConcurrencyLimiter } from './limiter.ts';
import { candidateForms, normalisePassword } from './normalise.ts';
import { type Argon2Params, assertValidArgon2Params } from './params.ts';
import { formatWrapped, legacyOutput, legacyParts, wrapWorthy } from './wrapped.ts';

export interface PasswordHasherOptions {
  params: Argon2Params;
  /** Default os.availableParallelism(). Peak memory is maxConcurrent × params.memoryKiB. */
  maxConcurrent?: number;
  /** Default 64. Beyond it, calls fail fast with HasherBusyError. */
  maxQueue?: number;
}

export interface VerifyResult {
  ok: boolean;
  /** Meaningful when ok: the stored hash should be replaced by hash(password). */
  needsRehash: boolean;
}

export interface PasswordHasherStats {
  verifications: number;
  dummyVerifications: number;
  hashes: number;
  /** Legacy hashes wrapped in argon2id (wrapped.ts). */
  wraps: number;
  active: number;
  queued: number;
  maxConcurrent: number;
}

export interface PasswordHasher {
  /** The configured argon2id parameters: new hashes use them, and stored ones are bounded by them (cost-bound.ts). */
  readonly params: Readonly<Argon2Params>;
  hash(password: string): Promise<string>;
  verify(stored: string, password: string): Promise<VerifyResult>;
  verifyDummy(password: string): Promise<void>;
  /**
   * The wrapped form (argon2id of the legacy output) of a stored hash in a fast legacy format, or null
   * when the stored hash is not one to wrap. Runs through the same limiter as sign-ins.
   */
  wrap(stored: string): Promise<string | null>;
  stats(): PasswordHasherStats;
}

/** A stored hash in no accepted format: a data error to surface, never a silent "wrong password". */
export class UnsupportedHashFormatError extends Error {
  constructor() {
    // The hash itself stays out of the message: secrets never reach logs.
    super('Stored password hash is not in a supported format.');
    this.name = 'UnsupportedHashFormatError';
  }
}

const defaultMaxQueue = 64;

export function createPasswordHasher(options: PasswordHasherOptions): PasswordHasher {
  const params = { ...options.params };
  assertValidArgon2Params(params);
  const argon2Options = {
    type: argon2.argon2id,
    memoryCost: params.memoryKiB,
    timeCost: params.iterations,
    parallelism: params.parallelism,
  } as const;
  const maxConcurrent = options.maxConcurrent ?? availableParallelism();
  const limiter = createConcurrencyLimiter({
    maxConcurrent,
    maxQueue: options.maxQueue ?? defaultMaxQueue,
  });
  const counters = { verifications: 0, dummyVerifications: 0, hashes: 0, wraps: 0 };

  // Unknown and locked accounts are checked against this hash so they take as long as a real
  // argon2id verification at the current parameters: the response time must not reveal whether
  // an account exists. Its password is random and discarded, so nothing can ever match it.
  const dummyHash = argon2.hash(randomBytes(32), argon2Options);
  // Surface a failure on first use, not as an unhandled rejection at start.
  dummyHash.catch(() => undefined);

  async function verifyArgon2(stored: string, password: string): Promise<VerifyResult> {
    // Rampart's own hashes are of the NFKC form, so it goes first. An imported argon2 hash may
    // have been made from the password as typed: try that too, and rehash it into NFKC form.
    const [first, ...rest] = argon2Candidates(password);
    if (await argon2.verify(stored, first)) {
      return { ok: true, needsRehash: isStale(stored) };
    }
    for (const form of rest) {
      if (await argon2.verify(stored, form)) return { ok: true, needsRehash: true };
    }
    return { ok: false, needsRehash: isStale(stored) };
  }

  function isStale(stored: string): boolean {
    if (!stored.startsWith('$argon2id$')) return true;
    return argon2.needsRehash(stored, {
      memoryCost: params.memoryKiB,
      timeCost: params.iterations,
      parallelism: params.parallelism,
    });
  }

  async function verifyLegacy(parsed: ParsedHash, stored: string, password: string): Promise<boolean> {
    // Imported systems may not have normalised: the password as received first, then NFKC.
    for (const form of candidateForms(password)) {
      const ok =
        parsed.kind === 'bcrypt' ? await verifyBcrypt(stored, form) : verifyLegacyDigest(parsed, form);
      if (ok) return true;
    }
    return false;
  }

  async function verifyWrapped(parsed: WrappedHash, password: string): Promise<boolean> {
    // As for legacy hashes: the exporting system may not have normalised.
    for (const form of candidateForms(password)) {
      let ok: boolean;
      try {
        ok = await argon2.verify(parsed.argon2, await legacyOutput(parsed.legacy, form));
      } catch {
        // A descriptor or PHC string the parser let through but a library refuses: a data error, never a 500.
        throw new UnsupportedHashFormatError();
      }
      if (ok) return true;
    }
    return false;
  }

  return {
    params: Object.freeze({ ...params }),

    hash(password) {
      return limiter.run(() => {
        counters.hashes += 1;
        return argon2.hash(normalisePassword(password), argon2Options);
      });
    },

    verify(stored, password) {
      const parsed = parseHash(stored);
      if (parsed === null) return Promise.reject(new UnsupportedHashFormatError());
      // A hash costing far more than a sign-in (imported before the bounds, or written into the table) is
      // refused before it takes a slot: run, it would hold one for seconds per wrong password. Callers
      // answer it as any unusable hash, after a dummy verification of the usual cost.
      if (excessiveCost(parsed, params) !== null) return Promise.reject(new UnsupportedHashFormatError());
      return limiter.run(async () => {
        counters.verifications += 1;
        if (parsed.kind === 'argon2') return verifyArgon2(stored, password);
        // A wrapped hash is always replaced by plain argon2id of the password once it is known.
        if (parsed.kind === 'wrapped')
          return { ok: await verifyWrapped(parsed, password), needsRehash: true };
        // Legacy formats are always upgraded to argon2id on a successful sign-in.
        return { ok: await verifyLegacy(parsed, stored, password), needsRehash: true };
      });
    },

    verifyDummy(password) {
      return limiter.run(async () => {
        counters.dummyVerifications += 1;
        const dummy = await dummyHash;
        // Same number of argon2 runs as a failed verifyArgon2 for this input.
        for (const form of argon2Candidates(password)) await argon2.verify(dummy, form);
      });
    },

    async wrap(stored) {
      const parsed = parseHash(stored);
      const parts = parsed !== null && wrapWorthy(parsed) ? legacyParts(stored, parsed) : null;
      if (parts === null) return null;
      return limiter.run(async () => {
        counters.wraps += 1;
        return formatWrapped(parts.legacy, await argon2.hash(parts.output, argon2Options));
      });
    },

    stats() {
      return { ...counters, active: limiter.active, queued: limiter.queued, maxConcurrent };
    },
  };
}

function argon2Candidates(password: string): [string, ...string[]] {
  const normalised = normalisePassword(password);
  return normalised === password ? [normalised] : [normalised, password];
}

type WrappedHash = Extract<ParsedHash, { kind: 'wrapped' }>;

function verifyLegacyDigest(parsed: ParsedHash, password: string): boolean {
  return parsed.kind === 'sha256-salted' && verifySha256(parsed, password);
}
