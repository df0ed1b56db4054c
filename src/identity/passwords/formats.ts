import { Buffer } from 'node:buffer';
import { type Argon2Params, importLimits } from './params.ts';

export type HashFormat = 'argon2id' | 'argon2i' | 'argon2d' | 'bcrypt' | 'sha256-salted' | 'rampart-wrap';

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

/** The legacy function a wrapped hash (wrapped.ts) applies before argon2id: everything but its output. */
export type LegacyDescriptor =
  | {
      scheme: 'sha256';
      layout: Sha256Layout;
      salt: Buffer;
      /** Whether the salt goes before the password in the digested message. */
      saltFirst: boolean;
    }
  | { scheme: 'bcrypt'; minor: 'a' | 'b'; cost: number; salt: string };

export type ParsedHash =
  | { kind: 'argon2'; format: 'argon2id' | 'argon2i' | 'argon2d'; params: Argon2Params }
  | { kind: 'bcrypt'; format: 'bcrypt'; cost: number }
  | {
      kind: 'sha256-salted';
      format: 'sha256-salted';
      layout: Sha256Layout;
      salt: Buffer;
      digest: Buffer;
      /** Whether the salt goes before the password in the digested message. */
      saltFirst: boolean;
    }
  | {
      kind: 'wrapped';
      format: 'rampart-wrap';
      legacy: LegacyDescriptor;
      argon2: string;
      /** The cost parameters of the argon2id part. */
      argon2Params: Argon2Params;
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
export const wrapPrefix = '$rampart-wrap$v=1$';
const wrappedPattern = /^\$rampart-wrap\$v=1\$(sha256|bcrypt)\$([a-z]=[^$]+)(\$argon2id\$.+)$/;
const colonPattern = /^sha256:((?:[0-9a-fA-F]{2}){1,64}):([0-9a-fA-F]{64})$/;

/** Which supported format a stored hash is in, or null when it is not one Rampart accepts. */
export function hashFormat(stored: string): HashFormat | null {
  return parseHash(stored)?.format ?? null;
}

export function parseHash(stored: string): ParsedHash | null {
  if (typeof stored !== 'string' || stored.length > maxStoredLength) return null;
  if (stored.startsWith(wrapPrefix)) return parseWrapped(stored);
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
  return {
    kind: 'argon2',
    format: variant as 'argon2id' | 'argon2i' | 'argon2d',
    params: { memoryKiB, iterations, parallelism },
  };
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

/**
 * `$rampart-wrap$v=1$<scheme>$<descriptor>$argon2id$…` (wrapped.ts, decision 0012): argon2id of a legacy
 * hash's output. The descriptor holds what recomputing that output needs (layout and salt, or bcrypt's
 * minor version, cost and salt), never the output itself. Strict: anything else, a parameter out of
 * order or an argon2 part outside the import limits, is not a wrapped hash.
 */
function parseWrapped(stored: string): ParsedHash | null {
  const match = wrappedPattern.exec(stored);
  if (match === null) return null;
  const [, scheme, descriptor, argon2 = ''] = match;
  const inner = parseArgon2(argon2);
  if (inner?.kind !== 'argon2' || inner.format !== 'argon2id') return null;
  const legacy =
    scheme === 'sha256' ? sha256Descriptor(descriptor ?? '') : bcryptDescriptor(descriptor ?? '');
  if (legacy === null) return null;
  return { kind: 'wrapped', format: 'rampart-wrap', legacy, argon2, argon2Params: inner.params };
}

function sha256Descriptor(text: string): LegacyDescriptor | null {
  const match = /^l=(ldap-ssha256|dollar-text-salt|colon-hex-salt),s=([A-Za-z0-9+/]{2,171})$/.exec(text);
  if (match?.[1] === undefined || match[2] === undefined) return null;
  const salt = Buffer.from(match[2], 'base64');
  // Canonical unpadded base64 of 1 to 128 bytes: one salt has one spelling.
  if (salt.toString('base64').replace(/=+$/, '') !== match[2] || salt.length > 128) return null;
  const layout = match[1] as Sha256Layout;
  return { scheme: 'sha256', layout, salt, saltFirst: layout !== 'ldap-ssha256' };
}

function bcryptDescriptor(text: string): LegacyDescriptor | null {
  const match = /^r=2([ab]),c=(\d\d),s=([./A-Za-z0-9]{22})$/.exec(text);
  if (match?.[1] === undefined || match[3] === undefined) return null;
  const cost = Number(match[2]);
  if (cost < 4 || cost > importLimits.bcryptMaxCost) return null;
  return { scheme: 'bcrypt', minor: match[1] as 'a' | 'b', cost, salt: match[3] };
}

function sha256(layout: Sha256Layout, salt: Buffer, digest: Buffer, saltFirst: boolean): ParsedHash {
  return { kind: 'sha256-salted', format: 'sha256-salted', layout, salt, digest, saltFirst };
}

function isUnpaddedBase64(text: string, minBytes: number): boolean {
  // A length of 1 mod 4 cannot come from any byte string.
  if (text.length % 4 === 1) return false;
  return Math.floor((text.length * 3) / 4) >= minBytes;
}
