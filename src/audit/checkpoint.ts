import type { KeyObject } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { queueCheckpointForSinks } from './checkpoint-messages.ts';
import {
  acknowledgementOf,
  chainInconsistency,
  type ForgeryAcknowledgement,
  readAcknowledgements,
} from './forged-events.ts';
import { auditMacKey, checkMac } from './mac.ts';
import type { CheckpointSigner } from './signer.ts';
import {
  bytes,
  chainFilter,
  type HeadRow,
  inChain,
  newestTrustedCheckpoint,
  readCheckpoints,
  readHead,
  recordSigningKey,
  trustedKeysIn,
} from './store.ts';
import type { AuditTables } from './tables.ts';
import { type StoredCheckpoint, signatureProblem } from './walk.ts';

export type RefusalReason = 'mac_mismatch' | 'mac_other_key' | 'acknowledged_chain_broken';

const refusalText: Record<RefusalReason, string> = {
  mac_mismatch: 'is forged: MAC does not match',
  mac_other_key: 'has a MAC under another key (written before a SECRET_KEY change and not yet signed?)',
  acknowledged_chain_broken:
    'is acknowledged as forged, but an acknowledgement covers a bad MAC only and the chain is broken there',
};

/** The checkpoint job will not sign over an event whose MAC does not match (it was not written by a node). */
export class CheckpointRefusedError extends Error {
  constructor(
    readonly chain: string,
    readonly seq: number,
    readonly eventId: string,
    readonly reason: RefusalReason,
    detail?: string,
  ) {
    super(
      `refusing to sign chain ${chain}: event at seq ${seq} ${refusalText[reason]}${detail ? ` (${detail})` : ''}`,
    );
    this.name = 'CheckpointRefusedError';
  }
}

/**
 * Before signing the head: every event since the newest checkpoint this key signed (or the pruning
 * point, or the first position that carries MACs) must carry a MAC that matches under this process's
 * key. One query and one HMAC per event, over the events of one checkpoint interval.
 *
 * The one exception is an event an operator acknowledged as forged (forged-events.ts): an
 * acknowledgement whose own MAC verifies under this key and that names the event's position, id and
 * hash, and only while the event is consistent with the chain (its hash and both its links hold). The
 * acknowledgements are read only when a MAC does not match, so an intact chain costs nothing more.
 */
async function checkMacsSinceLastCheckpoint(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  head: HeadRow,
  keys: Map<string, KeyObject>,
) {
  const last = await newestTrustedCheckpoint(tx, tenantId, keys);
  const from = Math.max(last?.seq ?? 0, head.prunedThrough, head.macFromSeq - 1);
  if (from >= head.seq) return;
  const key = auditMacKey();
  const chain = tenantId ?? 'platform';
  const { rows } = await sql<{ seq: string; id: string; hash: Uint8Array | null; mac: Uint8Array | null }>`
    SELECT chain_seq::text AS seq, id::text AS id, hash, mac FROM audit_events
    WHERE ${chainFilter(tenantId)} AND chain_seq > ${from} AND chain_seq <= ${head.seq}
    ORDER BY chain_seq`.execute(tx);
  let acks: ForgeryAcknowledgement[] | null = null;
  for (const row of rows) {
    const hash = bytes(row.hash);
    const verdict = checkMac(key, hash, row.mac ? bytes(row.mac) : null);
    if (verdict === 'ok') continue;
    const seq = Number(row.seq);
    acks ??= await readAcknowledgements(tx, tenantId, { after: from, upTo: head.seq });
    const event = { seq, id: row.id, hash: Buffer.from(hash).toString('hex') };
    if (!acknowledgementOf(acks, key, event)) {
      throw new CheckpointRefusedError(
        chain,
        seq,
        row.id,
        verdict === 'bad' ? 'mac_mismatch' : 'mac_other_key',
      );
    }
    const broken = await chainInconsistency(tx, tenantId, seq, head, keys);
    if (broken) throw new CheckpointRefusedError(chain, seq, row.id, 'acknowledged_chain_broken', broken);
  }
}

/**
 * Signs the chain's current head unless it is already checkpointed. Reads the head without locking it:
 * seq and hash change together in the writer's transaction, so a committed head is always consistent.
 * "Already checkpointed" means a row at that position whose signature verifies under this key: a row
 * anyone else wrote there (a forged one) does not count, and the server writes its own beside it
 * (several rows may share a position, migration 0058). Nodes take turns per chain (an advisory lock,
 * held to the end of the transaction), so they still write one genuine row per position. Refuses
 * (CheckpointRefusedError) when an event it would sign over has no matching MAC (migration 0059)
 * and no operator acknowledged it as forged (migration 0072).
 */
export async function createCheckpoint(
  db: Database,
  signer: CheckpointSigner,
  clock: Clock,
  tenantId: string | null,
): Promise<StoredCheckpoint | null> {
  return inChain(db, tenantId, async (tx) => {
    const chain = tenantId ?? 'platform';
    await sql`SELECT pg_advisory_xact_lock(hashtext('rampart.audit_checkpoint'), hashtext(${chain}))`.execute(
      tx,
    );
    const head = await readHead(tx, tenantId);
    if (head.seq === 0) return null;
    const own = new Map([[signer.keyId, signer.publicKey]]);
    const there = await readCheckpoints(tx, tenantId, head.seq);
    if (there.some((c) => signatureProblem(c, own) === null)) return null;
    await recordSigningKey(tx, signer);
    await checkMacsSinceLastCheckpoint(tx, tenantId, head, await trustedKeysIn(tx, signer));
    const body = { tenantId, seq: head.seq, headHash: head.hash, signedAt: clock.now() };
    const signature = signer.sign(body);
    await sql`
      INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, signed_at, key_id, signature)
      VALUES (${tenantId}, ${head.seq}, ${Buffer.from(head.hash)}, ${body.signedAt}, ${signer.keyId}, ${signature})`.execute(
      tx,
    );
    const checkpoint = { ...body, keyId: signer.keyId, signature };
    // Also to the SIEM, in this transaction: a high-water mark the database cannot take back.
    await queueCheckpointForSinks(tx, checkpoint);
    return checkpoint;
  });
}
