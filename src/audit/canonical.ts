import { createHash, hash } from 'node:crypto';
import canonicalize from 'canonicalize';

/** The fields of an event that its hash covers (everything but its chain position and hashes). */
export interface ChainedEvent {
  id: string;
  tenantId: string | null;
  occurredAt: Date;
  actorType: string;
  actorId: string | null;
  actorElevationId: string | null;
  action: string;
  targetType: string | null;
  targetId: string | null;
  outcome: string;
  /** As PostgreSQL prints the inet value (`ip::text`), so writer and verifier hash the same text. */
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
}

export const HASH_VERSION = 1;
export const GENESIS_HASH = Buffer.alloc(32);

/** An event's hashed fields with its time already written as `Date.toISOString()` writes it. */
export type EventFields = Omit<ChainedEvent, 'occurredAt'>;

/** The object whose RFC 8785 form is hashed: all keys always present (docs/audit.md). */
export function eventObject(event: ChainedEvent) {
  return eventObjectAt(event, event.occurredAt.toISOString());
}

function eventObjectAt(event: EventFields, at: string) {
  return {
    v: HASH_VERSION,
    id: event.id,
    tenant: event.tenantId,
    at,
    actor: { type: event.actorType, id: event.actorId, elevation: event.actorElevationId },
    action: event.action,
    target:
      event.targetType === null && event.targetId === null
        ? null
        : { type: event.targetType, id: event.targetId },
    outcome: event.outcome,
    ip: event.ip,
    userAgent: event.userAgent,
    requestId: event.requestId,
    details: event.details,
  };
}

/**
 * RFC 8785 (JCS) canonical JSON of an event. The sequence number is deliberately not part of it: the
 * position is fixed by `prev_hash`, and leaving it out lets verification tell a deleted or inserted
 * event (the links break, each event's own hash still holds) from a modified one.
 *
 * The event has a fixed shape, so its keys are written in their RFC 8785 order directly instead of
 * sorting every object (`canonicalize` spends most of an append's CPU time doing that). Anything off
 * that shape (a nested details value, a lone surrogate, a non-finite number) takes the `canonicalize`
 * path, which produces the same bytes or the same error; canonical.test.ts checks both agree.
 */
export function canonicalEvent(event: ChainedEvent): string {
  return canonicalEventAt(event, event.occurredAt.toISOString());
}

/** The same, with the time given as `Date.toISOString()` text (verification reads it so). */
export function canonicalEventAt(event: EventFields, at: string): string {
  const fast = fastCanonicalEvent(event, at);
  if (fast !== null) return fast;
  const text = canonicalize(eventObjectAt(event, at));
  if (text === undefined) throw new Error('event has no canonical form');
  return text;
}

/**
 * The canonical form of a stored or exported event, or null when it has none (a number too large for a
 * double, say): such an event was never appended (appending hashes this form), so it was changed after,
 * and verification reports it as modified instead of stopping on the error.
 */
export function canonicalEventOrNull(event: EventFields, at: string): string | null {
  try {
    return canonicalEventAt(event, at);
  } catch {
    return null;
  }
}

/** Nothing JSON.stringify would escape: no quote, backslash, control character or surrogate. */
// biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what JSON escapes
const plainText = /^[^"\\\u0000-\u001f\ud800-\udfff]*$/;

/** A JSON string, or null when `canonicalize` would not write it the same way (lone surrogate). */
function quoted(value: string): string | null {
  if (plainText.test(value)) return `"${value}"`;
  return (value as unknown as { isWellFormed(): boolean }).isWellFormed() ? JSON.stringify(value) : null;
}

/** A string-or-null field: `null`, a JSON string, or undefined when off the fast path. */
function field(value: unknown): string | undefined {
  if (value === null) return 'null';
  if (typeof value !== 'string') return undefined;
  return quoted(value) ?? undefined;
}

/**
 * The last details' keys in the order Object.keys gave them, and the same keys sorted, each with its
 * JSON name (null when off the fast path). Consecutive events mostly carry the same keys in the same
 * order (one kind of action after another): then sorting and quoting them again is skipped.
 */
let lastKeys: string[] = [];
let lastSorted: { key: string; name: string | null }[] = [];

function sortedKeys(keys: string[]): { key: string; name: string | null }[] {
  if (keys.length === lastKeys.length && keys.every((key, i) => key === lastKeys[i])) return lastSorted;
  // Default sort compares UTF-16 code units, the order RFC 8785 prescribes (and canonicalize uses).
  const sorted = [...keys].sort().map((key) => ({ key, name: quoted(key) }));
  lastKeys = keys;
  lastSorted = sorted;
  return sorted;
}

/** A flat details map (strings, finite numbers, booleans, null) with keys sorted by UTF-16 code units. */
function flatDetails(details: unknown): string | null {
  if (typeof details !== 'object' || details === null || Array.isArray(details)) return null;
  if (typeof (details as { toJSON?: unknown }).toJSON === 'function') return null;
  const record = details as Record<string, unknown>;
  const parts: string[] = [];
  for (const { key, name } of sortedKeys(Object.keys(record))) {
    if (name === null) return null;
    const value = record[key];
    let text: string | null;
    if (typeof value === 'string') text = quoted(value);
    else if (typeof value === 'number') text = Number.isFinite(value) ? JSON.stringify(value) : null;
    else if (typeof value === 'boolean' || value === null) text = String(value);
    else text = null;
    if (text === null) return null;
    parts.push(`${name}:${text}`);
  }
  return `{${parts.join(',')}}`;
}

/**
 * `field` remembering its last answer. Consecutive events of an append (and of a chain being verified)
 * mostly share their tenant, actor, address, user agent and request, so most calls are a comparison.
 */
function rememberedField(): (value: unknown) => string | undefined {
  let input: unknown;
  let output: string | undefined;
  return (value) => {
    if (output === undefined || value !== input) {
      input = value;
      output = field(value);
    }
    return output;
  };
}

const tenantField = rememberedField();
const actorTypeField = rememberedField();
const actorIdField = rememberedField();
const elevationField = rememberedField();
const ipField = rememberedField();
const userAgentField = rememberedField();
const requestIdField = rememberedField();

function fastCanonicalEvent(event: EventFields, at: string): string | null {
  const id = field(event.id);
  const tenant = tenantField(event.tenantId);
  const actorType = actorTypeField(event.actorType);
  const actorId = actorIdField(event.actorId);
  const elevation = elevationField(event.actorElevationId);
  const action = field(event.action);
  const targetType = field(event.targetType);
  const targetId = field(event.targetId);
  const outcome = field(event.outcome);
  const ip = ipField(event.ip);
  const userAgent = userAgentField(event.userAgent);
  const requestId = requestIdField(event.requestId);
  const details = flatDetails(event.details);
  const atText = field(at);
  if (
    atText === undefined ||
    id === undefined ||
    tenant === undefined ||
    actorType === undefined ||
    actorId === undefined ||
    elevation === undefined ||
    action === undefined ||
    targetType === undefined ||
    targetId === undefined ||
    outcome === undefined ||
    ip === undefined ||
    userAgent === undefined ||
    requestId === undefined ||
    details === null
  ) {
    return null;
  }
  const target =
    event.targetType === null && event.targetId === null ? 'null' : `{"id":${targetId},"type":${targetType}}`;
  // Keys in RFC 8785 order: action, actor, at, details, id, ip, outcome, requestId, target, tenant,
  // userAgent, v (and elevation, id, type inside actor; id, type inside target).
  return (
    `{"action":${action},"actor":{"elevation":${elevation},"id":${actorId},"type":${actorType}},` +
    `"at":${atText},"details":${details},"id":${id},"ip":${ip},` +
    `"outcome":${outcome},"requestId":${requestId},"target":${target},"tenant":${tenant},` +
    `"userAgent":${userAgent},"v":${HASH_VERSION}}`
  );
}

// One reusable buffer for prev_hash || UTF-8(JSON): one-shot hashing of it is cheaper than a Hash
// object per event. Synchronous use only (no await between writing and hashing it).
const scratch = Buffer.allocUnsafe(64 * 1024);

/** hash = SHA-256(prev_hash || UTF-8(canonical JSON)). */
export function chainHash(prev: Uint8Array, event: ChainedEvent): Buffer {
  const text = canonicalEvent(event);
  // At most 3 UTF-8 bytes per UTF-16 code unit; larger events take the streaming path.
  if (prev.length === 32 && 32 + text.length * 3 <= scratch.length) {
    scratch.set(prev, 0);
    const length = 32 + scratch.write(text, 32, 'utf8');
    return hash('sha256', scratch.subarray(0, length), 'buffer');
  }
  return createHash('sha256').update(prev).update(text, 'utf8').digest();
}

/**
 * The same hash, in lowercase hex, from the previous hash in hex and the event's canonical JSON.
 * Verification compares hashes as text: in Node 20 a one-shot hash returned as a Buffer costs about
 * twice as much as one returned as hex, and no Buffer is built per event.
 */
export function chainHashHex(prevHex: string, text: string): string {
  // 64 characters written as 32 bytes: lowercase or uppercase hex digits only (write stops at others).
  if (
    prevHex.length === 64 &&
    32 + text.length * 3 <= scratch.length &&
    scratch.write(prevHex, 0, 32, 'hex') === 32
  ) {
    const length = 32 + scratch.write(text, 32, 'utf8');
    return hash('sha256', scratch.subarray(0, length), 'hex');
  }
  return createHash('sha256').update(Buffer.from(prevHex, 'hex')).update(text, 'utf8').digest('hex');
}

/**
 * A chain's constants (audit_chain_heads): `macFromSeq`, the first position whose event must carry a MAC
 * (migration 0059), and `legacyEvents`, how many events from before chaining the chain may hold without
 * a position (migration 0030). The tamper evidence relies on both, and the table owner can change the
 * head row, so every checkpoint signed since migration 0085 carries them (docs/audit.md).
 */
export interface ChainConstants {
  macFromSeq: number;
  legacyEvents: number;
}

/** What a checkpoint signs: RFC 8785 canonical JSON of these fields (hash in lowercase hex). */
export interface CheckpointBody {
  tenantId: string | null;
  seq: number;
  headHash: Uint8Array;
  signedAt: Date;
  /** Absent or null on checkpoints signed before migration 0085: they verify as they were signed. */
  constants?: ChainConstants | null;
}

/**
 * The signed text. A checkpoint without constants keeps exactly the form it was signed in; one with
 * them adds `macFromSeq` and `legacyEvents`, so neither can be removed, added or changed without the
 * signature failing.
 */
export function canonicalCheckpoint(body: CheckpointBody): string {
  const { constants } = body;
  const text = canonicalize({
    v: HASH_VERSION,
    chain: body.tenantId ?? 'platform',
    seq: body.seq,
    count: body.seq,
    head: Buffer.from(body.headHash).toString('hex'),
    at: body.signedAt.toISOString(),
    ...(constants ? { macFromSeq: constants.macFromSeq, legacyEvents: constants.legacyEvents } : {}),
  });
  if (text === undefined) throw new Error('checkpoint has no canonical form');
  return text;
}
