import { createHash, hash, randomBytes, timingSafeEqual } from 'node:crypto';

/**
 * Opaque bearer tokens: a readable prefix (so leaked tokens are recognisable by secret scanners) and
 * 256 random bits. Only their SHA-256 is stored: the input is already uniformly random, so a slow
 * password hash would add cost without adding safety.
 */
export function newToken(prefix: string): { token: string; hash: Buffer } {
  const token = `${prefix}_${randomBytes(32).toString('base64url')}`;
  return { token, hash: hashToken(token) };
}

/** SHA-256 of a token (one-shot `crypto.hash`: no Hash object per call; tokens are checked per request). */
export function hashToken(token: string): Buffer {
  return hash('sha256', token, 'buffer');
}

/** Compare secrets in constant time: an early exit would leak the length of the matching prefix. */
export function safeEqual(a: string | Buffer, b: string | Buffer): boolean {
  const left = createHash('sha256').update(a).digest();
  const right = createHash('sha256').update(b).digest();
  return timingSafeEqual(left, right);
}
