import type { KeyObject } from 'node:crypto';
import type { Database } from '../platform/db/index.ts';
import { checkedEvents } from './check.ts';
import { resolveConstants } from './constants.ts';
import {
  acknowledgementOf,
  checkAcknowledgement,
  type ForgeryAcknowledgement,
  readAcknowledgements,
} from './forged-events.ts';
import { checkMac, type MacKey } from './mac.ts';
import {
  eventsInPrunedRange,
  inChain,
  prunedRecordSeq,
  readCheckpoints,
  readHead,
  unchainedEvents,
} from './store.ts';
import {
  type ChainBreak,
  type ChainState,
  type CheckedEvent,
  genesis,
  partitionCheckpoints,
  type StoredCheckpoint,
  walkChain,
} from './walk.ts';

export interface ChainReport {
  chain: string;
  /** Events checked (those after the retention point). */
  events: number;
  checkpoints: number;
  /** The head verified: as read at the start, or as read again at the end if events were appended. */
  headSeq: number;
  /** Events written before the chain existed (migration 0030), as its signed checkpoints say; not covered. */
  legacyEvents: number;
  broken: ChainBreak | null;
  /**
   * Checkpoint rows no trusted key signed (unknown key, bad signature): someone wrote them into the
   * database. They are ignored by the walk (never a start nor compared with) and named here.
   */
  forged: ChainBreak[];
  /**
   * Events whose MAC is missing or wrong (with the MAC key only), in position order, at most
   * FORGED_LISTED of them: those an operator acknowledged (`acknowledgement` set: they do not break the
   * chain) and those no one did (the first is also `broken`, unless another break came first).
   */
  forgedEvents: ForgedEvent[];
  /** Acknowledgement rows whose own MAC does not verify: someone with database access wrote them. */
  forgedAcknowledgements: ChainBreak[];
}

export interface ForgedEvent {
  seq: number;
  eventId: string;
  /** The stored hash, lowercase hex: what an acknowledgement must name. */
  hash: string;
  acknowledgement: ForgeryAcknowledgement | null;
}

/** Forged events listed per chain (a chain with thousands of inserted rows still verifies in memory). */
export const FORGED_LISTED = 100;

export interface VerifyOptions {
  keys: Map<string, KeyObject>;
  /**
   * The event MAC key (mac.ts): with it, each event from the chain's `mac_from_seq` on must carry a MAC
   * that matches, or (made under an older key) lie at or before a signed checkpoint. Without it (no
   * secret at hand) MACs are not checked.
   */
  macKey?: MacKey;
  /** Called with events checked so far and the number expected. */
  onProgress?: (done: number, total: number) => void;
}

/**
 * Verifies one chain in the database: events, links, head, signed checkpoints, stray rows. The head is
 * read at the start and again once the walk reaches it (in the statement that looks for rows beyond
 * it): events appended meanwhile are walked like the others, and only rows beyond the head of that
 * statement count as inserted, so a busy chain verifies.
 */
export async function verifyAuditChain(
  db: Database,
  tenantId: string | null,
  options: VerifyOptions,
): Promise<ChainReport> {
  const {
    head,
    checkpoints: rows,
    unchained,
    prunedRange,
    prunedRecord,
    acks,
  } = await inChain(db, tenantId, async (tx) => {
    const head = await readHead(tx, tenantId);
    return {
      head,
      checkpoints: await readCheckpoints(tx, tenantId),
      unchained: await unchainedEvents(tx, tenantId),
      prunedRange: await eventsInPrunedRange(tx, tenantId, head.prunedThrough),
      prunedRecord: await prunedRecordSeq(tx, tenantId, head.prunedThrough, head.seq),
      acks: options.macKey ? await readAcknowledgements(tx, tenantId) : [],
    };
  });
  const forgedEvents: ForgedEvent[] = [];
  const { macKey } = options;
  const forgedAcknowledgements = macKey
    ? acks
        .filter((a) => checkAcknowledgement(macKey, a) === 'bad')
        .map(
          (a): ChainBreak => ({
            kind: 'forged',
            seq: a.seq,
            eventId: a.eventId,
            message: `acknowledgement ${a.id} of the event at seq ${a.seq} was not written by a node: its MAC does not match`,
          }),
        )
    : [];
  const { trusted: checkpoints, forged } = partitionCheckpoints(rows, options.keys);
  // mac_from_seq and legacy_events as the trusted checkpoints sign them (migration 0085), never the head
  // row's word alone: the table owner can change it. A head row that differs is reported (after the walk,
  // which uses the signed values, so the events it let in are still named).
  const { constants, problem: constantsBreak } = resolveConstants(checkpoints, checkpoints.length > 0, head);
  let headSeq = head.seq;
  const report = (events: number, broken: ChainBreak | null): ChainReport => ({
    chain: tenantId ?? 'platform',
    events,
    checkpoints: checkpoints.length,
    headSeq,
    legacyEvents: constants.legacyEvents,
    broken,
    forged,
    forgedEvents,
    forgedAcknowledgements,
  });
  let start: { seq: number; hash: Uint8Array } = genesis;
  if (head.prunedThrough > 0) {
    const from = checkpoints.find((c) => c.seq === head.prunedThrough);
    if (!from) {
      return report(0, {
        kind: 'checkpoint',
        seq: head.prunedThrough,
        eventId: null,
        message: `the chain was pruned up to seq ${head.prunedThrough} but that checkpoint is missing`,
      });
    }
    start = { seq: from.seq, hash: from.headHash };
  }
  // Rows in the pruned prefix come first in the chain's order, and the walk would never reach them.
  if (prunedRange.first) {
    const { seq, id } = prunedRange.first;
    return report(0, {
      kind: 'inserted',
      seq,
      eventId: id,
      message: `${prunedRange.count} event(s) were inserted into the pruned part of the chain (seq 1-${head.prunedThrough}), the first at seq ${seq}`,
    });
  }
  let total = head.seq - start.seq;
  options.onProgress?.(0, total);
  const state: ChainState = {
    start,
    head,
    checkpoints: checkpoints.filter((c) => c.seq >= start.seq),
    keys: options.keys,
  };
  if (macKey) {
    state.macs = macChecker(
      macKey,
      constants.macFromSeq,
      vouchedByAnotherKey(checkpoints, macKey),
      acks,
      (found) => {
        if (forgedEvents.length < FORGED_LISTED) forgedEvents.push(found);
      },
    );
  }
  const follow = (moved: { seq: number; hash: Uint8Array }) => {
    state.head = moved;
    headSeq = moved.seq;
    total = moved.seq - start.seq;
  };
  const walked = await walkChain(checkedEvents(db, tenantId, start.seq, head.seq, follow), state, (done) =>
    options.onProgress?.(done, total),
  );
  options.onProgress?.(walked.events, total);
  if (constantsBreak) return report(walked.events, constantsBreak);
  if (walked.broken) return report(walked.events, walked.broken);
  // A pruned prefix is accounted for by the audit.trail.pruned event the pruning job appended with it
  // (walked above, so its hash, links and, with the MAC key, its MAC hold). Without one the prefix was
  // deleted by a direct call of audit_prune_chain, which the app role may make (docs/audit.md).
  if (head.prunedThrough > 0 && prunedRecord === null) {
    return report(walked.events, {
      kind: 'deleted',
      seq: head.prunedThrough,
      eventId: null,
      message: `the chain was pruned up to seq ${head.prunedThrough} but no audit.trail.pruned event records it`,
    });
  }
  if (unchained.count > constants.legacyEvents) {
    return report(walked.events, {
      kind: 'inserted',
      seq: null,
      eventId: unchained.newest,
      message: `${unchained.count - constants.legacyEvents} event(s) were inserted outside the chain (newest: ${unchained.newest})`,
    });
  }
  return report(walked.events, null);
}

/**
 * Whether the event at a position is vouched for by a checkpoint of a key other than the one paired with
 * `macKey` (the same root's checkpoint key): the first position at or after it that holds trusted
 * checkpoints holds one of another key. That key's job checked the event's MAC, with its own MAC key,
 * before signing. A checkpoint of the paired key vouches for nothing under another MAC key: its job
 * refuses those (`mac_other_key`), so an event under a made-up key id that such a checkpoint covers got
 * there without the job's check (a head moved onto it before it was written). Binary search: it runs only
 * for events whose MAC is not under `macKey`.
 */
function vouchedByAnotherKey(checkpoints: readonly StoredCheckpoint[], macKey: MacKey) {
  const sorted = [...checkpoints].sort((a, b) => a.seq - b.seq);
  return (seq: number): boolean => {
    let lo = 0;
    let hi = sorted.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((sorted[mid] as StoredCheckpoint).seq < seq) lo = mid + 1;
      else hi = mid;
    }
    const first = sorted[lo]?.seq;
    if (first === undefined) return false;
    for (let i = lo; i < sorted.length && (sorted[i] as StoredCheckpoint).seq === first; i += 1) {
      if ((sorted[i] as StoredCheckpoint).keyId !== macKey.checkpointKeyId) return true;
    }
    return false;
  };
}

/**
 * An event below `macFromSeq` that carries a MAC matching under `key`: only nodes make those, and they
 * made them from migration 0059 on, at positions from the chain's `mac_from_seq`. So `macFromSeq` was
 * raised. The signed constants catch that on a chain signed since migration 0085; this also catches it
 * where the head row is taken (checkpoints only of the older format, or those carrying constants deleted
 * by the table owner) as long as the chain holds one event written since migration 0059. Events below
 * it normally have no MAC at all, so this costs nothing on them.
 */
function macBelowStart(key: MacKey, macFromSeq: number, event: CheckedEvent): ChainBreak | null {
  if (event.mac === '' || event.mac === undefined) return null;
  if (checkMac(key, Buffer.from(event.hash, 'hex'), Buffer.from(event.mac, 'hex')) !== 'ok') return null;
  return {
    kind: 'modified',
    seq: event.seq,
    eventId: event.id,
    message: `event at seq ${event.seq} carries a node's MAC but lies below the chain's mac_from_seq (${macFromSeq}): mac_from_seq was raised`,
  };
}

/**
 * The MAC check of one event (walk.ts): events before `macFromSeq` predate MACs; one made under another
 * key is accepted when the first signed checkpoint covering it is of another key than the one paired
 * with `key` (`vouched`: that key's job checked it before signing, with the key of the day); anything
 * else that does not match is forged. A forged event an operator acknowledged (an acknowledgement whose
 * MAC verifies, naming its position, id and hash; one under an older key where `vouched`) does not break
 * the chain but is still reported (`found`); the walk checks its hash and links like every other event's.
 */
function macChecker(
  key: MacKey,
  macFromSeq: number,
  vouched: (seq: number) => boolean,
  acks: readonly ForgeryAcknowledgement[],
  found: (event: ForgedEvent) => void,
) {
  return (event: CheckedEvent): ChainBreak | null => {
    if (event.mac === undefined) return null;
    if (event.seq < macFromSeq) return macBelowStart(key, macFromSeq, event);
    const mac = event.mac === '' ? null : Buffer.from(event.mac, 'hex');
    const verdict = checkMac(key, Buffer.from(event.hash, 'hex'), mac);
    if (verdict === 'ok') return null;
    const byAnotherKey = vouched(event.seq);
    if (verdict === 'other-key' && byAnotherKey) return null;
    const acknowledgement = acknowledgementOf(acks, key, event, byAnotherKey);
    found({ seq: event.seq, eventId: event.id, hash: event.hash, acknowledgement });
    if (acknowledgement) return null;
    return {
      kind: 'forged',
      seq: event.seq,
      eventId: event.id,
      message:
        verdict === 'bad'
          ? `event at seq ${event.seq} is forged: MAC does not match`
          : `event at seq ${event.seq} is forged: its MAC is under another key and no checkpoint signed with another key covers it`,
    };
  };
}
