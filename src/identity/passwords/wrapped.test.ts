import argon2 from 'argon2';
import { describe, expect, it } from 'vitest';
import { parseHash } from './formats.ts';
import { createPasswordHasher, hashFormat, UnsupportedHashFormatError } from './index.ts';
import { formatWrapped, legacyParts, wrapWorthy } from './wrapped.ts';

const hasher = createPasswordHasher({
  params: { memoryKiB: 1024, iterations: 1, parallelism: 1 },
  maxConcurrent: 2,
});

/** Fast legacy hashes of legacy-vectors.test.ts, with the password each was made of. */
const sha256Vectors = [
  ['ldap-ssha256', '{SSHA256}KL/DxMBpqxYJnQdr9ny2yIwFN+rah+ch0kWsehYDxlVOYUNsNHlvdQ==', 'secret'],
  [
    'dollar-text-salt',
    'sha256$Xy7q2Lp9$5e84858eba0b16f1aa519499569bf83e2fa76a8ec6fd013e779c1cbd6fef2ee3',
    'secret',
  ],
  [
    'colon-hex-salt',
    'sha256:00112233445566778899aabbccddeeff:8d5a81abe7cadfd86234f79e6bf1f8c336db421070a0f361b3309b7b67ea9ce7',
    'secret',
  ],
] as const;
const bcryptVectors = [
  ['U*U', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'],
  ['U*U*', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK'],
  ['U*U*U', '$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a'],
  ['', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy'],
  [
    '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored',
    '$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui',
  ],
] as const;

const wrongOf = (password: string) => (password === '' ? ' ' : `#${password.slice(1)}`);

describe('wrapped hashes: known answers computed with the argon2 reference CLI', () => {
  // The argon2id part was computed independently of this code, from the legacy output of "secret"
  // (the SHA-256 digest; for bcrypt the 31 checksum characters of the Openwall "U*U" vector):
  //   printf <digest hex> | xxd -r -p | argon2 rampart-kat-salt -id -t 1 -k 1024 -p 1 -l 32 -e
  //   printf 'E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW' | argon2 rampart-kat-salt -id -t 1 -k 1024 -p 1 -l 32 -e
  // and the salts base64-encoded with `base64` (padding dropped).
  const argonPart = '$argon2id$v=19$m=1024,t=1,p=1$cmFtcGFydC1rYXQtc2FsdA$';
  const known = [
    [
      'secret',
      `$rampart-wrap$v=1$sha256$l=ldap-ssha256,s=TmFDbDR5b3U${argonPart}3nw1a4cFN4UYOzG+ERNt+pAhxJ1kyDqG0G2Uaionla4`,
    ],
    [
      'secret',
      `$rampart-wrap$v=1$sha256$l=dollar-text-salt,s=WHk3cTJMcDk${argonPart}78+LqtcjM0CzagzDNMlfFQ8yAf4YrnGvGVDYpMpSKkc`,
    ],
    [
      'secret',
      `$rampart-wrap$v=1$sha256$l=colon-hex-salt,s=ABEiM0RVZneImaq7zN3u/w${argonPart}amL8arWRbY+7Y1YvCSt/sd4blgyAu1W7V6ay3Tmt3Nk`,
    ],
    [
      'U*U',
      `$rampart-wrap$v=1$bcrypt$r=2a,c=05,s=CCCCCCCCCCCCCCCCCCCCC.${argonPart}We6MCNQwnuwWZGREM66E9wIBqZhxkO2A83JDA4U6M5o`,
    ],
  ] as const;

  for (const [password, stored] of known) {
    it(`verifies ${stored.slice(0, 40)}…`, async () => {
      expect(hashFormat(stored)).toBe('rampart-wrap');
      await expect(hasher.verify(stored, password)).resolves.toEqual({ ok: true, needsRehash: true });
      await expect(hasher.verify(stored, wrongOf(password))).resolves.toEqual({
        ok: false,
        needsRehash: true,
      });
    });
  }

  it('writes the same string as the reference CLI for the same argon2id salt', async () => {
    const stored = sha256Vectors[0][1];
    const parsed = parseHash(stored);
    if (parsed === null) throw new Error('vector does not parse');
    const parts = legacyParts(stored, parsed);
    if (parts === null) throw new Error('no legacy parts');
    const phc = await argon2.hash(parts.output, {
      type: argon2.argon2id,
      memoryCost: 1024,
      timeCost: 1,
      parallelism: 1,
      salt: Buffer.from('rampart-kat-salt'),
    });
    // The npm package writes the parameters m,p,t; the reference CLI m,t,p (both are read).
    expect(formatWrapped(parts.legacy, phc).replace('p=1,t=1', 't=1,p=1')).toBe(known[0][1]);
  });
});

describe('hasher.wrap', () => {
  for (const [layout, stored, password] of sha256Vectors) {
    it(`${layout}: wraps, accepts the password, refuses another, asks for a rehash`, async () => {
      const wrapped = await hasher.wrap(stored);
      expect(wrapped).toMatch(
        /^\$rampart-wrap\$v=1\$sha256\$l=[a-z0-9-]+,s=[A-Za-z0-9+/]+\$argon2id\$v=19\$/,
      );
      // The legacy digest itself is never kept, in hex or base64.
      const digest = (parseHash(stored) as { digest: Buffer }).digest;
      for (const text of [digest.toString('hex'), digest.toString('base64').replace(/=+$/, '')]) {
        expect(wrapped).not.toContain(text);
      }
      await expect(hasher.verify(wrapped as string, password)).resolves.toEqual({
        ok: true,
        needsRehash: true,
      });
      await expect(hasher.verify(wrapped as string, 'Secret')).resolves.toEqual({
        ok: false,
        needsRehash: true,
      });
    });
  }

  for (const [password, stored] of bcryptVectors) {
    it(`bcrypt cost 5 ${stored.slice(0, 16)}…: wraps, accepts the password, refuses another`, async () => {
      const wrapped = await hasher.wrap(stored);
      expect(wrapped).toMatch(/^\$rampart-wrap\$v=1\$bcrypt\$r=2a,c=05,s=[./A-Za-z0-9]{22}\$argon2id\$/);
      expect(wrapped).not.toContain(stored.slice(29));
      await expect(hasher.verify(wrapped as string, password)).resolves.toEqual({
        ok: true,
        needsRehash: true,
      });
      await expect(hasher.verify(wrapped as string, wrongOf(password))).resolves.toMatchObject({ ok: false });
    });
  }

  it('leaves bcrypt from cost 10 and argon2 alone (decision 0012), and wraps $2y$ below it as $2b$', async () => {
    const php = '$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a';
    expect(wrapWorthy(parseHash(php))).toBe(false);
    await expect(hasher.wrap(php)).resolves.toBeNull();
    await expect(hasher.wrap(await hasher.hash('x'))).resolves.toBeNull();
    await expect(hasher.wrap('not a hash')).resolves.toBeNull();
    // The format itself holds a $2y$ hash of any cost: PHP's manual example, wrapped by hand.
    const parsed = parseHash(php);
    const parts = parsed && legacyParts(php, parsed);
    if (!parts) throw new Error('no legacy parts');
    const wrapped = formatWrapped(parts.legacy, await argon2.hash(parts.output, { type: argon2.argon2id }));
    expect(wrapped).toContain('$bcrypt$r=2b,c=10,');
    await expect(hasher.verify(wrapped, 'rasmuslerdorf')).resolves.toEqual({ ok: true, needsRehash: true });
    await expect(hasher.verify(wrapped, 'rasmuslerdorF')).resolves.toMatchObject({ ok: false });
  });

  it('accepts the NFC and NFD forms of a wrapped hash of NFC "Pässwörd"', async () => {
    const unicode = 'sha256$Xy7q2Lp9$bfca7d7945fedf12d47449c5e508bb83e81686ca6aca9b289c2e790956e1739d';
    const wrapped = (await hasher.wrap(unicode)) as string;
    await expect(hasher.verify(wrapped, 'P\u00e4ssw\u00f6rd')).resolves.toMatchObject({ ok: true });
    await expect(hasher.verify(wrapped, 'Pa\u0308sswo\u0308rd')).resolves.toMatchObject({ ok: true });
  });
});

describe('tampered wrapped hashes', () => {
  const good = `$rampart-wrap$v=1$sha256$l=colon-hex-salt,s=ABEiM0RVZneImaq7zN3u/w$argon2id$v=19$m=1024,t=1,p=1$cmFtcGFydC1rYXQtc2FsdA$amL8arWRbY+7Y1YvCSt/sd4blgyAu1W7V6ay3Tmt3Nk`;

  it.each([
    ['another version', good.replace('v=1$', 'v=2$')],
    ['an unknown scheme', good.replace('$sha256$', '$md5$')],
    ['an unknown layout', good.replace('colon-hex-salt', 'colon-salt')],
    ['non-canonical salt base64', good.replace('u/w$', 'u/x$')],
    ['a padded salt', good.replace('u/w$', 'u/w==$')],
    [
      'parameters out of order',
      good.replace('l=colon-hex-salt,s=ABEiM0RVZneImaq7zN3u/w', 's=ABEiM0RVZneImaq7zN3u/w,l=colon-hex-salt'),
    ],
    ['an argon2i inner hash', good.replace('$argon2id$', '$argon2i$')],
    ['an inner hash over the memory limit', good.replace('m=1024', 'm=4194304')],
    ['no inner hash', good.slice(0, good.indexOf('$argon2id$'))],
    [
      'a bcrypt cost of 31',
      '$rampart-wrap$v=1$bcrypt$r=2b,c=31,s=CCCCCCCCCCCCCCCCCCCCC.$argon2id$v=19$m=1024,t=1,p=1$cmFtcGFydC1rYXQtc2FsdA$We6MCNQwnuwWZGREM66E9wIBqZhxkO2A83JDA4U6M5o',
    ],
    [
      'a short bcrypt salt',
      '$rampart-wrap$v=1$bcrypt$r=2b,c=05,s=CCCC$argon2id$v=19$m=1024,t=1,p=1$cmFtcGFydC1rYXQtc2FsdA$We6MCNQwnuwWZGREM66E9wIBqZhxkO2A83JDA4U6M5o',
    ],
  ])('refuses %s as a format (UnsupportedHashFormatError, a data error)', async (_label, stored) => {
    expect(hashFormat(stored)).toBeNull();
    await expect(hasher.verify(stored, 'secret')).rejects.toBeInstanceOf(UnsupportedHashFormatError);
  });

  it.each([
    ['another salt', good.replace('s=ABEiM0RVZneImaq7zN3u/w', 's=ABEiM0RVZneImaq7zN3u/g')],
    ['another layout', good.replace('colon-hex-salt', 'ldap-ssha256')],
    ['a flipped tag bit', good.replace('amL8', 'amL9')],
  ])('refuses the right password against %s', async (_label, stored) => {
    await expect(hasher.verify(stored, 'secret')).resolves.toMatchObject({ ok: false });
  });
});
