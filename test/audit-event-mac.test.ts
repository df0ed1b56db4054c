/**
 * Event MACs (security review): with only database access one can append an event that links correctly
 * and carries its correct chain hash; without a key the database does not hold, the server would sign
 * it at its next checkpoint. Each event carries a MAC under a key derived from the root key; the
 * checkpoint job refuses to sign over an event without a matching one and audits the refusal, and verify
 * names it. PGlite and PostgreSQL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointRefusedError,
  checkpointAllChains,
  checkpointSigner,
  configureAuditMac,
  createCheckpoint,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { appendEvents, appendForged, signOldFormatCheckpoint } from './audit-helpers.ts';
import { createTestDatabase, fakeClock, type TestDatabase } from './helpers.ts';

let t: TestDatabase;
const clock = fakeClock();
const root = Buffer.from('audit-event-mac-test-root-key-0123456789');
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

const write = (tenantId: string, count: number) =>
  appendEvents(t.db, clock, ctx, tenantId, count, () => clock.advance(1000));

const verify = (tenantId: string) => verifyAuditChain(t.db, tenantId, { keys, macKey: macKey() });
const macKey = () => configureAuditMac(root);

async function refusalsAudited(tenantId: string) {
  return t.engine.asOwner((o) =>
    o.query<{ details: Record<string, unknown> }>(
      `SELECT details FROM audit_events WHERE tenant_id IS NULL AND action = 'audit.checkpoint.refused'
         AND target_id = $1`,
      [tenantId],
    ),
  );
}

describe('a well-linked event written straight into the database', () => {
  for (const [name, mac] of [
    ['without a MAC', () => null],
    [
      'with a wrong MAC under the server key id',
      () => Buffer.concat([Buffer.from(macKey().id, 'hex'), randomBytes(32)]),
    ],
  ] as const) {
    it(`${name}: the checkpoint job refuses to sign over it (audited once), verify names it`, async () => {
      const tenantId = randomUUID();
      await write(tenantId, 4);
      expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 4 });
      const forgedId = (await appendForged(t.engine, clock, tenantId, { mac: mac() })).id;
      await write(tenantId, 2); // genuine events linked after it, by the server
      // Without the MAC key the chain looks whole: hashes, links and head all hold.
      expect((await verifyAuditChain(t.db, tenantId, { keys })).broken).toBeNull();

      await expect(createCheckpoint(t.db, signer, clock, tenantId)).rejects.toBeInstanceOf(
        CheckpointRefusedError,
      );
      const tenantIds = async function* () {
        yield tenantId;
      };
      const run = await checkpointAllChains({ db: t.db, clock, signer, tenantIds });
      expect(run.refused).toMatchObject([{ chain: tenantId, seq: 5, eventId: forgedId }]);
      await checkpointAllChains({ db: t.db, clock, signer, tenantIds });
      expect(await refusalsAudited(tenantId)).toMatchObject([
        { details: { seq: 5, eventId: forgedId, reason: 'mac_mismatch' } },
      ]);
      // Nothing was signed over it.
      const report = await verify(tenantId);
      expect(report.checkpoints).toBe(1);
      expect(report.broken).toEqual({
        kind: 'forged',
        seq: 5,
        eventId: forgedId,
        message: 'event at seq 5 is forged: MAC does not match',
      });
    });
  }

  it('genuine events verify with their MACs and are signed', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 5);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 5 });
    await write(tenantId, 2);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 7 });
    expect(await verify(tenantId)).toMatchObject({ events: 7, broken: null });
  });
});

describe('events from before MACs (migration 0059)', () => {
  it('need none below the chain mac_from_seq; from there on they do', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 3);
    // As the migration leaves a chain that existed: its events without MACs, MACs required after its head.
    // mac_from_seq is fixed once the head exists (migration 0084): the owner turns that trigger off. Such a
    // chain had been signed before (in the format before migration 0085): a chain without any checkpoint
    // must have the default mac_from_seq (test/audit-signed-constants.test.ts).
    await signOldFormatCheckpoint(t.engine, signer, clock, tenantId);
    await t.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
      await o.exec('ALTER TABLE audit_chain_heads DISABLE TRIGGER audit_chain_heads_fixed_columns');
      try {
        await o.query('UPDATE audit_events SET mac = NULL WHERE tenant_id = $1', [tenantId]);
        await o.query('UPDATE audit_chain_heads SET mac_from_seq = 4 WHERE chain = $1', [tenantId]);
      } finally {
        await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
        await o.exec('ALTER TABLE audit_chain_heads ENABLE TRIGGER audit_chain_heads_fixed_columns');
      }
    });
    await write(tenantId, 2);
    // The operator adopts the chain's constants once after the upgrade (`--adopt-constants`).
    expect(await createCheckpoint(t.db, signer, clock, tenantId, true)).toMatchObject({ seq: 5 });
    expect(await verify(tenantId)).toMatchObject({ events: 5, broken: null });
    await appendForged(t.engine, clock, tenantId);
    await expect(createCheckpoint(t.db, signer, clock, tenantId)).rejects.toBeInstanceOf(
      CheckpointRefusedError,
    );
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'forged', seq: 6 });
  });
});
