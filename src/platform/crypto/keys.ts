import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensurePrivateDataDir } from '../data-dir.ts';

let memoryRootKey: Buffer | null = null;

/**
 * The server's root secret. Production requires SECRET_KEY (config refuses otherwise). In development
 * without it, a random key is kept in the data directory (or in memory for memory://) so sessions and
 * encrypted TOTP seeds survive a restart of the same node.
 */
export function resolveRootKey(secretKey: string | undefined, dataDir: string): Buffer {
  if (secretKey) return Buffer.from(secretKey, 'utf8');
  if (dataDir === 'memory://') {
    // One per process: every part of the server that derives a key from it (the app, the audit MAC set
    // before the first operator's bootstrap) must derive it from the same root.
    memoryRootKey ??= randomBytes(32);
    return memoryRootKey;
  }
  ensurePrivateDataDir(dataDir);
  const path = join(dataDir, '.secret-key');
  if (existsSync(path)) return Buffer.from(readFileSync(path, 'utf8').trim(), 'base64url');
  const key = randomBytes(32);
  writeFileSync(path, key.toString('base64url'), { mode: 0o600 });
  chmodSync(path, 0o600);
  return key;
}

/** Purpose-bound subkeys (HKDF-SHA256), so one use of the root key never doubles as another. */
export function deriveKey(root: Buffer, purpose: string): Buffer {
  return Buffer.from(hkdfSync('sha256', root, Buffer.alloc(0), `rampart:${purpose}`, 32));
}

/** A sealed value that opens under none of the configured keys (SECRET_KEY and SECRET_KEY_PREVIOUS). */
export class UnreadableSealError extends Error {
  constructor() {
    super('sealed value opens under no configured key (SECRET_KEY, SECRET_KEY_PREVIOUS)');
    this.name = 'UnreadableSealError';
  }
}

/** The current root key first, then the previous ones (SECRET_KEY_PREVIOUS) kept for a rotation. */
export function resolveRootKeys(
  secretKey: string | undefined,
  previous: readonly string[],
  dataDir: string,
): Buffer[] {
  return [resolveRootKey(secretKey, dataDir), ...previous.map((key) => Buffer.from(key, 'utf8'))];
}

/** The purpose's subkey under each root key, in the same order (current first). */
export function deriveKeys(roots: readonly Buffer[], purpose: string): Buffer[] {
  return roots.map((root) => deriveKey(root, purpose));
}

function sealUnder(key: Buffer, plaintext: string, associated: string): string {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  cipher.setAAD(Buffer.from(associated));
  const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
  return ['v1', nonce, cipher.getAuthTag(), body]
    .map((p) => (typeof p === 'string' ? p : p.toString('base64url')))
    .join('.');
}

/** The plaintext, or null when the tag does not verify under this key. */
function openUnder(key: Buffer, sealed: string, associated: string): string | null {
  const [version, nonce, tag, body] = sealed.split('.');
  if (version !== 'v1' || !nonce || !tag || body === undefined) throw new Error('unknown sealed format');
  const decipher = createDecipheriv('aes-256-gcm', key, Buffer.from(nonce, 'base64url'));
  decipher.setAAD(Buffer.from(associated));
  decipher.setAuthTag(Buffer.from(tag, 'base64url'));
  try {
    return Buffer.concat([decipher.update(Buffer.from(body, 'base64url')), decipher.final()]).toString(
      'utf8',
    );
  } catch {
    return null;
  }
}

/**
 * AES-256-GCM with a random 96-bit nonce; the output is `v1.<nonce>.<tag>.<ciphertext>` in base64url.
 * Given several keys (a SECRET_KEY rotation), it seals under the first and opens under any of them:
 * GCM's tag tells which one sealed a value, so values sealed before the rotation keep opening.
 */
export function createSecretBox(keys: Buffer | readonly Buffer[]) {
  const [current, ...previous] = Array.isArray(keys) ? keys : [keys as Buffer];
  if (!current) throw new Error('a secret box needs a key');
  /**
   * The plaintext and, when it opened under a previous key only, the value sealed again under the
   * current one (`resealed`) for the caller to store. Throws UnreadableSealError under no key.
   */
  const unseal = (sealed: string, associated: string): { plaintext: string; resealed: string | null } => {
    const plaintext = openUnder(current, sealed, associated);
    if (plaintext !== null) return { plaintext, resealed: null };
    for (const key of previous) {
      const old = openUnder(key, sealed, associated);
      if (old !== null) return { plaintext: old, resealed: sealUnder(current, old, associated) };
    }
    throw new UnreadableSealError();
  };
  return {
    seal: (plaintext: string, associated: string): string => sealUnder(current, plaintext, associated),
    unseal,
    open: (sealed: string, associated: string): string => unseal(sealed, associated).plaintext,
  };
}

export type SecretBox = ReturnType<typeof createSecretBox>;

export function hmac(key: Buffer, value: string): Buffer {
  return createHmac('sha256', key).update(value).digest();
}
