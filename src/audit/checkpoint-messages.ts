import { randomUUID } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { AuditTables } from './tables.ts';
import type { StoredCheckpoint } from './walk.ts';

/**
 * A signed checkpoint as sent to the SIEM sinks (`audit.checkpoint`): the fields of a bundle's
 * checkpoint line (docs/audit.md, "Offline verification"), so a receiver checks the signature the same
 * way, plus the message's own id. Kept outside the database, these are high-water marks whoever owns the
 * database cannot take back: `rampart audit verify --expect chain:seq:head` then shows a cut-off tail.
 */
export interface CheckpointMessage {
  /** The message's id (`webhook-id`, syslog `checkpointId`): a receiver drops a repeat by it. */
  id: string;
  chain: string;
  tenantId: string | null;
  seq: number;
  /** The chain's head hash at seq, lowercase hex. */
  head: string;
  /** When it was signed (ISO 8601). */
  at: string;
  keyId: string;
  /** Ed25519 over the checkpoint's RFC 8785 JSON, lowercase hex. */
  signature: string;
  /** The chain constants it signs (migration 0085); absent on checkpoints signed before. */
  macFromSeq?: number;
  legacyEvents?: number;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

export const checkpointMessage = (id: string, c: StoredCheckpoint): CheckpointMessage => ({
  id,
  chain: c.tenantId ?? 'platform',
  tenantId: c.tenantId,
  seq: c.seq,
  head: hex(c.headHash),
  at: c.signedAt.toISOString(),
  keyId: c.keyId,
  signature: hex(c.signature),
  ...(c.constants ? { macFromSeq: c.constants.macFromSeq, legacyEvents: c.constants.legacyEvents } : {}),
});

/**
 * Queues the checkpoint for every active sink in the caller's transaction (the one that wrote the
 * checkpoint row), so a signed checkpoint exists if and only if it is on its way out. forward.ts delivers.
 */
export async function queueCheckpointForSinks(tx: Kysely<AuditTables>, checkpoint: StoredCheckpoint) {
  const message = checkpointMessage(randomUUID(), checkpoint);
  await sql`INSERT INTO audit_outbox (sink_id, event_id, tenant_id, payload, enqueued_at, next_attempt_at, message)
    SELECT s.id, ${message.id}::uuid, ${checkpoint.tenantId}::uuid, ${JSON.stringify(message)}::jsonb,
      ${checkpoint.signedAt}, ${checkpoint.signedAt}, 'audit.checkpoint'
    FROM audit_sinks s WHERE s.disabled_at IS NULL`.execute(tx);
}
