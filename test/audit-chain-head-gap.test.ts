/**
 * A chain head moved far ahead of its events. The app role may move a head forward (seq, head_hash:
 * migration 0034's column grants; 10,000 positions per statement, 0086), so whoever holds its credentials
 * can leave a gap of any length
 * between the last event and the head, or in the middle of a chain. Readers page through a chain by
 * ranges of positions (store.ts chainPages): a gap must cost a bounded number of statements, not one per
 * 5,000 positions (10^12 positions: verify, and every chain after it in `rampart audit verify`, would
 * never finish), and verify must still report it as before.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkpointSigner, trustedKeys, verifyAuditChain } from '../src/audit/index.ts';
import { chainPages, type EventRow, eventColumns, type HeadRow, readHead } from '../src/audit/store.ts';
import type { AuditTables } from '../src/audit/tables.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { appendEvents } from './audit-helpers.ts';
import { createTestDatabase, fakeClock, type TestDatabase } from './helpers.ts';

let t: TestDatabase;
const clock = fakeClock();
const signer = checkpointSigner(Buffer.from('audit-chain-head-gap-root-key-0123456789'));
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };
const GAP = 1_000_000_000_000;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

/**
 * The head moved `by` positions ahead, nothing else touched: as the table owner with the step bound of
 * migration 0086 off (the app role may move a head 10,000 positions per statement, so a gap of any length
 * takes it many statements; the owner, one).
 */
const moveHead = (tenantId: string, by: number) =>
  t.engine.asOwner(async (o) => {
    await o.query('ALTER TABLE audit_chain_heads DISABLE TRIGGER audit_chain_heads_bounded_step');
    await o.query('UPDATE audit_chain_heads SET seq = seq + $1 WHERE chain = $2', [by, tenantId]);
    await o.query('ALTER TABLE audit_chain_heads ENABLE TRIGGER audit_chain_heads_bounded_step');
  });

const headOf = (tenantId: string) =>
  t.db.withTenant<AuditTables, HeadRow>(asTenantId(tenantId), (tx) => readHead(tx, tenantId));

/** The pages chainPages yields up to the head, at most `limit` of them (so a reader that never ends fails). */
async function pagesUpToHead(tenantId: string, limit = 50): Promise<number[]> {
  const { seq } = await headOf(tenantId);
  const sizes: number[] = [];
  for await (const rows of chainPages<EventRow>(t.db, tenantId, eventColumns, 0, seq)) {
    sizes.push(rows.length);
    if (sizes.length >= limit) break;
  }
  return sizes;
}

describe('a head moved far ahead of the events', () => {
  it('a gap costs a bounded number of pages, whatever its length', async () => {
    const tenantId = randomUUID();
    await appendEvents(t.db, clock, ctx, tenantId, 3, () => clock.advance(1000));
    await moveHead(tenantId, GAP);
    // The 3 events, the empty page where the gap starts (then one lookup jumps to the head), the rows
    // beyond the head (none). Before: one empty page per 5,000 positions, 2 x 10^8 of them.
    const atEnd = await pagesUpToHead(tenantId);
    expect(atEnd).toEqual([3, 0, 0]);
    // Events appended after the gap are read after one empty page too.
    await appendEvents(t.db, clock, ctx, tenantId, 2, () => clock.advance(1000));
    const inMiddle = await pagesUpToHead(tenantId);
    expect(inMiddle).toEqual([3, 0, 2, 0]);
  });

  it('verify reports a gap at the end as deleted events, as before', async () => {
    const tenantId = randomUUID();
    await appendEvents(t.db, clock, ctx, tenantId, 3, () => clock.advance(1000));
    await moveHead(tenantId, GAP);
    const report = await verifyAuditChain(t.db, tenantId, { keys });
    expect(report).toMatchObject({ events: 3, headSeq: GAP + 3 });
    expect(report.broken).toEqual({
      kind: 'deleted',
      seq: 4,
      eventId: null,
      message: `event(s) at seq 4-${GAP + 3} at the end of the chain were deleted`,
    });
  });

  it('verify reports events after a gap in the middle as out of place, as before', async () => {
    const tenantId = randomUUID();
    await appendEvents(t.db, clock, ctx, tenantId, 3, () => clock.advance(1000));
    await moveHead(tenantId, GAP);
    await appendEvents(t.db, clock, ctx, tenantId, 1, () => clock.advance(1000));
    const report = await verifyAuditChain(t.db, tenantId, { keys });
    // The app's next append linked to the head's hash (unchanged), at the position after the moved head.
    expect(report.broken).toMatchObject({
      kind: 'modified',
      seq: GAP + 4,
      message: expect.stringMatching(new RegExp(`carries seq ${GAP + 4} where 4 was expected$`)),
    });
  });
});
