import { Buffer } from 'node:buffer';
import { describe, expect, it } from 'vitest';
import { parseHash } from './formats.ts';
import { createPasswordHasher, hashFormat } from './index.ts';
import { verifyBcrypt } from './legacy.ts';

const hasher = createPasswordHasher({
  params: { memoryKiB: 1024, iterations: 1, parallelism: 1 },
  maxConcurrent: 2,
});

describe('bcrypt known answers', () => {
  // Openwall crypt_blowfish 1.3 wrapper.c test vectors (also in John the Ripper and glibc/libxcrypt).
  const openwall: Array<[password: string, stored: string]> = [
    ['U*U', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'],
    ['U*U*', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.VGOzA784oUp/Z0DY336zx7pLYAy0lwK'],
    ['U*U*U', '$2a$05$XXXXXXXXXXXXXXXXXXXXXOAcXxm9kjPGEMsLznoKqmqw7tc8WCx4a'],
    ['', '$2a$05$CCCCCCCCCCCCCCCCCCCCC.7uG0VCzI2bS7j6ymqJi9CdcdxiRTWNy'],
    [
      '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789chars after 72 are ignored',
      '$2a$05$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui',
    ],
  ];

  for (const [password, stored] of openwall) {
    it(`verifies ${JSON.stringify(password.slice(0, 12))} against ${stored.slice(0, 16)}…`, async () => {
      await expect(hasher.verify(stored, password)).resolves.toEqual({ ok: true, needsRehash: true });
      const wrong = password === '' ? ' ' : `#${password.slice(1)}`;
      await expect(hasher.verify(stored, wrong)).resolves.toMatchObject({ ok: false });
    });
  }

  it('verifies the $2y$ example of the PHP manual (password_verify: "rasmuslerdorf")', async () => {
    const stored = '$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a';
    expect(hashFormat(stored)).toBe('bcrypt');
    await expect(hasher.verify(stored, 'rasmuslerdorf')).resolves.toEqual({ ok: true, needsRehash: true });
    await expect(hasher.verify(stored, 'rasmuslerdorF')).resolves.toMatchObject({ ok: false });
  });

  it('maps $2y$ and $2b$ to the same algorithm (crypt_blowfish vectors with 8-bit bytes)', async () => {
    // These passwords are not valid UTF-8, so they go to the bcrypt step as bytes.
    await expect(
      verifyBcrypt('$2y$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq', Buffer.from([0xa3])),
    ).resolves.toBe(true);
    await expect(
      verifyBcrypt('$2b$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq', Buffer.from([0xa3])),
    ).resolves.toBe(true);
    await expect(
      verifyBcrypt(
        '$2y$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e',
        Buffer.from([0xff, 0xff, 0xa3]),
      ),
    ).resolves.toBe(true);
    await expect(
      verifyBcrypt(
        '$2y$05$/OK.fbVrR/bpIqNJ5ianF.nRht2l/HRhr6zmCp9vYUvvsqynflf9e',
        Buffer.from([0xff, 0xa3, 0x33, 0x34, 0x35]),
      ),
    ).resolves.toBe(true);
  });
});

describe('salted SHA-256 layouts, known answers', () => {
  // Expected strings computed once on the command line, independently of this code:
  //   (1) { printf 'secret'; printf 'NaCl4you'; } | openssl dgst -sha256 -binary > d;
  //       { cat d; printf 'NaCl4you'; } | openssl base64 -A
  //   (2) printf 'Xy7q2Lp9secret' | sha256sum
  //   (3) { printf '\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff'; printf 'secret'; } | sha256sum
  // and the same with 'P\xc3\xa4ssw\xc3\xb6rd' (NFC "Pässwörd") in place of 'secret'.
  const layouts = [
    {
      layout: 'ldap-ssha256',
      secret: '{SSHA256}KL/DxMBpqxYJnQdr9ny2yIwFN+rah+ch0kWsehYDxlVOYUNsNHlvdQ==',
      unicode: '{SSHA256}7CiF52ve8zKr7+lt493sQZc5xgreU1Y7Qh52IWOniDNOYUNsNHlvdQ==',
    },
    {
      layout: 'dollar-text-salt',
      secret: 'sha256$Xy7q2Lp9$5e84858eba0b16f1aa519499569bf83e2fa76a8ec6fd013e779c1cbd6fef2ee3',
      unicode: 'sha256$Xy7q2Lp9$bfca7d7945fedf12d47449c5e508bb83e81686ca6aca9b289c2e790956e1739d',
    },
    {
      layout: 'colon-hex-salt',
      secret:
        'sha256:00112233445566778899aabbccddeeff:8d5a81abe7cadfd86234f79e6bf1f8c336db421070a0f361b3309b7b67ea9ce7',
      unicode:
        'sha256:00112233445566778899aabbccddeeff:e7c62cbd377f48c18014b72aad076c63aed14158982299ec29bed57b0468dd80',
    },
  ] as const;

  for (const { layout, secret, unicode } of layouts) {
    it(`${layout}: accepts "secret", refuses others, always asks for a rehash`, async () => {
      expect(hashFormat(secret)).toBe('sha256-salted');
      expect(parseHash(secret)).toMatchObject({ layout });
      await expect(hasher.verify(secret, 'secret')).resolves.toEqual({ ok: true, needsRehash: true });
      await expect(hasher.verify(secret, 'Secret')).resolves.toEqual({ ok: false, needsRehash: true });
      await expect(hasher.verify(secret, 'secret ')).resolves.toMatchObject({ ok: false });
    });

    it(`${layout}: a hash of NFC "Pässwörd" accepts the NFC and the NFD form`, async () => {
      await expect(hasher.verify(unicode, 'P\u00e4ssw\u00f6rd')).resolves.toMatchObject({ ok: true });
      await expect(hasher.verify(unicode, 'Pa\u0308sswo\u0308rd')).resolves.toMatchObject({ ok: true });
      await expect(hasher.verify(unicode, 'Passwort')).resolves.toMatchObject({ ok: false });
    });
  }

  it('tries the password as received before its NFKC form (imported systems may not normalise)', async () => {
    // { printf '\x00…\xff'; printf '\xef\xac\x81sh'; } | sha256sum — U+FB01 "ﬁ" ligature + "sh", unnormalised.
    const stored =
      'sha256:00112233445566778899aabbccddeeff:9af1592adb5e31f98c9d7a3b79e7e49a103163f0df27afb164785ea9214957a8';
    await expect(hasher.verify(stored, '\ufb01sh')).resolves.toMatchObject({ ok: true });
    await expect(hasher.verify(stored, 'fish')).resolves.toMatchObject({ ok: false });
  });
});
