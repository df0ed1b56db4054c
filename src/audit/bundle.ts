import { createReadStream } from 'node:fs';
import { StringDecoder } from 'node:string_decoder';
import type { Database } from '../platform/db/index.ts';
import { type ChainConstants, canonicalEventOrNull, chainHashHex, type EventFields } from './canonical.ts';
import { signedConstants } from './constants.ts';
import { chainEvents, inChain, readCheckpoints, readHead } from './store.ts';
import {
  type ChainBreak,
  type ChainState,
  type CheckedEvent,
  checkSignatures,
  partitionCheckpoints,
  type StoredCheckpoint,
  type StoredEvent,
  type WalkResult,
  walkChain,
} from './walk.ts';

/**
 * The offline bundle: JSON Lines. Line 1 is the chain (`{"type":"chain",...}`: where it starts and its
 * head), then its signed checkpoints, then every event in sequence order. Byte strings are lowercase
 * hex. docs/audit.md describes how to check it with any SHA-256, RFC 8785 and Ed25519 implementation.
 */
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const unhex = (s: unknown) => Buffer.from(String(s), 'hex');

export const eventLine = (e: StoredEvent) =>
  JSON.stringify({
    type: 'event',
    seq: e.seq,
    id: e.id,
    tenant: e.tenantId,
    at: e.occurredAt.toISOString(),
    actor: { type: e.actorType, id: e.actorId, elevation: e.actorElevationId },
    action: e.action,
    target: e.targetType === null && e.targetId === null ? null : { type: e.targetType, id: e.targetId },
    outcome: e.outcome,
    ip: e.ip,
    userAgent: e.userAgent,
    requestId: e.requestId,
    details: e.details,
    prevHash: hex(e.prevHash),
    hash: hex(e.hash),
  });

const checkpointLine = (c: StoredCheckpoint) =>
  JSON.stringify({
    type: 'checkpoint',
    chain: c.tenantId ?? 'platform',
    seq: c.seq,
    head: hex(c.headHash),
    at: c.signedAt.toISOString(),
    keyId: c.keyId,
    signature: hex(c.signature),
    // Only on checkpoints that sign them (migration 0085): older lines stay as they were.
    ...(c.constants ? { macFromSeq: c.constants.macFromSeq, legacyEvents: c.constants.legacyEvents } : {}),
  });

/**
 * Writes a chain's bundle, up to the head as read at the start (later appends wait for the next one).
 * Only checkpoints a trusted key signed go in: a forged row in the database would make the bundle fail.
 */
export async function writeBundle(
  db: Database,
  tenantId: string | null,
  keys: ChainState['keys'],
  write: (line: string) => Promise<void> | void,
): Promise<number> {
  const { head, rows } = await inChain(db, tenantId, async (tx) => ({
    head: await readHead(tx, tenantId),
    rows: await readCheckpoints(tx, tenantId),
  }));
  const { trusted: checkpoints } = partitionCheckpoints(rows, keys);
  const start = checkpoints.find((c) => c.seq === head.prunedThrough);
  await write(
    JSON.stringify({
      type: 'chain',
      version: 1,
      chain: tenantId ?? 'platform',
      start: start ? { seq: start.seq, hash: hex(start.headHash) } : { seq: 0, hash: hex(Buffer.alloc(32)) },
      head: { seq: head.seq, hash: hex(head.hash) },
    }),
  );
  for (const c of checkpoints) if (c.seq <= head.seq) await write(checkpointLine(c));
  let count = 0;
  for await (const event of chainEvents(db, tenantId, start?.seq ?? 0, head.seq)) {
    if (event.seq > head.seq) break;
    await write(eventLine(event));
    count += 1;
  }
  return count;
}

interface EventLine {
  seq: number;
  id: string;
  tenant: string | null;
  at: string;
  actor: { type: string; id: string | null; elevation: string | null };
  action: string;
  target: { type: string | null; id: string | null } | null;
  outcome: string;
  ip: string | null;
  userAgent: string | null;
  requestId: string | null;
  details: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

/** Lines are read as written by writeBundle; a malformed one fails the hash checks or the parse. */
type Line = { type: string } & Partial<EventLine> & Record<string, unknown>;

/** `Date.toISOString()` text as writeBundle writes it; other spellings of a time go through a Date. */
const isoText = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

/** Checks an event line without building a Date or Buffers: hashes are compared as lowercase hex. */
function checkLine(o: EventLine): CheckedEvent {
  const { actor, target } = o;
  const prevHash = String(o.prevHash).toLowerCase();
  const hash = String(o.hash).toLowerCase();
  const at = typeof o.at === 'string' && isoText.test(o.at) ? o.at : new Date(o.at).toISOString();
  const event: EventFields = {
    id: o.id,
    tenantId: o.tenant,
    actorType: actor.type,
    actorId: actor.id,
    actorElevationId: actor.elevation,
    action: o.action,
    targetType: target?.type ?? null,
    targetId: target?.id ?? null,
    outcome: o.outcome,
    ip: o.ip,
    userAgent: o.userAgent,
    requestId: o.requestId,
    details: o.details,
  };
  const text = canonicalEventOrNull(event, at);
  const intact = text !== null && chainHashHex(prevHash, text) === hash;
  return { seq: Number(o.seq), id: o.id, prevHash, hash, intact };
}

/** Line breaks as readline reads them (crlfDelay: Infinity): \r\n, \n or a lone \r. */
const lineBreak = /\r\n|\n|\r/;

/**
 * The file's lines, as readline would give them, a chunk's worth at a time: one await per chunk rather
 * than per line (readline's per-line promise was a large share of verify-file's time).
 */
export async function* lineBatches(path: string, chunkBytes = 1 << 20): AsyncGenerator<string[]> {
  const decoder = new StringDecoder('utf8');
  let rest = '';
  for await (const chunk of createReadStream(path, { highWaterMark: chunkBytes })) {
    const text = rest + decoder.write(chunk as Buffer);
    // A trailing \r may be the first half of a \r\n split across chunks: it waits for the next one.
    const end = text.endsWith('\r') ? text.length - 1 : text.length;
    const lines = text.slice(0, end).split(lineBreak);
    rest = (lines.pop() ?? '') + text.slice(end);
    if (lines.length > 0) yield lines;
  }
  const lines = (rest + decoder.end()).split(lineBreak);
  if (lines.at(-1) === '') lines.pop();
  if (lines.length > 0) yield lines;
}

/** The next line of lineBatches, and the rest of its batch (events are read a batch at a time). */
function lineReader(path: string) {
  const batches = lineBatches(path);
  const reader = {
    batch: [] as string[],
    at: 0,
    async next(): Promise<string | undefined> {
      while (reader.at >= reader.batch.length) {
        const next = await batches.next();
        if (next.done) return undefined;
        reader.batch = next.value;
        reader.at = 0;
      }
      return reader.batch[reader.at++];
    },
  };
  return reader;
}

export interface BundleOptions {
  /** Accept events after the last signed checkpoint (they are counted in `unsigned`). */
  allowUnsignedTail?: boolean;
}

export interface BundleResult extends WalkResult {
  chain: string;
  /** The newest checkpoint that vouches for the bundle's events (its start or one of them), if any. */
  lastSigned: { seq: number; at: Date } | null;
  /** Events after `lastSigned` (all of them when there is none): no signature covers them. */
  unsigned: number;
  /** The chain constants its signed checkpoints carry (migration 0085), null when none does. */
  constants: ChainConstants | null;
}

const ZERO_HASH = '0'.repeat(64);
const hexText = /^[0-9a-f]{64}$/;

/**
 * A checkpoint line's chain constants, or null when it carries none (signed before migration 0085).
 * Whatever it says is checked by the signature: a value added, removed or changed makes it fail.
 */
function lineConstants(o: Line): StoredCheckpoint['constants'] {
  if (o.macFromSeq === undefined && o.legacyEvents === undefined) return null;
  return { macFromSeq: Number(o.macFromSeq), legacyEvents: Number(o.legacyEvents) };
}

/** The header's start and head, or what is wrong with them. */
function readPosition(value: unknown, what: string): { seq: number; hash: string } {
  const v = value as { seq?: unknown; hash?: unknown } | null;
  const seq = v?.seq;
  const hash = typeof v?.hash === 'string' ? v.hash.toLowerCase() : '';
  if (typeof seq !== 'number' || !Number.isSafeInteger(seq) || seq < 0 || !hexText.test(hash)) {
    throw new Error(`not an audit bundle: the chain line's ${what} must be {"seq":N,"hash":"<64 hex>"}`);
  }
  return { seq, hash };
}

/**
 * Where the bundle may start: genesis, or a checkpoint in the bundle with that position and hash (whose
 * signature the walk checks with the others). A start that is neither is the bundle's own claim only.
 */
function startBreak(
  start: { seq: number; hash: string },
  checkpoints: StoredCheckpoint[],
): ChainBreak | null {
  if (start.seq === 0 && start.hash === ZERO_HASH) return null;
  const signed = checkpoints.find((c) => c.seq === start.seq);
  if (signed && hex(signed.headHash) === start.hash) return null;
  return {
    kind: 'checkpoint',
    seq: start.seq,
    eventId: null,
    message: signed
      ? `the bundle starts at seq ${start.seq} with a hash that its signed checkpoint there does not have`
      : `the bundle starts at seq ${start.seq}, which is neither the chain's beginning nor a signed checkpoint in the bundle`,
  };
}

/** The first checkpoint of another chain than the header's, as a break. */
function foreignCheckpoint(chainName: string, checkpoints: StoredCheckpoint[]): ChainBreak | null {
  const foreign = checkpoints.find((c) => (c.tenantId ?? 'platform') !== chainName);
  if (!foreign) return null;
  return {
    kind: 'checkpoint',
    seq: foreign.seq,
    eventId: null,
    message: `checkpoint at seq ${foreign.seq} belongs to chain ${foreign.tenantId ?? 'platform'}, not ${chainName}`,
  };
}

/**
 * Verifies a bundle file without any database: only the file and the trusted public key(s). Nothing
 * the bundle says about itself is taken on trust: it must start at the chain's beginning or at a signed
 * checkpoint it carries; every checkpoint and event must belong to the chain its first line names; and
 * events after the last signed checkpoint are a failure (`unsigned`) unless `allowUnsignedTail`.
 */
export async function verifyBundle(
  path: string,
  keys: ChainState['keys'],
  options: BundleOptions = {},
): Promise<BundleResult> {
  const lines = lineReader(path);
  let chain: ChainState | null = null;
  let chainName = '';
  let start = { seq: 0, hash: ZERO_HASH };
  const checkpoints: StoredCheckpoint[] = [];
  let firstEvent: EventLine | null = null;
  // Header and checkpoints come first; events are then streamed into the walk, never all held at once.
  for (let line = await lines.next(); line !== undefined; line = await lines.next()) {
    if (line.trim() === '') continue;
    const o = JSON.parse(line) as Line;
    if (o.type === 'chain') {
      if (chain) throw new Error('not an audit bundle: it has a second chain line');
      start = readPosition(o.start, 'start');
      const head = readPosition(o.head, 'head');
      chainName = String(o.chain);
      chain = {
        start: { seq: start.seq, hash: unhex(start.hash) },
        head: { seq: head.seq, hash: unhex(head.hash) },
        checkpoints,
        keys,
      };
    } else if (!chain) {
      break;
    } else if (o.type === 'checkpoint') {
      checkpoints.push({
        tenantId: o.chain === 'platform' ? null : String(o.chain),
        seq: Number(o.seq),
        headHash: unhex(o.head),
        signedAt: new Date(String(o.at)),
        keyId: String(o.keyId),
        signature: unhex(o.signature),
        constants: lineConstants(o),
      });
    } else if (o.type === 'event') {
      firstEvent = o as unknown as EventLine;
      break;
    } else {
      throw new Error(`unknown line type ${JSON.stringify(o.type)}`);
    }
  }
  if (!chain) throw new Error('not an audit bundle: the first line must be {"type":"chain",...}');
  const state = chain;
  const tenant = chainName === 'platform' ? null : chainName;
  const result = (walked: WalkResult, broken: ChainBreak | null, lastSigned: BundleResult['lastSigned']) => ({
    chain: chainName,
    ...walked,
    broken,
    lastSigned,
    unsigned: walked.lastSeq - (lastSigned?.seq ?? state.start.seq),
    constants: signedConstants(checkpoints).constants,
  });
  const notWalked: WalkResult = {
    events: 0,
    checkpoints: checkpoints.length,
    lastSeq: start.seq,
    broken: null,
  };
  // Signatures first: the start may rest only on a checkpoint that verifies.
  // Signed checkpoints that carry the chain constants must agree (as in verify; a bundle has no head row
  // to compare them with, and no MACs or unchained events they would apply to).
  const refused =
    foreignCheckpoint(chainName, checkpoints) ??
    checkSignatures(state) ??
    signedConstants(checkpoints).problem ??
    startBreak(start, checkpoints);
  if (refused) return result(notWalked, refused, null);

  // An event of another chain ends the stream; the walk then stops before it and the break names it.
  let foreign: ChainBreak | null = null;
  const own = (o: EventLine): boolean => {
    if (o.tenant === tenant) return true;
    foreign = {
      kind: 'inserted',
      seq: Number(o.seq),
      eventId: String(o.id),
      message: `event at seq ${o.seq} belongs to chain ${o.tenant ?? 'platform'}, not ${chainName}`,
    };
    return false;
  };
  // A bundle that starts after the chain's beginning was pruned there: the audit.trail.pruned event the
  // pruning job appended (walked with the others, so its hash and links hold) must account for it, as
  // verify requires in the database (a prefix deleted by a direct call of the prune function has none).
  let prunedRecord = false;
  const check = (o: EventLine): CheckedEvent => {
    if (
      o.action === 'audit.trail.pruned' &&
      String((o.details as { throughSeq?: unknown } | null)?.throughSeq) === String(start.seq)
    )
      prunedRecord = true;
    return checkLine(o);
  };
  /** The events from the current batch of lines on, a page per batch; false once the stream ends. */
  const eventsOf = (page: CheckedEvent[]): boolean => {
    for (; lines.at < lines.batch.length; lines.at += 1) {
      const line = lines.batch[lines.at] as string;
      if (line.trim() === '') continue;
      const o = JSON.parse(line) as Line;
      if (o.type !== 'event') throw new Error(`unexpected ${JSON.stringify(o.type)} line among the events`);
      if (!own(o as unknown as EventLine)) return false;
      page.push(check(o as unknown as EventLine));
    }
    return true;
  };
  async function* events(): AsyncGenerator<CheckedEvent[]> {
    if (!firstEvent) return;
    if (!own(firstEvent)) return;
    let page: CheckedEvent[] = [check(firstEvent)];
    while (eventsOf(page)) {
      yield page;
      page = [];
      // The next batch: next() returns its first line, which eventsOf then reads from the batch.
      if ((await lines.next()) === undefined) return;
      lines.at -= 1;
    }
    yield page;
  }
  const walked = await walkChain(events(), state);
  const stray = foreign as ChainBreak | null;
  // The walk checked every checkpoint's signature and, up to its last event, that each one's head is
  // the hash of the event at its position; the start's checkpoint was compared above.
  const signed = checkpoints
    .filter((c) => c.seq >= state.start.seq && c.seq <= walked.lastSeq)
    .reduce<StoredCheckpoint | null>((a, c) => (a && a.seq >= c.seq ? a : c), null);
  const lastSigned = signed ? { seq: signed.seq, at: signed.signedAt } : null;
  if (stray && (!walked.broken || walked.broken.seq === null || walked.broken.seq >= (stray.seq ?? 0))) {
    return result(walked, stray, lastSigned);
  }
  if (walked.broken) return result(walked, walked.broken, lastSigned);
  if (state.start.seq > 0 && !prunedRecord) {
    return result(
      walked,
      {
        kind: 'deleted',
        seq: state.start.seq,
        eventId: null,
        message: `the chain was pruned up to seq ${state.start.seq} but no audit.trail.pruned event in the bundle records it`,
      },
      lastSigned,
    );
  }
  const tail = walked.lastSeq - (lastSigned?.seq ?? state.start.seq);
  if (tail > 0 && !options.allowUnsignedTail) {
    const since = lastSigned
      ? `after the last signed checkpoint, seq ${lastSigned.seq} (signed ${lastSigned.at.toISOString()})`
      : 'in the bundle (it has no signed checkpoint over its events)';
    return result(
      walked,
      {
        kind: 'unsigned',
        seq: walked.lastSeq - tail + 1,
        eventId: null,
        message: `${tail} event(s) ${since} are covered by no signature`,
      },
      lastSigned,
    );
  }
  return result(walked, null, lastSigned);
}
