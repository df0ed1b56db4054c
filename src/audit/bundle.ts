import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import type { Database } from '../platform/db/index.ts';
import { canonicalEventAt, chainHashHex, type EventFields } from './canonical.ts';
import { chainEvents, inChain, readCheckpoints, readHead } from './store.ts';
import {
  type ChainState,
  type CheckedEvent,
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
  });

/** Writes a chain's bundle, up to the head as read at the start (later appends wait for the next one). */
export async function writeBundle(
  db: Database,
  tenantId: string | null,
  write: (line: string) => Promise<void> | void,
): Promise<number> {
  const { head, checkpoints } = await inChain(db, tenantId, async (tx) => ({
    head: await readHead(tx, tenantId),
    checkpoints: await readCheckpoints(tx, tenantId),
  }));
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
  const intact = chainHashHex(prevHash, canonicalEventAt(event, at)) === hash;
  return { seq: Number(o.seq), id: o.id, prevHash, hash, intact };
}

/** Verifies a bundle file without any database: only the file and the trusted public key(s). */
export async function verifyBundle(
  path: string,
  keys: ChainState['keys'],
): Promise<WalkResult & { chain: string }> {
  const lines = createInterface({ input: createReadStream(path), crlfDelay: Infinity })[
    Symbol.asyncIterator
  ]();
  let chain: ChainState | null = null;
  let chainName = '';
  const checkpoints: StoredCheckpoint[] = [];
  let firstEvent: CheckedEvent | null = null;
  // Header and checkpoints come first; events are then streamed into the walk, never all held at once.
  for (let next = await lines.next(); !next.done; next = await lines.next()) {
    if (next.value.trim() === '') continue;
    const o = JSON.parse(next.value) as Line;
    if (o.type === 'chain') {
      const start = o.start as { seq: number; hash: string };
      const head = o.head as { seq: number; hash: string };
      chainName = String(o.chain);
      chain = {
        start: { seq: start.seq, hash: unhex(start.hash) },
        head: { seq: head.seq, hash: unhex(head.hash) },
        checkpoints,
        keys,
      };
    } else if (o.type === 'checkpoint') {
      checkpoints.push({
        tenantId: o.chain === 'platform' ? null : String(o.chain),
        seq: Number(o.seq),
        headHash: unhex(o.head),
        signedAt: new Date(String(o.at)),
        keyId: String(o.keyId),
        signature: unhex(o.signature),
      });
    } else if (o.type === 'event') {
      firstEvent = checkLine(o as unknown as EventLine);
      break;
    } else {
      throw new Error(`unknown line type ${JSON.stringify(o.type)}`);
    }
  }
  if (!chain) throw new Error('not an audit bundle: the first line must be {"type":"chain",...}');
  async function* events(): AsyncGenerator<CheckedEvent[]> {
    let page: CheckedEvent[] = firstEvent ? [firstEvent] : [];
    for (let next = await lines.next(); !next.done; next = await lines.next()) {
      if (next.value.trim() === '') continue;
      const o = JSON.parse(next.value) as Line;
      if (o.type !== 'event') throw new Error(`unexpected ${JSON.stringify(o.type)} line among the events`);
      page.push(checkLine(o as unknown as EventLine));
      if (page.length === 1000) {
        yield page;
        page = [];
      }
    }
    yield page;
  }
  return { chain: chainName, ...(await walkChain(events(), chain)) };
}
