/**
 * A head moved before its event exists (security review): the app role may move a chain's head
 * (`seq`, `head_hash`) on its own. It reads the head, builds a fake event linking to it, moves the head
 * onto the fake event's hash, lets the checkpoint job sign that position (it used to check the MACs of
 * the rows that existed, none), then inserts the event with a MAC under a made-up key id, which verify
 * took for a MAC "under an older key" because a signed checkpoint covered it. The job now proves the
 * span from the last trusted checkpoint to the head before signing (every position, links, hashes,
 * the head's hash), and verify accepts a MAC under another key only where a checkpoint of another key
 * covers the event. PGlite and PostgreSQL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointRefusedError,
  chainHash,
  checkpointAllChains,
  checkpointSigner,
  configureAuditMac,
  createCheckpoint,
  recordAuditEvents,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { appendEvents, outsideEvent } from './audit-helpers.ts';
import { createTestDatabase, fakeClock, type TestDatabase } from './helpers.ts';

let t: TestDatabase;
const clock = fakeClock();
const root = Buffer.from('audit-head-first-test-root-key-0123456789');
const signer = checkpointSigner(root);
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };

beforeAll(async () => {
  t = await createTestDatabase();
  configureAuditMac(root);
});
afterAll(async () => {
  await t?.close();
});

const macKey = () => configureAuditMac(root);
const write = (tenantId: string, count: number) =>
  appendEvents(t.db, clock, ctx, tenantId, count, () => clock.advance(1000));
const verify = (tenantId: string) => verifyAuditChain(t.db, tenantId, { keys, macKey: macKey() });
const tenantIds = (tenantId: string) =>
  async function* () {
    yield tenantId;
  };

/** As the app role (row-level security on, its own grants): what whoever holds its credentials can do. */
const asApp = <R>(tenantId: string, fn: (tx: Kysely<unknown>) => Promise<R>) =>
  t.db.withTenant(asTenantId(tenantId), fn);

const refusal = (tenantId: string) =>
  createCheckpoint(t.db, signer, clock, tenantId).then(
    (signed) => ({ signed: signed?.seq ?? null }),
    (error: unknown) => {
      if (!(error instanceof CheckpointRefusedError)) throw error;
      return { seq: error.seq, eventId: error.eventId, reason: error.reason, message: error.message };
    },
  );

async function refusalsAudited(tenantId: string) {
  return t.engine.asOwner((o) =>
    o.query<{ details: Record<string, unknown> }>(
      `SELECT details FROM audit_events WHERE tenant_id IS NULL AND action = 'audit.checkpoint.refused'
         AND target_id = $1 ORDER BY chain_seq`,
      [tenantId],
    ),
  );
}

async function readHead(tenantId: string) {
  return asApp(tenantId, async (tx) => {
    const { rows } = await sql<{ seq: string; head_hash: Uint8Array }>`
      SELECT seq::text AS seq, head_hash FROM audit_chain_heads WHERE chain = ${tenantId}`.execute(tx);
    const row = rows[0];
    if (!row) throw new Error('no head');
    return { seq: Number(row.seq), hash: Buffer.from(row.head_hash) };
  });
}

const moveHead = (tenantId: string, seq: number, hash: Buffer) =>
  asApp(tenantId, (tx) =>
    sql`UPDATE audit_chain_heads SET seq = ${seq}, head_hash = ${hash} WHERE chain = ${tenantId}`.execute(tx),
  );

/** A fake event after the head as it is now: its position, predecessor hash and correct chain hash. */
async function fakeAfterHead(tenantId: string) {
  const head = await readHead(tenantId);
  clock.advance(1000);
  const event = outsideEvent(randomUUID(), tenantId, clock.now(), 'someone-else');
  return { event, seq: head.seq + 1, prev: head.hash, hash: chainHash(head.hash, event) };
}

/** Inserts the fake event as the app role, with `mac` (a made-up key id and tag by default). */
const insertFake = (
  tenantId: string,
  fake: Awaited<ReturnType<typeof fakeAfterHead>>,
  mac: Buffer = randomBytes(40),
) =>
  asApp(tenantId, (tx) =>
    sql`INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, actor_id, action,
        target_type, target_id, outcome, details, chain_seq, prev_hash, hash, mac)
      VALUES (${fake.event.id}, ${tenantId}, ${fake.event.occurredAt}, 'user', 'someone-else',
        'tenancy.tenant.suspended', 'tenant', ${tenantId}, 'success', '{"n":99}'::jsonb, ${fake.seq},
        ${fake.prev}, ${fake.hash}, ${mac})`.execute(tx),
  );

describe('the head moved onto a fake event before it is written (app role only)', () => {
  for (const busy of [false, true]) {
    it(`the job refuses to sign and verify names the event (${busy ? 'a genuine append in between' : 'a quiet chain'})`, async () => {
      const tenantId = randomUUID();
      await write(tenantId, 4);
      expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 4 });

      const fake = await fakeAfterHead(tenantId);
      await moveHead(tenantId, fake.seq, fake.hash);
      // A genuine append hashes onto the moved head: it lands at seq 6, linked to the fake hash.
      if (busy) await write(tenantId, 1);
      const head = busy ? 6 : 5;

      expect(await refusal(tenantId)).toEqual({
        seq: 5,
        eventId: null,
        reason: 'event_missing',
        message: `refusing to sign chain ${tenantId}: there is no event at seq 5, below the chain head: the head was moved past the events (head at seq ${head})`,
      });
      // The job audits it once over two runs.
      for (let run = 0; run < 2; run++) {
        const result = await checkpointAllChains({ db: t.db, clock, signer, tenantIds: tenantIds(tenantId) });
        expect(result.refused).toMatchObject([{ chain: tenantId, seq: 5, reason: 'event_missing' }]);
      }
      expect(await refusalsAudited(tenantId)).toEqual([
        { details: { seq: 5, eventId: null, reason: 'event_missing' } },
      ]);

      // The fake event goes in, with a MAC under a made-up key id: still not signed, a new finding.
      await insertFake(tenantId, fake);
      expect(await refusal(tenantId)).toMatchObject({
        seq: 5,
        eventId: fake.event.id,
        reason: 'mac_other_key',
      });
      await checkpointAllChains({ db: t.db, clock, signer, tenantIds: tenantIds(tenantId) });
      expect(await refusalsAudited(tenantId)).toEqual([
        { details: { seq: 5, eventId: null, reason: 'event_missing' } },
        { details: { seq: 5, eventId: fake.event.id, reason: 'mac_other_key' } },
      ]);

      const report = await verify(tenantId);
      expect(report).toMatchObject({ checkpoints: 1, headSeq: head });
      expect(report.broken).toEqual({
        kind: 'forged',
        seq: 5,
        eventId: fake.event.id,
        message:
          'event at seq 5 is forged: its MAC is under another key and no checkpoint signed with another key covers it',
      });
      expect(report.forgedEvents).toEqual([
        { seq: 5, eventId: fake.event.id, hash: fake.hash.toString('hex'), acknowledgement: null },
      ]);
    });
  }

  it('verify names it even where a checkpoint of the server key covers it (as the job used to sign)', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 4);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 4 });
    const fake = await fakeAfterHead(tenantId);
    await moveHead(tenantId, fake.seq, fake.hash);
    // What the job signed before it proved the span: the moved head, with the server's key.
    const body = { tenantId, seq: fake.seq, headHash: fake.hash, signedAt: clock.now() };
    await asApp(tenantId, (tx) =>
      sql`INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, signed_at, key_id, signature)
        VALUES (${tenantId}, ${fake.seq}, ${fake.hash}, ${body.signedAt}, ${signer.keyId}, ${signer.sign(body)})`.execute(
        tx,
      ),
    );
    await insertFake(tenantId, fake);
    // And an acknowledgement under a made-up key id (a row anyone with database access can write).
    await t.engine.asOwner((o) =>
      o.query(
        `INSERT INTO audit_forgery_acknowledgements (id, chain, tenant_id, seq, event_id, event_hash, reason,
           actor_type, actor_id, acknowledged_at, mac)
         VALUES ($1, $2, $3::uuid, $4, $5, $6, 'trust me', 'operator', 'x', now(), $7)`,
        [randomUUID(), tenantId, tenantId, fake.seq, fake.event.id, fake.hash, randomBytes(40)],
      ),
    );
    await write(tenantId, 2);
    // The job starts from its own checkpoint at 5 and signs the genuine events after it...
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 7 });
    // ...but a checkpoint of the key paired with the MAC key vouches for no MAC under another key.
    const report = await verify(tenantId);
    expect(report).toMatchObject({ checkpoints: 3, forged: [] });
    expect(report.broken).toMatchObject({ kind: 'forged', seq: 5, eventId: fake.event.id });
    expect(report.forgedEvents).toMatchObject([{ seq: 5, eventId: fake.event.id, acknowledgement: null }]);
  });
});

describe('a head that the events do not lead to', () => {
  it('moving only head_hash: the job refuses (it would sign a hash the chain never had)', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 4);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 4 });
    await write(tenantId, 2);
    const [sixth] = await t.engine.asOwner((o) =>
      o.query<{ id: string }>(
        'SELECT id::text AS id FROM audit_events WHERE tenant_id = $1 AND chain_seq = 6',
        [tenantId],
      ),
    );
    await moveHead(tenantId, 6, randomBytes(32));
    expect(await refusal(tenantId)).toMatchObject({
      seq: 6,
      eventId: sixth?.id,
      reason: 'head_mismatch',
      message: expect.stringContaining('the event at seq 6 has another hash'),
    });
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'modified', seq: 6 });
  });

  it('moving the head back below the last checkpoint: the job refuses', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 6);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 6 });
    // The app role may not move a head back (migration 0084); the table owner turns that trigger off.
    await expect(moveHead(tenantId, 3, randomBytes(32))).rejects.toThrow(/cannot move back from seq 6 to 3/);
    await t.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_chain_heads DISABLE TRIGGER audit_chain_heads_no_rewind');
      try {
        await o.query('UPDATE audit_chain_heads SET seq = 3, head_hash = $2 WHERE chain = $1', [
          tenantId,
          randomBytes(32),
        ]);
      } finally {
        await o.exec('ALTER TABLE audit_chain_heads ENABLE TRIGGER audit_chain_heads_no_rewind');
      }
    });
    expect(await refusal(tenantId)).toMatchObject({
      seq: 3,
      eventId: null,
      reason: 'head_mismatch',
      message: expect.stringContaining('the head is behind the signed checkpoint at seq 6'),
    });
  });

  it("a genuine event's hash and MAC copied to the next position: the job recomputes the hash and refuses", async () => {
    const tenantId = randomUUID();
    await write(tenantId, 4);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 4 });
    const fake = await fakeAfterHead(tenantId);
    // The app role reads event 2's hash and MAC (they verify under the server's key) and reuses them.
    const copied = await asApp(tenantId, async (tx) => {
      const { rows } = await sql<{ hash: Uint8Array; mac: Uint8Array }>`
        SELECT hash, mac FROM audit_events WHERE tenant_id = ${tenantId} AND chain_seq = 2`.execute(tx);
      return { hash: Buffer.from(rows[0]?.hash ?? []), mac: Buffer.from(rows[0]?.mac ?? []) };
    });
    const replay = { ...fake, hash: copied.hash };
    // The head first: an event above its chain's head is refused (migration 0084).
    await moveHead(tenantId, replay.seq, replay.hash);
    await insertFake(tenantId, replay, copied.mac);
    expect(await refusal(tenantId)).toMatchObject({
      seq: 5,
      eventId: fake.event.id,
      reason: 'event_modified',
    });
  });
});

describe('untouched chains', () => {
  it('are signed, over several pages of positions; a gap at the end of a page is found', async () => {
    const tenantId = randomUUID();
    const append = async (count: number) => {
      for (let done = 0; done < count; done += 1000) {
        clock.advance(1000);
        await t.db.withTenant(asTenantId(tenantId), (tx) =>
          recordAuditEvents(
            tx,
            clock,
            ctx,
            Array.from({ length: Math.min(1000, count - done) }, (_, i) => ({
              tenantId,
              action: 'tenancy.tenant.suspended',
              outcome: 'success' as const,
              target: { type: 'tenant', id: tenantId },
              details: { n: done + i },
            })),
          ),
        );
      }
    };
    await append(10_001);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 10_001 });
    await append(5_001);
    // Positions 10,002-15,001 are the first page after the checkpoint: remove its last one.
    await t.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
      try {
        await o.query('DELETE FROM audit_events WHERE tenant_id = $1 AND chain_seq = 15001', [tenantId]);
      } finally {
        await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
      }
    });
    expect(await refusal(tenantId)).toMatchObject({ seq: 15_001, eventId: null, reason: 'event_missing' });
  });

  it('a short chain is signed at each step and verifies', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 3);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 3 });
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toBeNull();
    await write(tenantId, 1);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 4 });
    expect(await verify(tenantId)).toMatchObject({ events: 4, checkpoints: 2, broken: null, forged: [] });
  });
});
