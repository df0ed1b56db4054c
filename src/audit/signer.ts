import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { deriveKey } from '../platform/crypto/keys.ts';
import { type CheckpointBody, canonicalCheckpoint } from './canonical.ts';

// PKCS#8 wrapping of a raw 32-byte Ed25519 seed (RFC 8410): fixed ASN.1 header, then the seed.
const ed25519Pkcs8Header = Buffer.from('302e020100300506032b657004220420', 'hex');

export interface CheckpointSigner {
  keyId: string;
  publicKey: KeyObject;
  sign(body: CheckpointBody): Buffer;
}

/** The key id: the first 16 hex digits of SHA-256 over the public key's SubjectPublicKeyInfo DER. */
export function keyIdOf(publicKey: KeyObject): string {
  return createHash('sha256')
    .update(publicKey.export({ format: 'der', type: 'spki' }))
    .digest('hex')
    .slice(0, 16);
}

/**
 * The checkpoint key is derived from the root key (HKDF, purpose-bound), so it is never stored and is
 * the same on every node; only its public half leaves the server (`rampart audit public-key`).
 */
export function checkpointSigner(rootKey: Buffer): CheckpointSigner {
  const seed = deriveKey(rootKey, 'audit-checkpoint-ed25519');
  const privateKey = createPrivateKey({
    key: Buffer.concat([ed25519Pkcs8Header, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const publicKey = createPublicKey(privateKey);
  return {
    keyId: keyIdOf(publicKey),
    publicKey,
    sign: (body) => sign(null, Buffer.from(canonicalCheckpoint(body), 'utf8'), privateKey),
  };
}

export function verifyCheckpointSignature(publicKey: KeyObject, body: CheckpointBody, signature: Uint8Array) {
  return verify(null, Buffer.from(canonicalCheckpoint(body), 'utf8'), publicKey, signature);
}

/** Trusted public keys by key id: the server's own and any given as PEM (an older key, offline use). */
export function trustedKeys(keys: KeyObject[]): Map<string, KeyObject> {
  return new Map(keys.map((k) => [keyIdOf(k), k]));
}

export const publicKeyFromPem = (pem: string): KeyObject => createPublicKey(pem);
