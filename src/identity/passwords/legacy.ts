import { Buffer } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcrypt';
import type { LegacyDescriptor, ParsedHash } from './formats.ts';

type Sha256Hash = Extract<ParsedHash, { kind: 'sha256-salted' }>;
type Sha256Descriptor = Extract<LegacyDescriptor, { scheme: 'sha256' }>;
type BcryptDescriptor = Extract<LegacyDescriptor, { scheme: 'bcrypt' }>;

/** `$2a$05$` + 22 salt characters: the prefix bcrypt strings share before the 31-character checksum. */
const bcryptPrefixLength = 29;

/**
 * Verifies a bcrypt hash. The native `bcrypt` package knows `$2a$` and `$2b$` only; `$2y$` is
 * PHP's (crypt_blowfish's) name for the same corrected algorithm as `$2b$`, so it is rewritten
 * before comparing. `$2x$` (crypt_blowfish's deliberately buggy mode) is not accepted at import.
 * bcrypt reads at most 72 bytes of the password, as it did on the system the hash came from.
 */
export async function verifyBcrypt(stored: string, password: string | Buffer): Promise<boolean> {
  return bcrypt.compare(password, comparableBcrypt(stored));
}

/** `$2y$` is `$2b$` under PHP's name; the native package knows the latter only. */
export function comparableBcrypt(stored: string): string {
  return stored.startsWith('$2y$') ? `$2b$${stored.slice(4)}` : stored;
}

/** What a wrapped hash keeps of a bcrypt string: its minor version, cost and salt, never its checksum. */
export function bcryptDescriptor(stored: string): BcryptDescriptor {
  const comparable = comparableBcrypt(stored);
  return {
    scheme: 'bcrypt',
    minor: comparable[2] === 'a' ? 'a' : 'b',
    cost: Number(comparable.slice(4, 6)),
    salt: comparable.slice(7, bcryptPrefixLength),
  };
}

/** The 31-character checksum of a bcrypt string: the legacy output a wrapped hash feeds to argon2id. */
export function bcryptChecksum(stored: string): Buffer {
  return Buffer.from(comparableBcrypt(stored).slice(bcryptPrefixLength), 'latin1');
}

/** bcrypt of a candidate password with a stored cost and salt, through the native package; its checksum. */
export async function bcryptOutput(legacy: BcryptDescriptor, password: string | Buffer): Promise<Buffer> {
  const setting = `$2${legacy.minor}$${String(legacy.cost).padStart(2, '0')}$${legacy.salt}`;
  return bcryptChecksum(await bcrypt.hash(password, setting));
}

/** sha256 of the salted message of one of the accepted layouts (see formats.ts). */
export function sha256Output(legacy: Sha256Descriptor | Sha256Hash, password: string | Buffer): Buffer {
  const passwordBytes = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  const hash = createHash('sha256');
  if (legacy.saltFirst) {
    hash.update(legacy.salt).update(passwordBytes);
  } else {
    hash.update(passwordBytes).update(legacy.salt);
  }
  return hash.digest();
}

/** Verifies one of the three accepted salted SHA-256 layouts (see formats.ts). */
export function verifySha256(parsed: Sha256Hash, password: string | Buffer): boolean {
  // Compare in constant time: an early exit would leak how many leading digest bytes matched.
  return timingSafeEqual(sha256Output(parsed, password), parsed.digest);
}
