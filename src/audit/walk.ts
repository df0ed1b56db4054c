import type { KeyObject } from 'node:crypto';
import { type ChainConstants, type ChainedEvent, GENESIS_HASH } from './canonical.ts';
import { verifyCheckpointSignature } from './signer.ts';

export interface StoredEvent extends ChainedEvent {
  seq: number;
  prevHash: Uint8Array;
  hash: Uint8Array;
}

export interface StoredCheckpoint {
  tenantId: string | null;
  seq: number;
  headHash: Uint8Array;
  signedAt: Date;
  keyId: string;
  signature: Uint8Array;
  /** The chain constants it signs (migration 0085); null on checkpoints signed before. */
  constants: ChainConstants | null;
}

/**
 * `unsigned`: only from verify-file, events after the bundle's last signed checkpoint (bundle.ts).
 * `forged`: an event whose MAC does not match (verify with the MAC key, mac.ts).
 */
export type BreakKind =
  | 'modified'
  | 'deleted'
  | 'inserted'
  | 'reordered'
  | 'checkpoint'
  | 'unsigned'
  | 'forged';

/** The first thing found wrong, named by position and, where the event still exists, by id. */
export interface ChainBreak {
  kind: BreakKind;
  seq: number | null;
  eventId: string | null;
  message: string;
}

export interface ChainState {
  /** Where verification starts: genesis, or the signed checkpoint retention pruned up to. */
  start: { seq: number; hash: Uint8Array };
  head: { seq: number; hash: Uint8Array };
  checkpoints: StoredCheckpoint[];
  keys: Map<string, KeyObject>;
  /**
   * Checks an event's MAC (verify, when it holds the MAC key): a break names a forged event. Called for
   * every event; the first break is reported only when the walk finds nothing else, so every other kind
   * of tampering keeps its own report.
   */
  macs?: (event: CheckedEvent) => ChainBreak | null;
}

export interface WalkResult {
  events: number;
  checkpoints: number;
  lastSeq: number;
  broken: ChainBreak | null;
}

const hexOf = (b: Uint8Array) => Buffer.from(b).toString('hex');

export const genesis = { seq: 0, hash: GENESIS_HASH };

/** What is wrong with a checkpoint's signature under the trusted keys, or null when it verifies. */
export function signatureProblem(cp: StoredCheckpoint, keys: Map<string, KeyObject>): ChainBreak | null {
  const key = keys.get(cp.keyId);
  const where = { seq: cp.seq, eventId: null };
  if (!key) {
    return {
      kind: 'checkpoint',
      ...where,
      message: `checkpoint at seq ${cp.seq} is signed by unknown key ${cp.keyId}`,
    };
  }
  if (!verifyCheckpointSignature(key, cp, cp.signature)) {
    return {
      kind: 'checkpoint',
      ...where,
      message: `checkpoint at seq ${cp.seq} has an invalid signature`,
    };
  }
  return null;
}

/** Checks each checkpoint's signature against the trusted keys (a bundle: any bad one refuses it). */
export function checkSignatures(state: ChainState): ChainBreak | null {
  for (const cp of state.checkpoints) {
    const problem = signatureProblem(cp, state.keys);
    if (problem) return problem;
  }
  return null;
}

/**
 * A chain's checkpoint rows split into those whose signature verifies under a trusted key and the
 * others. Anyone who may write to the database can add a row; only a trusted key's signature makes it
 * a checkpoint. The others are never a start, a prune anchor or "the newest checkpoint": verify names
 * them (`forged`) and walks the chain with the trusted ones.
 */
export function partitionCheckpoints(
  checkpoints: StoredCheckpoint[],
  keys: Map<string, KeyObject>,
): { trusted: StoredCheckpoint[]; forged: ChainBreak[] } {
  const signed: StoredCheckpoint[] = [];
  const forged: ChainBreak[] = [];
  for (const cp of checkpoints) {
    const problem = signatureProblem(cp, keys);
    if (problem) forged.push(problem);
    else signed.push(cp);
  }
  const successors = (keys as TrustedKeys).successors;
  if (!successors || successors.size === 0) return { trusted: signed, forged };
  // A recorded older key counts up to where, in this chain, a key recorded after it signed first.
  const firstOf = new Map<string, number>();
  for (const cp of signed) if (!firstOf.has(cp.keyId)) firstOf.set(cp.keyId, cp.seq);
  const trusted: StoredCheckpoint[] = [];
  for (const cp of signed) {
    const later = successors.get(cp.keyId) ?? [];
    let takeover: { seq: number; keyId: string } | null = null;
    for (const id of later) {
      const seq = firstOf.get(id);
      if (seq !== undefined && (!takeover || seq < takeover.seq)) takeover = { seq, keyId: id };
    }
    if (takeover && cp.seq > takeover.seq) {
      forged.push({
        kind: 'checkpoint',
        seq: cp.seq,
        eventId: null,
        message: `checkpoint at seq ${cp.seq} is signed by key ${cp.keyId} after key ${takeover.keyId} took over at seq ${takeover.seq}`,
      });
    } else trusted.push(cp);
  }
  forged.sort((a, b) => (a.seq ?? 0) - (b.seq ?? 0));
  return { trusted, forged };
}

/**
 * Trusted keys by key id; `successors` (key rotation): for each recorded older key, the ids of the keys
 * recorded after it, up to the current one. Keys without an entry (the current key, and keys the
 * operator passes with --public-key) count everywhere.
 */
export type TrustedKeys = Map<string, KeyObject> & { successors?: Map<string, string[]> };

/**
 * One stored event as the walk needs it: its position, id and links in lowercase hex, and whether its
 * own hash holds (SHA-256 of the previous hash it stores and its canonical JSON is the hash it stores).
 */
export interface CheckedEvent {
  seq: number;
  id: string;
  prevHash: string;
  hash: string;
  intact: boolean;
  /** The stored MAC in lowercase hex ('' when none); absent where there is none to read (bundles). */
  mac?: string;
}

/** The next non-empty page, or an empty one at the end. */
async function nextPage(pages: AsyncIterator<readonly CheckedEvent[]>): Promise<readonly CheckedEvent[]> {
  for (;;) {
    const next = await pages.next();
    if (next.done) return [];
    if (next.value.length > 0) return next.value;
  }
}

/**
 * Walks one chain in sequence order and names the first break. Each event is checked twice: its own
 * hash (a mismatch means the event was modified) and its link (the previous hash it stores must be the
 * hash of the event before it: a mismatch means an event was deleted, inserted or moved). One event of
 * look-ahead tells those apart. Events come in pages (`onPage` hears the count after each page).
 */
export async function walkChain(
  pages: AsyncIterable<readonly CheckedEvent[]>,
  state: ChainState,
  onPage?: (count: number) => void,
): Promise<WalkResult> {
  const signatureBreak = checkSignatures(state);
  // Several checkpoints may share a position (nodes racing, or rows of other trusted keys): each must match.
  const checkpoints = new Map<number, StoredCheckpoint[]>();
  for (const c of state.checkpoints) checkpoints.set(c.seq, [...(checkpoints.get(c.seq) ?? []), c]);
  let expectedPrev = hexOf(state.start.hash);
  let beforePrev: string | null = null;
  let expectedSeq = state.start.seq + 1;
  let last: CheckedEvent | null = null;
  let count = 0;
  let forged: ChainBreak | null = null;
  const result = (broken: ChainBreak | null): WalkResult => ({
    events: count,
    checkpoints: state.checkpoints.length,
    lastSeq: expectedSeq - 1,
    broken: broken ?? signatureBreak,
  });

  const iterator = pages[Symbol.asyncIterator]();
  let page = await nextPage(iterator);
  while (page.length > 0) {
    let following: readonly CheckedEvent[] = [];
    for (let i = 0; i < page.length; i += 1) {
      const cur = page[i] as CheckedEvent;
      let ahead = page[i + 1];
      if (ahead === undefined) {
        following = await nextPage(iterator);
        ahead = following[0];
      }
      const broken = checkOne(cur, ahead ?? null);
      if (broken) return result(broken);
      // Every event's MAC, also after the first forged one: verify lists them all (acknowledged or not).
      const macBreak = state.macs?.(cur) ?? null;
      if (forged === null) forged = macBreak;
      beforePrev = expectedPrev;
      expectedPrev = cur.hash;
      expectedSeq = cur.seq + 1;
      last = cur;
      count += 1;
    }
    onPage?.(count);
    page = following;
  }
  return result(checkEnd() ?? forged);

  function checkOne(cur: CheckedEvent, ahead: CheckedEvent | null): ChainBreak | null {
    const at = { seq: cur.seq, eventId: cur.id };
    if (cur.seq > state.head.seq) {
      return {
        kind: 'inserted',
        ...at,
        message: `event at seq ${cur.seq} lies beyond the chain head (${state.head.seq})`,
      };
    }
    if (!cur.intact) {
      if (ahead && ahead.prevHash === expectedPrev) {
        return {
          kind: 'inserted',
          ...at,
          message: `event at seq ${cur.seq} was inserted: the chain continues past it`,
        };
      }
      return {
        kind: 'modified',
        ...at,
        message: `event at seq ${cur.seq} was modified: its content no longer matches its hash`,
      };
    }
    if (cur.prevHash !== expectedPrev) return linkBreak(cur, ahead);
    if (cur.seq !== expectedSeq) {
      const kind = cur.seq < expectedSeq ? 'inserted' : 'modified';
      return {
        kind,
        ...at,
        message: `event ${cur.id} carries seq ${cur.seq} where ${expectedSeq} was expected`,
      };
    }
    const cp = checkpoints.get(cur.seq)?.find((c) => hexOf(c.headHash) !== cur.hash);
    if (cp) {
      return {
        kind: 'modified',
        ...at,
        message: `the chain up to seq ${cur.seq} was rewritten: it does not match the checkpoint signed at ${cp.signedAt.toISOString()}`,
      };
    }
    return null;
  }

  /** The event's own hash holds but it does not link to the one before: what happened around it. */
  function linkBreak(cur: CheckedEvent, ahead: CheckedEvent | null): ChainBreak {
    if (ahead && cur.prevHash === ahead.hash) {
      return {
        kind: 'reordered',
        seq: cur.seq,
        eventId: cur.id,
        message: `event at seq ${cur.seq} was moved: it belongs after the event at seq ${ahead.seq}`,
      };
    }
    if (last && beforePrev !== null && cur.prevHash === beforePrev) {
      return {
        kind: 'inserted',
        seq: last.seq,
        eventId: last.id,
        message: `event at seq ${last.seq} was inserted: the next event links past it`,
      };
    }
    if (cur.seq > expectedSeq) {
      const gap = cur.seq - 1 === expectedSeq ? `${expectedSeq}` : `${expectedSeq}-${cur.seq - 1}`;
      return {
        kind: 'deleted',
        seq: expectedSeq,
        eventId: null,
        message: `event(s) at seq ${gap} were deleted (the chain resumes at seq ${cur.seq}, event ${cur.id})`,
      };
    }
    if (last) {
      return {
        kind: 'modified',
        seq: last.seq,
        eventId: last.id,
        message: `event at seq ${last.seq} was rewritten: the next event links to a different hash (${cur.prevHash.slice(0, 16)}…)`,
      };
    }
    return {
      kind: 'deleted',
      seq: expectedSeq,
      eventId: null,
      message: `the chain does not start where expected: event(s) before seq ${cur.seq} were deleted`,
    };
  }

  /** After the last event: nothing missing at the end, and the head is the last event's hash. */
  function checkEnd(): ChainBreak | null {
    const lastSeq = expectedSeq - 1;
    const lostCheckpoint = state.checkpoints.find((c) => c.seq > lastSeq);
    if (state.head.seq > lastSeq || lostCheckpoint) {
      const upTo = Math.max(state.head.seq, lostCheckpoint?.seq ?? 0);
      return {
        kind: 'deleted',
        seq: lastSeq + 1,
        eventId: null,
        message: `event(s) at seq ${lastSeq + 1}-${upTo} at the end of the chain were deleted`,
      };
    }
    if (hexOf(state.head.hash) !== expectedPrev) {
      return {
        kind: 'modified',
        seq: lastSeq,
        eventId: last?.id ?? null,
        message: `the chain head does not match the last event (seq ${lastSeq})`,
      };
    }
    return null;
  }
}
