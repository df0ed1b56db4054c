import argon2 from 'argon2';
import { describe, expect, it } from 'vitest';
import {
  type Argon2Params,
  createPasswordHasher,
  defaultArgon2Params,
  HasherBusyError,
  normalisePassword,
  UnsupportedHashFormatError,
} from './index.ts';

// Small parameters keep the suite fast on a 2-core machine; no vector dictates them here.
const small: Argon2Params = { memoryKiB: 1024, iterations: 1, parallelism: 1 };
const nfc = 'P\u00e4ssw\u00f6rd';
const nfd = 'Pa\u0308sswo\u0308rd';

describe('defaults', () => {
  it('are the OWASP argon2id parameters', () => {
    expect(defaultArgon2Params).toEqual({ memoryKiB: 19_456, iterations: 2, parallelism: 1 });
  });
});

describe('normalisePassword', () => {
  it('applies NFKC and nothing else', () => {
    expect(normalisePassword(nfd)).toBe(nfc);
    expect(normalisePassword('\ufb01sh')).toBe('fish');
    expect(normalisePassword('\u212b')).toBe('\u00c5');
    expect(normalisePassword('  Mixed Case  ')).toBe('  Mixed Case  ');
  });
});

describe('hash and verify', () => {
  const hasher = createPasswordHasher({ params: small, maxConcurrent: 2 });

  it('produces an argon2id PHC string at the configured parameters, salted afresh each time', async () => {
    const first = await hasher.hash('correct horse');
    const second = await hasher.hash('correct horse');
    expect(first).toMatch(/^\$argon2id\$v=19\$m=1024,p=1,t=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$/);
    expect(second).not.toBe(first);
    await expect(hasher.verify(first, 'correct horse')).resolves.toEqual({ ok: true, needsRehash: false });
    await expect(hasher.verify(first, 'correct horsf')).resolves.toEqual({ ok: false, needsRehash: false });
  });

  it('verifies the NFC and NFD forms of "Pässwörd" alike, whichever form was hashed', async () => {
    for (const [hashed, typed] of [
      [nfc, nfd],
      [nfd, nfc],
    ] as const) {
      const stored = await hasher.hash(hashed);
      await expect(hasher.verify(stored, typed)).resolves.toEqual({ ok: true, needsRehash: false });
    }
  });

  it('stores the NFKC form: the hash verifies against argon2 given the normalised password', async () => {
    const stored = await hasher.hash('\ufb01sh');
    await expect(argon2.verify(stored, 'fish')).resolves.toBe(true);
  });

  it('accepts an imported argon2id hash of an unnormalised password, and asks for a rehash', async () => {
    const imported = await argon2.hash('\ufb01sh', {
      type: argon2.argon2id,
      memoryCost: 1024,
      timeCost: 1,
      parallelism: 1,
    });
    await expect(hasher.verify(imported, '\ufb01sh')).resolves.toEqual({ ok: true, needsRehash: true });
  });

  it('asks for a rehash once the parameters change', async () => {
    const stored = await hasher.hash('correct horse');
    const stronger = createPasswordHasher({ params: { ...small, iterations: 2 }, maxConcurrent: 1 });
    await expect(stronger.verify(stored, 'correct horse')).resolves.toEqual({ ok: true, needsRehash: true });
    const rehashed = await stronger.hash('correct horse');
    await expect(stronger.verify(rehashed, 'correct horse')).resolves.toEqual({
      ok: true,
      needsRehash: false,
    });
  });

  it('asks to rehash argon2i and argon2d hashes even at the current parameters', async () => {
    for (const type of [argon2.argon2i, argon2.argon2d] as const) {
      const stored = await argon2.hash('pw', { type, memoryCost: 1024, timeCost: 1, parallelism: 1 });
      await expect(hasher.verify(stored, 'pw')).resolves.toEqual({ ok: true, needsRehash: true });
    }
  });

  it('refuses an unsupported stored hash loudly, without counting a verification', async () => {
    const before = hasher.stats().verifications;
    await expect(hasher.verify('5ebe2294ecd0e0f08eab7690d2a6ee69', 'secret')).rejects.toBeInstanceOf(
      UnsupportedHashFormatError,
    );
    // The stored value never reaches the error message (it may be a real hash).
    const error: unknown = await hasher.verify('$2b$99$not a hash', 'x').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(UnsupportedHashFormatError);
    expect((error as Error).message).not.toContain('not a hash');
    expect(hasher.stats().verifications).toBe(before);
  });
});

describe('verifyDummy and stats', () => {
  it('counts dummy verifications apart from real ones', async () => {
    const hasher = createPasswordHasher({ params: small, maxConcurrent: 1 });
    await hasher.verifyDummy('guess');
    await hasher.verifyDummy(nfd);
    expect(hasher.stats()).toEqual({
      verifications: 0,
      dummyVerifications: 2,
      hashes: 0,
      wraps: 0,
      active: 0,
      queued: 0,
      maxConcurrent: 1,
    });
    const stored = await hasher.hash('pw');
    await hasher.verify(stored, 'pw');
    expect(hasher.stats()).toEqual({
      verifications: 1,
      dummyVerifications: 2,
      hashes: 1,
      wraps: 0,
      active: 0,
      queued: 0,
      maxConcurrent: 1,
    });
  });
});

describe('bounded concurrency', () => {
  it('queues up to maxQueue and refuses the rest with HasherBusyError (maxConcurrent 1, maxQueue 2)', async () => {
    const hasher = createPasswordHasher({ params: small, maxConcurrent: 1, maxQueue: 2 });
    const stored = await hasher.hash('pw');
    const calls = [
      ...Array.from({ length: 6 }, () => hasher.verify(stored, 'wrong')),
      ...Array.from({ length: 2 }, () => hasher.verifyDummy('wrong')),
      hasher.hash('pw'),
    ];
    expect(hasher.stats()).toMatchObject({ active: 1, queued: 2 });
    const settled = await Promise.allSettled(calls);
    const refused = settled.filter((r) => r.status === 'rejected').map((r) => r.reason);
    expect(settled.filter((r) => r.status === 'fulfilled')).toHaveLength(3);
    expect(refused).toHaveLength(6);
    for (const error of refused) {
      expect(error).toBeInstanceOf(HasherBusyError);
      expect((error as HasherBusyError).retryAfterSeconds).toBeGreaterThanOrEqual(1);
    }
    // Refused calls performed no work: the first three were real verifications.
    expect(hasher.stats()).toEqual({
      verifications: 3,
      dummyVerifications: 0,
      hashes: 1,
      wraps: 0,
      active: 0,
      queued: 0,
      maxConcurrent: 1,
    });
  });

  it('runs every call when the queue is long enough, and counts each verification once', async () => {
    const hasher = createPasswordHasher({ params: small, maxConcurrent: 1, maxQueue: 64 });
    const stored = await hasher.hash('pw');
    const results = await Promise.all(Array.from({ length: 50 }, () => hasher.verify(stored, 'wrong')));
    expect(results.every((r) => !r.ok)).toBe(true);
    expect(hasher.stats()).toMatchObject({ verifications: 50, active: 0, queued: 0 });
  });
});

describe('construction', () => {
  it('refuses parameters argon2 or the limiter cannot honour', () => {
    expect(() => createPasswordHasher({ params: { ...small, memoryKiB: 4 } })).toThrow(RangeError);
    expect(() => createPasswordHasher({ params: { ...small, iterations: 0 } })).toThrow(RangeError);
    expect(() => createPasswordHasher({ params: { ...small, parallelism: 1.5 } })).toThrow(RangeError);
    expect(() => createPasswordHasher({ params: small, maxConcurrent: 0 })).toThrow(RangeError);
    expect(() => createPasswordHasher({ params: small, maxQueue: -1 })).toThrow(RangeError);
  });
});
