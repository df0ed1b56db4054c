import { Buffer } from 'node:buffer';
import { importLimits } from './params.ts';

export type HashFormat = 'argon2id' | 'argon2i' | 'argon2d' | 'bcrypt' | 'sha256-salted';

/**
 * Salted SHA-256 layouts accepted for import (docs/decisions/0012-password-hashing.md). Exactly these:
 *
 * 1. `{SSHA256}` + base64(sha256(password ‖ salt) ‖ salt): OpenLDAP/389-ds style; the salt is every
 *    byte after the 32-byte digest (at least one).
 * 2. `sha256$<salt>$<hex digest>`, digest = sha256(salt ‖ password), the salt taken as the UTF-8
 *    bytes of its characters: the layout of several PHP- and Django-era applications.
 * 3. `sha256:<hex salt>:<hex digest>`, digest = sha256(saltBytes ‖ password).
 *
 * Anything else (unsalted hex SHA-256, MD5, SHA-1, crypt(3) `$5$`…) is refused: an unsalted fast
 * hash is one rainbow-table lookup from the password, and guessing which of the many ad-hoc
 * layouts a file uses would let a mistaken import silently lock every user out.
 */
export type Sha256Layout = 'ldap-ssha256' | 'dollar-text-salt' | 'colon-hex-salt';

export type ParsedHash =
  | { kind: 'argon2'; format: 'argon2id' | 'argon2i' | 'argon2d' }
  | { kind: 'bcrypt'; format: 'bcrypt'; cost: number }
  | {
      kind: 'sha256-salted';
      format: 'sha256-salted';
      layout: Sha256Layout;
      salt: Buffer;
      digest: Buffer;
      /** Whether the salt goes before the password in the digested message. */
      saltFirst: boolean;
    };

// Long enough for any legitimate hash; bounds the work spent on a hostile import row.
const maxStoredLength = 512;
const sha256Bytes = 32;

// Parameters in any order: the reference implementation writes m,t,p, the npm argon2 package m,p,t.
const argon2Pattern =
  /^\$(argon2id|argon2i|argon2d)\$(?:v=(?:16|19)\$)?([a-z]+=[A-Za-z0-9+/]+(?:,[a-z]+=[A-Za-z0-9+/]+)*)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;
const bcryptPattern = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/;
const ldapPattern = /^\{SSHA256\}([A-Za-z0-9+/]+={0,2})$/;
const dollarPattern = /^sha256\$([^$\s]{1,128})\$([0-9a-fA-F]{64})$/;
const colonPattern = /^sha256:((?:[0-9a-fA-F]{2}){1,64}):([0-9a-fA-F]{64})$/;

/** Which supported format a stored hash is in, or null when it is not one Rampart accepts. */
export function hashFormat(stored: string): HashFormat | null {
  return parseHash(stored)?.format ?? null;
}

export function parseHash(stored: string): ParsedHash | null {
  if (typeof stored !== 'string' || stored.length > maxStoredLength) return null;
  if (stored.startsWith('$argon2')) return parseArgon2(stored);
  if (stored.startsWith('$2')) return parseBcrypt(stored);
  return parseSha256(stored);
}

function parseArgon2(stored: string): ParsedHash | null {
  const match = argon2Pattern.exec(stored);
  if (match === null) return null;
  const [, variant, paramList, salt, hash] = match;
  if (variant === undefined || paramList === undefined || salt === undefined || hash === undefined)
    return null;
  const params = parseArgon2Params(paramList);
  if (params === null) return null;
  const { m: memoryKiB, t: iterations, p: parallelism } = params;
  const withinLimits =
    parallelism >= 1 &&
    parallelism <= importLimits.argon2MaxParallelism &&
    iterations >= 1 &&
    iterations <= importLimits.argon2MaxIterations &&
    memoryKiB >= 8 * parallelism &&
    memoryKiB <= importLimits.argon2MaxMemoryKiB;
  // Reference-implementation minimums: 8-byte salt, 4-byte tag.
  const wellFormed = isUnpaddedBase64(salt, 8) && isUnpaddedBase64(hash, 4);
  if (!withinLimits || !wellFormed) return null;
  return { kind: 'argon2', format: variant as 'argon2id' | 'argon2i' | 'argon2d' };
}

/** m, t and p exactly once each, as decimal integers; `data` (associated data) optionally. */
function parseArgon2Params(list: string): { m: number; t: number; p: number } | null {
  const values = new Map<string, string>();
  for (const pair of list.split(',')) {
    const [key = '', value = ''] = pair.split('=');
    if (values.has(key)) return null;
    values.set(key, value);
  }
  const numbers = ['m', 't', 'p'].map((key) => values.get(key) ?? '');
  const onlyKnown = [...values.keys()].every(
    (key) => key === 'm' || key === 't' || key === 'p' || key === 'data',
  );
  if (!onlyKnown || !numbers.every((n) => /^[1-9]\d{0,9}$/.test(n))) return null;
  const [m = 0, t = 0, p = 0] = numbers.map(Number);
  return { m, t, p };
}

function parseBcrypt(stored: string): ParsedHash | null {
  const match = bcryptPattern.exec(stored);
  if (match === null) return null;
  const cost = Number(match[1]);
  if (cost < 4 || cost > importLimits.bcryptMaxCost) return null;
  return { kind: 'bcrypt', format: 'bcrypt', cost };
}

function parseSha256(stored: string): ParsedHash | null {
  const ldap = ldapPattern.exec(stored);
  if (ldap?.[1] !== undefined) {
    const bytes = Buffer.from(ldap[1], 'base64');
    // Canonical base64 only, and at least one salt byte: a bare digest is unsalted.
    if (bytes.toString('base64') !== ldap[1] || bytes.length <= sha256Bytes) return null;
    return sha256('ldap-ssha256', bytes.subarray(sha256Bytes), bytes.subarray(0, sha256Bytes), false);
  }
  const dollar = dollarPattern.exec(stored);
  if (dollar?.[1] !== undefined && dollar[2] !== undefined) {
    return sha256('dollar-text-salt', Buffer.from(dollar[1], 'utf8'), Buffer.from(dollar[2], 'hex'), true);
  }
  const colon = colonPattern.exec(stored);
  if (colon?.[1] !== undefined && colon[2] !== undefined) {
    return sha256('colon-hex-salt', Buffer.from(colon[1], 'hex'), Buffer.from(colon[2], 'hex'), true);
  }
  return null;
}

function sha256(layout: Sha256Layout, salt: Buffer, digest: Buffer, saltFirst: boolean): ParsedHash {
  return { kind: 'sha256-salted', format: 'sha256-salted', layout, salt, digest, saltFirst };
}

function isUnpaddedBase64(text: string, minBytes: number): boolean {
  // A length of 1 mod 4 cannot come from any byte string.
  if (text.length % 4 === 1) return false;
  return Math.floor((text.length * 3) / 4) >= minBytes;
}
