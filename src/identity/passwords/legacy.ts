import { Buffer } from 'node:buffer';
import { createHash, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcrypt';
import type { ParsedHash } from './formats.ts';

type Sha256Hash = Extract<ParsedHash, { kind: 'sha256-salted' }>;

/**
 * Verifies a bcrypt hash. The native `bcrypt` package knows `$2a$` and `$2b$` only; `$2y$` is
 * PHP's (crypt_blowfish's) name for the same corrected algorithm as `$2b$`, so it is rewritten
 * before comparing. `$2x$` (crypt_blowfish's deliberately buggy mode) is not accepted at import.
 * bcrypt reads at most 72 bytes of the password, as it did on the system the hash came from.
 */
export async function verifyBcrypt(stored: string, password: string | Buffer): Promise<boolean> {
  const comparable = stored.startsWith('$2y$') ? `$2b$${stored.slice(4)}` : stored;
  return bcrypt.compare(password, comparable);
}

/** Verifies one of the three accepted salted SHA-256 layouts (see formats.ts). */
export function verifySha256(parsed: Sha256Hash, password: string | Buffer): boolean {
  const passwordBytes = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  const hash = createHash('sha256');
  if (parsed.saltFirst) {
    hash.update(parsed.salt).update(passwordBytes);
  } else {
    hash.update(passwordBytes).update(parsed.salt);
  }
  // Compare in constant time: an early exit would leak how many leading digest bytes matched.
  return timingSafeEqual(hash.digest(), parsed.digest);
}
