import { describe, expect, it } from 'vitest';
import { hashFormat } from './index.ts';

describe('hashFormat (import validation)', () => {
  it.each([
    ['$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4', 'argon2id'],
    ['$argon2id$v=19$m=256,p=1,t=2$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4', 'argon2id'],
    ['$argon2i$m=65536,t=2,p=1$c29tZXNhbHQ$9sTbSlTio3Biev89thdrlKKiCaYsjjYVJxGAL3swxpQ', 'argon2i'],
    ['$argon2d$v=16$m=8,t=1,p=1$ICAgICAgICA$X54KZYxUSfMUihzebb70sKbheabHilo8gsUldrVU4IU', 'argon2d'],
    ['$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW', 'bcrypt'],
    ['$2b$05$/OK.fbVrR/bpIqNJ5ianF.Sa7shbm4.OzKpvFnX1pQLmQW96oUlCq', 'bcrypt'],
    ['$2y$10$.vGA1O9wmRjrwAVXD98HNOgsNpDczlqm3Jq7KnEd1rVAGv3Fykk1a', 'bcrypt'],
    ['{SSHA256}KL/DxMBpqxYJnQdr9ny2yIwFN+rah+ch0kWsehYDxlVOYUNsNHlvdQ==', 'sha256-salted'],
    ['sha256$Xy7q2Lp9$5e84858eba0b16f1aa519499569bf83e2fa76a8ec6fd013e779c1cbd6fef2ee3', 'sha256-salted'],
    ['sha256:0011:8d5a81abe7cadfd86234f79e6bf1f8c336db421070a0f361b3309b7b67ea9ce7', 'sha256-salted'],
  ])('recognises %s as %s', (stored, format) => {
    expect(hashFormat(stored)).toBe(format);
  });

  it.each([
    ['unsalted hex SHA-256', '2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b'],
    ['MD5', '5ebe2294ecd0e0f08eab7690d2a6ee69'],
    ['unsalted LDAP {SHA256}', '{SHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols='],
    ['{SSHA256} with no salt bytes', '{SSHA256}K7gNU3sdo+OL0wNhqoVWhr3g6s1xYv72ol/pe/Unols='],
    [
      '{SSHA256} with non-canonical base64',
      '{SSHA256}KL/DxMBpqxYJnQdr9ny2yIwFN+rah+ch0kWsehYDxlVOYUNsNHlvdQ',
    ],
    [
      'sha256$ with an empty salt',
      'sha256$$5e84858eba0b16f1aa519499569bf83e2fa76a8ec6fd013e779c1cbd6fef2ee3',
    ],
    [
      'sha256: with an odd-length hex salt',
      'sha256:001:8d5a81abe7cadfd86234f79e6bf1f8c336db421070a0f361b3309b7b67ea9ce7',
    ],
    [
      'sha256: with a short digest',
      'sha256:0011:8d5a81abe7cadfd86234f79e6bf1f8c336db421070a0f361b3309b7b67ea9c',
    ],
    ['crypt(3) SHA-256', '$5$rounds=5000$saltsalt$Gbx5ZAiVhUMjGMJv3hWu9YcxbRJ8ftKgbRhBZ1ujd18'],
    ['bcrypt $2x$ (crypt_blowfish bug mode)', '$2x$05$/OK.fbVrR/bpIqNJ5ianF.CE5elHaaO4EbggVDjb8P19RukzXSM3e'],
    ['bcrypt cost above the import limit', '$2b$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'],
    ['bcrypt cost below 4', '$2b$03$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW'],
    ['truncated bcrypt', '$2b$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOe'],
    [
      'argon2id above the memory limit',
      '$argon2id$v=19$m=4194304,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc',
    ],
    ['argon2id without a tag', '$argon2id$v=19$m=256,t=2,p=1$c29tZXNhbHQ$'],
    [
      'argon2id with a 4-byte salt',
      '$argon2id$v=19$m=256,t=2,p=1$c29tZQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4',
    ],
    [
      'argon2 with an unknown version',
      '$argon2id$v=42$m=256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4',
    ],
    [
      'argon2 with a repeated parameter',
      '$argon2id$v=19$m=256,t=2,p=1,m=8$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4',
    ],
    ['argon2 without p', '$argon2id$v=19$m=256,t=2$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4'],
    [
      'argon2 with an unknown parameter',
      '$argon2id$v=19$m=256,t=2,p=1,x=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4',
    ],
    [
      'argon2 with a leading zero',
      '$argon2id$v=19$m=0256,t=2,p=1$c29tZXNhbHQ$nf65EOgLrQMR/uIPnA4rEsF5h7TKyQwu9U1bMCHGi/4',
    ],
    ['argon2ds', '$argon2ds$v=16$m=8,t=1,p=2$ICAgICAgICA$+6+yBnWbuV7mLs6rKMhvi+SLbkzb5CB6Jd2pSWuC/Kw'],
    ['empty string', ''],
    ['an overlong value', `sha256$${'a'.repeat(600)}$${'0'.repeat(64)}`],
  ])('refuses %s', (_label, stored) => {
    expect(hashFormat(stored)).toBeNull();
  });
});
