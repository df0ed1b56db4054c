/**
 * Defect (security review, medium): an imported argon2 or bcrypt hash set its own verification cost, up to
 * the parser's absolute limits (m=1 GiB, t=32, p=16, bcrypt cost 16): ~50 s and 1 GiB of a shared hasher
 * slot per wrong password, so a few such accounts tried in a loop stalled every sign-in. A stored hash may
 * now cost at most 8× the configured argon2id (memory, and memory × iterations; never less than 8× the
 * defaults), 4 lanes, bcrypt cost 13; the hasher refuses one above that as an unusable hash, before it
 * takes a slot.
 */
import { randomBytes } from 'node:crypto';
import argon2 from 'argon2';
import { describe, expect, it } from 'vitest';
import {
  type Argon2Params,
  createPasswordHasher,
  defaultArgon2Params,
  excessiveCost,
  parseHash,
  UnsupportedHashFormatError,
} from './index.ts';

const b64 = (n: number) => randomBytes(n).toString('base64').replace(/=+$/, '');
const phc = (params: string) => `$argon2id$v=19$${params}$${b64(16)}$${b64(32)}`;
const bcryptAt = (cost: number) => `$2b$${String(cost).padStart(2, '0')}$${'a'.repeat(53)}`;
const small: Argon2Params = { memoryKiB: 1024, iterations: 1, parallelism: 1 };

function excess(stored: string, configured: Argon2Params = defaultArgon2Params): string | null {
  const parsed = parseHash(stored);
  if (parsed === null) throw new Error(`not a hash: ${stored}`);
  return excessiveCost(parsed, configured);
}

describe('excessiveCost', () => {
  it.each([
    ['npm argon2 / argon2-cffi defaults', phc('m=65536,t=3,p=4')],
    ['PHP PASSWORD_ARGON2ID defaults', phc('m=65536,t=4,p=1')],
    ['the configured defaults', phc('m=19456,t=2,p=1')],
    ['bcrypt cost 12', bcryptAt(12)],
    ['bcrypt cost 13', bcryptAt(13)],
  ])('admits %s', (_name, stored) => {
    expect(excess(stored)).toBeNull();
  });

  it.each([
    ['m=1 GiB, t=32 (the old limits)', phc('m=1048576,t=32,p=1'), /memory above the limit of 155648 KiB/],
    ['m=304 MiB, t=1', phc('m=311296,t=1,p=1'), /memory above the limit of 155648 KiB/],
    ['m=152 MiB, t=3', phc('m=155648,t=3,p=1'), /memory × iterations above the limit of 311296 KiB/],
    ['p=16', phc('m=65536,t=1,p=16'), /parallelism above the limit of 4/],
    ['bcrypt cost 14', bcryptAt(14), /bcrypt cost above the limit of 13/],
    ['bcrypt cost 16', bcryptAt(16), /bcrypt cost above the limit of 13/],
  ])('refuses %s, naming the limit', (_name, stored, reason) => {
    expect(excess(stored)).toMatch(reason);
  });

  it('bounds the argon2id part of a wrapped hash too', () => {
    const inner = phc('m=1048576,t=32,p=1');
    const wrapped = `$rampart-wrap$v=1$sha256$l=colon-hex-salt,s=ABEi${inner}`;
    expect(excess(wrapped)).toMatch(/memory above the limit/);
  });

  it('is never below 8× the defaults, so a cheaper configuration (as in tests) keeps default-made hashes', () => {
    expect(excess(phc('m=65536,t=3,p=4'), small)).toBeNull();
    expect(excess(phc('m=19456,t=2,p=1'), small)).toBeNull();
  });

  it('grows with a costlier configuration', () => {
    const costly = { memoryKiB: 262_144, iterations: 4, parallelism: 1 };
    expect(excess(phc('m=1048576,t=4,p=1'), costly)).toBeNull();
    expect(excess(phc('m=1048576,t=32,p=1'), costly)).toMatch(/memory × iterations/);
  });
});

describe('the hasher, given a stored hash above the bounds', () => {
  it('refuses it as an unusable hash without running it, even with the right password', async () => {
    const hasher = createPasswordHasher({ params: small, maxConcurrent: 1 });
    // Cheap to run (so that this test stays fast without the fix) but over the lane bound.
    const stored = await argon2.hash('right password', {
      type: argon2.argon2id,
      memoryCost: 64,
      timeCost: 1,
      parallelism: 5,
    });
    await expect(hasher.verify(stored, 'right password')).rejects.toBeInstanceOf(UnsupportedHashFormatError);
    expect(hasher.stats().verifications).toBe(0);
  });
});
