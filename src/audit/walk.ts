import type { KeyObject } from 'node:crypto';
import { type ChainedEvent, chainHash, GENESIS_HASH } from './canonical.ts';
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
}

export type BreakKind = 'modified' | 'deleted' | 'inserted' | 'reordered' | 'checkpoint';

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
}

export interface WalkResult {
  events: number;
  checkpoints: number;
  lastSeq: number;
  broken: ChainBreak | null;
}

const same = (a: Uint8Array, b: Uint8Array) => Buffer.compare(a, b) === 0;
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex').slice(0, 16);

export const genesis = { seq: 0, hash: GENESIS_HASH };

/** Checks each checkpoint's signature against the trusted keys. */
export function checkSignatures(state: ChainState): ChainBreak | null {
  for (const cp of state.checkpoints) {
    const key = state.keys.get(cp.keyId);
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
  }
  return null;
}

/**
 * Walks one chain in sequence order and names the first break. Each event is checked twice: its own
 * hash (SHA-256 of the previous hash it stores and its canonical JSON: a mismatch means the event was
 * modified) and its link (the previous hash it stores must be the hash of the event before it: a
 * mismatch means an event was deleted, inserted or moved). One event of look-ahead tells those apart.
 */
export async function walkChain(
  events: AsyncIterable<StoredEvent>,
  state: ChainState,
  onEvent?: (count: number) => void,
): Promise<WalkResult> {
  const signatureBreak = checkSignatures(state);
  const checkpoints = new Map(state.checkpoints.map((c) => [c.seq, c]));
  let expectedPrev = state.start.hash;
  let beforePrev: Uint8Array | null = null;
  let expectedSeq = state.start.seq + 1;
  let last: StoredEvent | null = null;
  let count = 0;
  const result = (broken: ChainBreak | null): WalkResult => ({
    events: count,
    checkpoints: state.checkpoints.length,
    lastSeq: expectedSeq - 1,
    broken: broken ?? signatureBreak,
  });

  const iterator = events[Symbol.asyncIterator]();
  let next = await iterator.next();
  while (!next.done) {
    const cur = next.value;
    next = await iterator.next();
    const ahead = next.done ? null : next.value;
    const at = { seq: cur.seq, eventId: cur.id };
    if (cur.seq > state.head.seq) {
      return result({
        kind: 'inserted',
        ...at,
        message: `event at seq ${cur.seq} lies beyond the chain head (${state.head.seq})`,
      });
    }
    if (!same(chainHash(cur.prevHash, cur), cur.hash)) {
      if (ahead && same(ahead.prevHash, expectedPrev)) {
        return result({
          kind: 'inserted',
          ...at,
          message: `event at seq ${cur.seq} was inserted: the chain continues past it`,
        });
      }
      return result({
        kind: 'modified',
        ...at,
        message: `event at seq ${cur.seq} was modified: its content no longer matches its hash`,
      });
    }
    if (!same(cur.prevHash, expectedPrev)) {
      if (ahead && same(cur.prevHash, ahead.hash)) {
        return result({
          kind: 'reordered',
          ...at,
          message: `event at seq ${cur.seq} was moved: it belongs after the event at seq ${ahead.seq}`,
        });
      }
      if (last && beforePrev && same(cur.prevHash, beforePrev)) {
        return result({
          kind: 'inserted',
          seq: last.seq,
          eventId: last.id,
          message: `event at seq ${last.seq} was inserted: the next event links past it`,
        });
      }
      if (cur.seq > expectedSeq) {
        const gap = cur.seq - 1 === expectedSeq ? `${expectedSeq}` : `${expectedSeq}-${cur.seq - 1}`;
        return result({
          kind: 'deleted',
          seq: expectedSeq,
          eventId: null,
          message: `event(s) at seq ${gap} were deleted (the chain resumes at seq ${cur.seq}, event ${cur.id})`,
        });
      }
      if (last) {
        return result({
          kind: 'modified',
          seq: last.seq,
          eventId: last.id,
          message: `event at seq ${last.seq} was rewritten: the next event links to a different hash (${hex(cur.prevHash)}…)`,
        });
      }
      return result({
        kind: 'deleted',
        seq: expectedSeq,
        eventId: null,
        message: `the chain does not start where expected: event(s) before seq ${cur.seq} were deleted`,
      });
    }
    if (cur.seq !== expectedSeq) {
      const kind = cur.seq < expectedSeq ? 'inserted' : 'modified';
      return result({
        kind,
        ...at,
        message: `event ${cur.id} carries seq ${cur.seq} where ${expectedSeq} was expected`,
      });
    }
    const cp = checkpoints.get(cur.seq);
    if (cp && !same(cp.headHash, cur.hash)) {
      return result({
        kind: 'modified',
        ...at,
        message: `the chain up to seq ${cur.seq} was rewritten: it does not match the checkpoint signed at ${cp.signedAt.toISOString()}`,
      });
    }
    beforePrev = expectedPrev;
    expectedPrev = cur.hash;
    expectedSeq = cur.seq + 1;
    last = cur;
    count += 1;
    onEvent?.(count);
  }
  const lastSeq = expectedSeq - 1;
  const lostCheckpoint = state.checkpoints.find((c) => c.seq > lastSeq);
  if (state.head.seq > lastSeq || lostCheckpoint) {
    const upTo = Math.max(state.head.seq, lostCheckpoint?.seq ?? 0);
    return result({
      kind: 'deleted',
      seq: lastSeq + 1,
      eventId: null,
      message: `event(s) at seq ${lastSeq + 1}-${upTo} at the end of the chain were deleted`,
    });
  }
  if (!same(state.head.hash, expectedPrev)) {
    return result({
      kind: 'modified',
      seq: lastSeq,
      eventId: last?.id ?? null,
      message: `the chain head does not match the last event (seq ${lastSeq})`,
    });
  }
  return result(null);
}
