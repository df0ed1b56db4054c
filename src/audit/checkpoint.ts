import type { KeyObject } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type { Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import type { ChainConstants } from './canonical.ts';
import { checkedRange } from './check.ts';
import { queueCheckpointForSinks } from './checkpoint-messages.ts';
import { resolveConstants } from './constants.ts';
import {
  acknowledgementOf,
  chainInconsistency,
  type ForgeryAcknowledgement,
  readAcknowledgements,
} from './forged-events.ts';
import { auditMacKey, checkMac } from './mac.ts';
import type { CheckpointSigner } from './signer.ts';
import {
  type HeadRow,
  inChain,
  newestTrustedCheckpoint,
  readCheckpoints,
  readHead,
  recordSigningKey,
  trustedKeysIn,
} from './store.ts';
import type { AuditTables } from './tables.ts';
import { genesis, type StoredCheckpoint, signatureProblem } from './walk.ts';

export type RefusalReason =
  | 'mac_mismatch'
  | 'mac_other_key'
  | 'acknowledged_chain_broken'
  | 'event_missing'
  | 'event_modified'
  | 'link_broken'
  | 'head_mismatch'
  | 'start_missing'
  | 'constants_changed';

const refusalText: Record<RefusalReason, (seq: number) => string> = {
  mac_mismatch: (seq) => `event at seq ${seq} is forged: MAC does not match`,
  mac_other_key: (seq) =>
    `event at seq ${seq} has a MAC under another key (written before a SECRET_KEY change and not yet signed?)`,
  acknowledged_chain_broken: (seq) =>
    `event at seq ${seq} is acknowledged as forged, but an acknowledgement covers a bad MAC only and the chain is broken there`,
  event_missing: (seq) =>
    `there is no event at seq ${seq}, below the chain head: the head was moved past the events`,
  event_modified: (seq) => `event at seq ${seq} no longer matches its own hash`,
  link_broken: (seq) => `event at seq ${seq} does not link to what precedes it`,
  head_mismatch: (seq) =>
    `the chain head (seq ${seq}) is not where the events since the last checkpoint lead`,
  start_missing: (seq) =>
    `the chain was pruned up to seq ${seq} but no trusted signed checkpoint is there to start from`,
  constants_changed: (seq) =>
    `the chain head (seq ${seq}) holds other constants (mac_from_seq, legacy_events) than its signed checkpoints`,
};

/**
 * The checkpoint job will not sign a head it cannot prove from the last trusted checkpoint: an event
 * whose MAC does not match (it was not written by a node), or events since that checkpoint that do not
 * lead to the head (missing, modified or unlinked, or a head moved on its own).
 */
export class CheckpointRefusedError extends Error {
  constructor(
    readonly chain: string,
    readonly seq: number,
    /** The event at `seq`, where there is one (none when it is missing or the head is at fault). */
    readonly eventId: string | null,
    readonly reason: RefusalReason,
    detail?: string,
  ) {
    super(`refusing to sign chain ${chain}: ${refusalText[reason](seq)}${detail ? ` (${detail})` : ''}`);
    this.name = 'CheckpointRefusedError';
  }
}

/** Positions read per statement while proving a span (a bounded range, as verify reads them). */
const SPAN_PAGE = 5000;

const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');

/**
 * Before signing the head: proves it from the chain's newest trusted checkpoint (or genesis). The app
 * role may move the head (`seq`, `head_hash`) on its own, so the head is never taken on its word:
 *
 * - every position after the checkpoint up to the head holds an event (no gap);
 * - each event's content hashes to its stored hash, and it links to the event before it (the first to
 *   the checkpoint's head hash, or to genesis);
 * - the last one's hash is the head's hash (with no event since the checkpoint, the head is the
 *   checkpoint's own position and hash);
 * - each event from the chain's `mac_from_seq` on (as its signed checkpoints carry it, chainConstants)
 *   carries a MAC that matches under this process's key.
 *
 * So what is signed is the hash of events nodes wrote, in order. The events are read as verify reads
 * them (check.ts: text, no Date or Buffer per row), a bounded range of positions per statement: the
 * cost is what was appended since the newest trusted checkpoint; only a chain with none (its first
 * signature, or every checkpoint under keys no longer trusted) is walked from its start. A pruned chain whose newest trusted checkpoint
 * is below its pruning point (the start is gone) is not signed.
 *
 * The one exception to the MACs is an event an operator acknowledged as forged (forged-events.ts): an
 * acknowledgement whose own MAC verifies under this key and that names the event's position, id and
 * hash, and only while the event is consistent with the chain (its hash and both its links hold). The
 * acknowledgements are read only when a MAC does not match, so an intact chain costs nothing more.
 */
async function proveSinceLastCheckpoint(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  head: HeadRow,
  keys: Map<string, KeyObject>,
  last: StoredCheckpoint | null,
  constants: ChainConstants,
) {
  const chain = tenantId ?? 'platform';
  const start = last ? { seq: last.seq, hash: last.headHash } : genesis;
  if (head.prunedThrough > start.seq) {
    throw new CheckpointRefusedError(chain, head.prunedThrough, null, 'start_missing');
  }
  const headHash = hexOf(head.hash);
  if (head.seq <= start.seq) {
    if (head.seq === start.seq && hexOf(start.hash) === headHash) return;
    throw new CheckpointRefusedError(
      chain,
      head.seq,
      null,
      'head_mismatch',
      head.seq < start.seq
        ? `the head is behind the signed checkpoint at seq ${start.seq}`
        : `the signed checkpoint at seq ${start.seq} has another hash`,
    );
  }
  const key = auditMacKey();
  let acks: ForgeryAcknowledgement[] | null = null;
  let expectedSeq = start.seq + 1;
  let expectedPrev = hexOf(start.hash);
  let lastId: string | null = null;
  const linkedTo = start.seq === 0 ? 'genesis' : `the signed checkpoint at seq ${start.seq}`;
  for (let after = start.seq; after < head.seq; after += SPAN_PAGE) {
    const upTo = Math.min(after + SPAN_PAGE, head.seq);
    for (const event of await checkedRange(tx, tenantId, after, upTo)) {
      if (event.seq !== expectedSeq) {
        throw new CheckpointRefusedError(
          chain,
          expectedSeq,
          null,
          'event_missing',
          `head at seq ${head.seq}`,
        );
      }
      if (event.seq >= constants.macFromSeq) {
        const verdict = checkMac(
          key,
          Buffer.from(event.hash, 'hex'),
          event.mac ? Buffer.from(event.mac, 'hex') : null,
        );
        if (verdict !== 'ok') {
          acks ??= await readAcknowledgements(tx, tenantId, { after: start.seq, upTo: head.seq });
          if (!acknowledgementOf(acks, key, event)) {
            throw new CheckpointRefusedError(
              chain,
              event.seq,
              event.id,
              verdict === 'bad' ? 'mac_mismatch' : 'mac_other_key',
            );
          }
          const broken = await chainInconsistency(tx, tenantId, event.seq, head, keys);
          if (broken) {
            throw new CheckpointRefusedError(chain, event.seq, event.id, 'acknowledged_chain_broken', broken);
          }
        }
      }
      if (!event.intact) throw new CheckpointRefusedError(chain, event.seq, event.id, 'event_modified');
      if (event.prevHash !== expectedPrev) {
        throw new CheckpointRefusedError(
          chain,
          event.seq,
          event.id,
          'link_broken',
          event.seq === start.seq + 1 ? `expected a link to ${linkedTo}` : undefined,
        );
      }
      expectedSeq = event.seq + 1;
      expectedPrev = event.hash;
      lastId = event.id;
    }
    if (expectedSeq <= upTo) {
      throw new CheckpointRefusedError(chain, expectedSeq, null, 'event_missing', `head at seq ${head.seq}`);
    }
  }
  if (expectedPrev !== headHash) {
    throw new CheckpointRefusedError(
      chain,
      head.seq,
      lastId,
      'head_mismatch',
      `the event at seq ${head.seq} has another hash`,
    );
  }
}

/**
 * The constants to check the events with and to sign (resolveConstants, constants.ts): those the newest
 * trusted checkpoint carrying them signed; the defaults for a chain with none (the head row's only when an
 * operator adopts them, `adopt`). A head row that differs from them was
 * changed by the table owner (raised mac_from_seq lets MAC-less events through): refused. Only the
 * newest carrying checkpoint is read (verify checks that all of them agree): the server signs the values
 * it resolved, so its checkpoints disagree only if a head row was changed before the first of them.
 */
async function chainConstants(
  tx: Kysely<AuditTables>,
  tenantId: string | null,
  head: HeadRow,
  keys: Map<string, KeyObject>,
  last: StoredCheckpoint | null,
  adopt: boolean,
): Promise<ChainConstants> {
  const carrying = last?.constants
    ? last
    : last && (await newestTrustedCheckpoint(tx, tenantId, keys, { withConstants: true }));
  const { constants, problem } = resolveConstants(carrying ? [carrying] : [], last !== null, head, adopt);
  if (problem) {
    throw new CheckpointRefusedError(
      tenantId ?? 'platform',
      head.seq,
      null,
      'constants_changed',
      problem.message,
    );
  }
  return constants;
}

/**
 * Signs the chain's current head unless it is already checkpointed. Reads the head without locking it:
 * seq and hash change together in the writer's transaction, so a committed head is always consistent.
 * "Already checkpointed" means a row at that position whose signature verifies under this key: a row
 * anyone else wrote there (a forged one) does not count, and the server writes its own beside it
 * (several rows may share a position, migration 0058). Nodes take turns per chain (an advisory lock,
 * held to the end of the transaction), so they still write one genuine row per position. Refuses
 * (CheckpointRefusedError) when the events since the newest trusted checkpoint do not lead to the head
 * (proveSinceLastCheckpoint), or one of them has no matching MAC (migration 0059) and no operator
 * acknowledged it as forged (migration 0072).
 */
export async function createCheckpoint(
  db: Database,
  signer: CheckpointSigner,
  clock: Clock,
  tenantId: string | null,
  /** `rampart audit checkpoint --adopt-constants`: an operator's one-time trust in the head row (constants.ts). */
  adoptConstants = false,
): Promise<StoredCheckpoint | null> {
  return inChain(db, tenantId, async (tx) => {
    const chain = tenantId ?? 'platform';
    await sql`SELECT pg_advisory_xact_lock(hashtext('rampart.audit_checkpoint'), hashtext(${chain}))`.execute(
      tx,
    );
    const head = await readHead(tx, tenantId);
    if (head.seq === 0) return null;
    const own = new Map([[signer.keyId, signer.publicKey]]);
    // A checkpoint of this key without constants (signed before migration 0085) does not count: one
    // carrying them is signed at the same position beside it (several rows may share one, migration
    // 0058), so a quiet chain's constants are signed at the first run after the upgrade too.
    const there = await readCheckpoints(tx, tenantId, head.seq);
    if (there.some((c) => c.constants !== null && signatureProblem(c, own) === null)) return null;
    await recordSigningKey(tx, signer);
    const keys = await trustedKeysIn(tx, signer);
    const last = await newestTrustedCheckpoint(tx, tenantId, keys);
    const constants = await chainConstants(tx, tenantId, head, keys, last, adoptConstants);
    await proveSinceLastCheckpoint(tx, tenantId, head, keys, last, constants);
    const body = { tenantId, seq: head.seq, headHash: head.hash, signedAt: clock.now(), constants };
    const signature = signer.sign(body);
    await sql`
      INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, signed_at, key_id, signature, mac_from_seq,
        legacy_events)
      VALUES (${tenantId}, ${head.seq}, ${Buffer.from(head.hash)}, ${body.signedAt}, ${signer.keyId}, ${signature},
        ${constants.macFromSeq}, ${constants.legacyEvents})`.execute(tx);
    const checkpoint = { ...body, keyId: signer.keyId, signature };
    // Also to the SIEM, in this transaction: a high-water mark the database cannot take back.
    await queueCheckpointForSinks(tx, checkpoint);
    return checkpoint;
  });
}
