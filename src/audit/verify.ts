import type { KeyObject } from 'node:crypto';
import type { Database } from '../platform/db/index.ts';
import { checkedEvents } from './check.ts';
import { inChain, readCheckpoints, readHead, unchainedEvents } from './store.ts';
import { type ChainBreak, genesis, walkChain } from './walk.ts';

export interface ChainReport {
  chain: string;
  /** Events checked (those after the retention point). */
  events: number;
  checkpoints: number;
  headSeq: number;
  /** Events written before the chain existed (migration 0030); they are not covered. */
  legacyEvents: number;
  broken: ChainBreak | null;
}

export interface VerifyOptions {
  keys: Map<string, KeyObject>;
  /** Called with events checked so far and the number expected. */
  onProgress?: (done: number, total: number) => void;
}

/** Verifies one chain in the database: events, links, head, signed checkpoints, stray rows. */
export async function verifyAuditChain(
  db: Database,
  tenantId: string | null,
  options: VerifyOptions,
): Promise<ChainReport> {
  const { head, checkpoints, unchained } = await inChain(db, tenantId, async (tx) => ({
    head: await readHead(tx, tenantId),
    checkpoints: await readCheckpoints(tx, tenantId),
    unchained: await unchainedEvents(tx, tenantId),
  }));
  const report = (events: number, broken: ChainBreak | null): ChainReport => ({
    chain: tenantId ?? 'platform',
    events,
    checkpoints: checkpoints.length,
    headSeq: head.seq,
    legacyEvents: head.legacyEvents,
    broken,
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
  const total = head.seq - start.seq;
  options.onProgress?.(0, total);
  const walked = await walkChain(
    checkedEvents(db, tenantId, start.seq, head.seq),
    { start, head, checkpoints: checkpoints.filter((c) => c.seq >= start.seq), keys: options.keys },
    (done) => options.onProgress?.(done, total),
  );
  options.onProgress?.(walked.events, total);
  if (walked.broken) return report(walked.events, walked.broken);
  if (unchained.count > head.legacyEvents) {
    return report(walked.events, {
      kind: 'inserted',
      seq: null,
      eventId: unchained.newest,
      message: `${unchained.count - head.legacyEvents} event(s) were inserted outside the chain (newest: ${unchained.newest})`,
    });
  }
  return report(walked.events, null);
}
