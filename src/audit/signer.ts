import { createHash, createPrivateKey, createPublicKey, type KeyObject, sign, verify } from 'node:crypto';
import { deriveKey } from '../platform/crypto/keys.ts';
import { type CheckpointBody, canonicalCheckpoint } from './canonical.ts';

// PKCS#8 wrapping of a raw 32-byte Ed25519 seed (RFC 8410): fixed ASN.1 header, then the seed.
const ed25519Pkcs8Header = Buffer.from('302e020100300506032b657004220420', 'hex');

export interface CheckpointSigner {
  keyId: string;
  publicKey: KeyObject;
  sign(body: CheckpointBody): Buffer;
  /** This key's signature over endorsementText(this key, `key`): "`key` is one I signed before" (rotation). */
  endorse(key: KeyObject): Buffer;
  /**
   * The signers of SECRET_KEY_PREVIOUS: recording this key (store.ts recordSigningKey) endorses each of
   * them, so the checkpoints they signed stay trusted after the rotation (docs/audit.md, "Key rotation").
   */
  previous?: readonly CheckpointSigner[];
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
export function checkpointSigner(
  rootKey: Buffer,
  previousRootKeys: readonly Buffer[] = [],
): CheckpointSigner {
  const seed = deriveKey(rootKey, 'audit-checkpoint-ed25519');
  const privateKey = createPrivateKey({
    key: Buffer.concat([ed25519Pkcs8Header, seed]),
    format: 'der',
    type: 'pkcs8',
  });
  const publicKey = createPublicKey(privateKey);
  const keyId = keyIdOf(publicKey);
  return {
    keyId,
    publicKey,
    sign: (body) => sign(null, Buffer.from(canonicalCheckpoint(body), 'utf8'), privateKey),
    endorse: (key) => sign(null, Buffer.from(endorsementText(keyId, spkiOf(key)), 'utf8'), privateKey),
    previous: previousRootKeys.map((root) => checkpointSigner(root)).filter((p) => p.keyId !== keyId),
  };
}

const spkiOf = (key: KeyObject): Buffer => key.export({ format: 'der', type: 'spki' });

/**
 * What an endorsement signs (migration 0089): the endorser's key id, the endorsed key's id and the SHA-256
 * of the endorsed key's SubjectPublicKeyInfo DER, so the signature names exactly one key.
 */
export function endorsementText(endorserKeyId: string, endorsedSpki: Uint8Array): string {
  const hash = createHash('sha256').update(endorsedSpki).digest('hex');
  return `rampart audit key endorsement v1\nendorser ${endorserKeyId}\nkey ${hash.slice(0, 16)}\nspki-sha256 ${hash}\n`;
}

/** Whether `signature` is the endorser's endorsement of the key whose SPKI DER is `endorsedSpki`. */
export function verifyEndorsement(
  endorser: KeyObject,
  endorsedSpki: Uint8Array,
  signature: Uint8Array,
): boolean {
  return verify(
    null,
    Buffer.from(endorsementText(keyIdOf(endorser), endorsedSpki), 'utf8'),
    endorser,
    signature,
  );
}

export function verifyCheckpointSignature(publicKey: KeyObject, body: CheckpointBody, signature: Uint8Array) {
  return verify(null, Buffer.from(canonicalCheckpoint(body), 'utf8'), publicKey, signature);
}

/** Trusted public keys by key id: the server's own and any given as PEM (an older key, offline use). */
export function trustedKeys(keys: KeyObject[]): Map<string, KeyObject> {
  return new Map(keys.map((k) => [keyIdOf(k), k]));
}

export const publicKeyFromPem = (pem: string): KeyObject => createPublicKey(pem);
