import { createHash } from 'node:crypto';
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

/**
 * RFC 8785 (JCS) canonical JSON of an event. The sequence number is deliberately not part of it: the
 * position is fixed by `prev_hash`, and leaving it out lets verification tell a deleted or inserted
 * event (the links break, each event's own hash still holds) from a modified one.
 */
export function canonicalEvent(event: ChainedEvent): string {
  const text = canonicalize({
    v: HASH_VERSION,
    id: event.id,
    tenant: event.tenantId,
    at: event.occurredAt.toISOString(),
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
  });
  if (text === undefined) throw new Error('event has no canonical form');
  return text;
}

/** hash = SHA-256(prev_hash || UTF-8(canonical JSON)). */
export function chainHash(prev: Uint8Array, event: ChainedEvent): Buffer {
  return createHash('sha256').update(prev).update(canonicalEvent(event), 'utf8').digest();
}

/** What a checkpoint signs: RFC 8785 canonical JSON of these fields (hash in lowercase hex). */
export interface CheckpointBody {
  tenantId: string | null;
  seq: number;
  headHash: Uint8Array;
  signedAt: Date;
}

export function canonicalCheckpoint(body: CheckpointBody): string {
  const text = canonicalize({
    v: HASH_VERSION,
    chain: body.tenantId ?? 'platform',
    seq: body.seq,
    count: body.seq,
    head: Buffer.from(body.headHash).toString('hex'),
    at: body.signedAt.toISOString(),
  });
  if (text === undefined) throw new Error('checkpoint has no canonical form');
  return text;
}
