import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { deriveKey } from '../platform/crypto/keys.ts';
import { checkpointSigner } from './signer.ts';

/**
 * Event MACs (docs/audit.md, "Event MACs"): each event stores `mac = keyId || HMAC-SHA256(K, hash)`,
 * where `hash` is its chain hash (which covers its content and the hash before it) and K is derived from
 * the root key (HKDF, purpose `audit-event-mac`). The database never sees K, so whoever can only write
 * to the database cannot make an event the server will sign. `keyId` (8 bytes, an HMAC of a fixed label
 * under K: it names the key without revealing it) tells an event MACed under an older key (after a
 * SECRET_KEY rotation) from a forged one.
 */
export interface MacKey {
  /** 16 hex digits. */
  id: string;
  key: Buffer;
  /**
   * Authenticates operators' acknowledgements of forged events (forged-events.ts): its own purpose
   * (`audit-forgery-ack`), so no acknowledgement can pass for an event MAC or the other way round.
   */
  ackKey: Buffer;
  /**
   * The id of the checkpoint key derived from the same root (signer.ts). A checkpoint it signed vouches
   * for MACs under this key only: the job that holds both refuses a MAC under any other key, so an event
   * whose MAC names another key is genuine only where a checkpoint of another key covers it (verify.ts).
   */
  checkpointKeyId: string;
}

const KEY_ID_BYTES = 8;

export function macKeyFrom(rootKey: Buffer): MacKey {
  const key = deriveKey(rootKey, 'audit-event-mac');
  const id = createHmac('sha256', key).update('rampart:audit-mac-key-id').digest().subarray(0, KEY_ID_BYTES);
  return {
    id: id.toString('hex'),
    key,
    ackKey: deriveKey(rootKey, 'audit-forgery-ack'),
    checkpointKeyId: checkpointSigner(rootKey).keyId,
  };
}

/**
 * The key appends use in this process: configured from the root key when the app (or the CLI) starts.
 * Until then a random one, so a process that never configured it writes MACs no other process accepts
 * (never a key anyone else could know).
 */
let current: MacKey = macKeyFrom(randomBytes(32));
let currentIdBytes = Buffer.from(current.id, 'hex');

export function configureAuditMac(rootKey: Buffer): MacKey {
  current = macKeyFrom(rootKey);
  currentIdBytes = Buffer.from(current.id, 'hex');
  return current;
}

export const auditMacKey = (): MacKey => current;

/** The MAC of an event's chain hash under the current key: 40 bytes, the key id first. One HMAC. */
export function macOf(hash: Uint8Array): Buffer {
  const tag = createHmac('sha256', current.key).update(hash).digest();
  return Buffer.concat([currentIdBytes, tag], KEY_ID_BYTES + tag.length);
}

/**
 * What an event's stored MAC says about it, under `key`: `ok`; `bad` (absent, malformed, or under this
 * key and not matching: forged); `other-key` (made under another key, which this process does not hold).
 */
export function checkMac(key: MacKey, hash: Uint8Array, mac: Uint8Array | null): 'ok' | 'bad' | 'other-key' {
  if (!mac || mac.length !== KEY_ID_BYTES + 32) return 'bad';
  const id = Buffer.from(mac.subarray(0, KEY_ID_BYTES)).toString('hex');
  if (id !== key.id) return 'other-key';
  const expected = createHmac('sha256', key.key).update(hash).digest();
  return timingSafeEqual(expected, mac.subarray(KEY_ID_BYTES)) ? 'ok' : 'bad';
}
