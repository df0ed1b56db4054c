import type { Buffer } from 'node:buffer';
import { type LegacyDescriptor, type ParsedHash, wrapPrefix } from './formats.ts';
import { bcryptChecksum, bcryptDescriptor, bcryptOutput, sha256Output } from './legacy.ts';

/**
 * Hash wrapping ("onion" upgrade, decision 0012): a fast legacy hash H(password) is replaced, without
 * knowing the password, by argon2id(H(password)) at the configured parameters. Verification recomputes
 * H of the candidate with the stored descriptor and argon2id-verifies that; a success rehashes the
 * password to plain argon2id as for any legacy hash.
 *
 * bcrypt is wrapped below this cost only. From cost 10 (OWASP's minimum) bcrypt is itself a slow,
 * adaptive hash; wrapping it would add a whole argon2id to every verification of it (and make a wrong
 * password for such an account even slower than the dummy verification) for little gain at rest.
 * Below 10 it is cheap enough to guess that the argon2id layer is what protects it.
 */
export const bcryptWrapBelowCost = 10;

/** Whether a stored hash is in a fast format the wrapping job replaces. */
export function wrapWorthy(parsed: ParsedHash | null): boolean {
  if (parsed === null) return false;
  if (parsed.kind === 'sha256-salted') return true;
  return parsed.kind === 'bcrypt' && parsed.cost < bcryptWrapBelowCost;
}

/** The descriptor to store and the legacy output to feed argon2id, for a wrap-worthy stored hash. */
export function legacyParts(
  stored: string,
  parsed: ParsedHash,
): { legacy: LegacyDescriptor; output: Buffer } | null {
  if (parsed.kind === 'sha256-salted') {
    const { layout, salt, saltFirst, digest } = parsed;
    return { legacy: { scheme: 'sha256', layout, salt, saltFirst }, output: digest };
  }
  if (parsed.kind === 'bcrypt') return { legacy: bcryptDescriptor(stored), output: bcryptChecksum(stored) };
  return null;
}

/** `$rampart-wrap$v=1$sha256$l=<layout>,s=<b64 salt>$argon2id$…` or `…$bcrypt$r=2b,c=05,s=<22 chars>$argon2id$…`. */
export function formatWrapped(legacy: LegacyDescriptor, argon2Phc: string): string {
  if (!argon2Phc.startsWith('$argon2id$')) throw new Error('a wrapped hash holds an argon2id PHC string');
  const descriptor =
    legacy.scheme === 'sha256'
      ? `sha256$l=${legacy.layout},s=${legacy.salt.toString('base64').replace(/=+$/, '')}`
      : `bcrypt$r=2${legacy.minor},c=${String(legacy.cost).padStart(2, '0')},s=${legacy.salt}`;
  return `${wrapPrefix}${descriptor}${argon2Phc}`;
}

/** The legacy function of a candidate password, with the stored descriptor (library code only). */
export function legacyOutput(legacy: LegacyDescriptor, password: string): Promise<Buffer> {
  return legacy.scheme === 'sha256'
    ? Promise.resolve(sha256Output(legacy, password))
    : bcryptOutput(legacy, password);
}
