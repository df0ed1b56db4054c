/**
 * Regression (tamper-evidence review of 2026-11-28, items 1 and 3 of docs/audit.md "What the database
 * owner can still do"): verify and the checkpoint job took a chain's mac_from_seq and legacy_events from
 * its head row, which the table owner can change (with the trigger of migration 0084 off). Raised
 * mac_from_seq let a MAC-less forged event after the newest checkpoint pass verify and get signed; raised
 * legacy_events let a row without a chain position pass. Now every checkpoint signs both (migration 0085)
 * and the head row must agree with them. PGlite and PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyBundle, writeBundle } from '../src/audit/bundle.ts';
import { canonicalCheckpoint } from '../src/audit/canonical.ts';
import { checkpointMessage } from '../src/audit/checkpoint-messages.ts';
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
let dir: string;
const clock = fakeClock();
const root = Buffer.from('audit-signed-constants-test-root-key-0123');
const signer = checkpointSigner(root);
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };

beforeAll(async () => {
  t = await createTestDatabase();
  configureAuditMac(root);
  dir = await mkdtemp(join(tmpdir(), 'rampart-constants-'));
});
afterAll(async () => {
  await t?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const write = (tenantId: string, count: number) =>
  appendEvents(t.db, clock, ctx, tenantId, count, () => clock.advance(1000));
const verify = (tenantId: string) =>
  verifyAuditChain(t.db, tenantId, { keys, macKey: configureAuditMac(root) });

/** As the table owner, with 0084's trigger off: the head row's fixed columns changed. */
async function setHead(tenantId: string, column: 'mac_from_seq' | 'legacy_events', value: number) {
  await t.engine.asOwner(async (o) => {
    await o.exec('ALTER TABLE audit_chain_heads DISABLE TRIGGER audit_chain_heads_fixed_columns');
    try {
      await o.query(`UPDATE audit_chain_heads SET ${column} = $2 WHERE chain = $1`, [tenantId, value]);
    } finally {
      await o.exec('ALTER TABLE audit_chain_heads ENABLE TRIGGER audit_chain_heads_fixed_columns');
    }
  });
}

/** As the table owner: the chain's events without MACs, as events written before migration 0059 are. */
async function dropMacs(tenantId: string) {
  await t.engine.asOwner(async (o) => {
    await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
    try {
      await o.query('UPDATE audit_events SET mac = NULL WHERE tenant_id = $1', [tenantId]);
    } finally {
      await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
    }
  });
}

/** As the table owner: a row without a chain position, after dropping the NOT VALID check of 0030. */
async function insertUnchained(tenantId: string): Promise<string> {
  const id = randomUUID();
  await t.engine.asOwner(async (o) => {
    await o.exec('ALTER TABLE audit_events DROP CONSTRAINT audit_events_chained');
    try {
      await o.query(
        `INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, actor_id, action, target_type, target_id,
           outcome, details)
         VALUES ($1, $2::uuid, $3, 'user', 'u-1', 'tenancy.tenant.suspended', 'tenant', $2::text, 'success', '{}')`,
        [id, tenantId, clock.now()],
      );
    } finally {
      await o.exec(`ALTER TABLE audit_events ADD CONSTRAINT audit_events_chained
        CHECK (chain_seq IS NOT NULL AND chain_seq > 0 AND octet_length(prev_hash) = 32 AND octet_length(hash) = 32)
        NOT VALID`);
    }
  });
  return id;
}

const refusal = (tenantId: string) =>
  createCheckpoint(t.db, signer, clock, tenantId).then(
    () => null,
    (error: unknown) => error,
  );

describe('the table owner changes a signed chain head row', () => {
  it('mac_from_seq raised above the head, a MAC-less event appended: verify reports it, the job refuses', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 3);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 3 });
    await setHead(tenantId, 'mac_from_seq', 1000);
    const forged = await appendForged(t.engine, clock, tenantId); // well linked, correct hash, no MAC

    const report = await verify(tenantId);
    expect(report.broken).toEqual({
      kind: 'modified',
      seq: null,
      eventId: null,
      message:
        "the chain head's mac_from_seq is 1000 but its signed checkpoints say 1: the head row was changed",
    });
    // The walk used the signed mac_from_seq: the forged event is named too.
    expect(report.forgedEvents).toMatchObject([{ seq: 4, eventId: forged.id, acknowledgement: null }]);

    const error = await refusal(tenantId);
    expect(error).toBeInstanceOf(CheckpointRefusedError);
    expect(error).toMatchObject({ seq: 4, reason: 'constants_changed', eventId: null });
    const tenantIds = async function* () {
      yield tenantId;
    };
    const run = await checkpointAllChains({ db: t.db, clock, signer, tenantIds });
    expect(run.refused).toMatchObject([{ chain: tenantId, reason: 'constants_changed' }]);
    expect((await verify(tenantId)).checkpoints).toBe(1); // nothing signed over it
  });

  it('legacy_events raised and a row without a position inserted: verify reports it', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 2);
    await createCheckpoint(t.db, signer, clock, tenantId);
    await setHead(tenantId, 'legacy_events', 1);
    await insertUnchained(tenantId);
    const report = await verify(tenantId);
    expect(report.broken).toMatchObject({
      kind: 'modified',
      message:
        "the chain head's legacy_events is 1 but its signed checkpoints say 0: the head row was changed",
    });
    expect(report.legacyEvents).toBe(0);
    await write(tenantId, 1); // the head moves on: the job would sign again, and refuses
    expect(await refusal(tenantId)).toMatchObject({ reason: 'constants_changed', seq: 3 });
  });

  it('a chain without any checkpoint must have the default constants', async () => {
    for (const [column, value] of [
      ['mac_from_seq', 3],
      ['legacy_events', 2],
    ] as const) {
      const tenantId = randomUUID();
      await write(tenantId, 2);
      await setHead(tenantId, column, value);
      const def = column === 'mac_from_seq' ? 1 : 0;
      expect((await verify(tenantId)).broken).toMatchObject({
        kind: 'modified',
        message: `the chain head's ${column} is ${value} but a chain without a signed checkpoint must have ${def}: the head row was changed`,
      });
      expect(await refusal(tenantId)).toMatchObject({ reason: 'constants_changed' });
    }
  });
});

describe('checkpoints signed before migration 0085', () => {
  it('keep their signed form; new ones sign the constants too', () => {
    // The exact text the code before migration 0085 signed: no constants.
    const at = new Date('2026-01-01T00:00:00.000Z');
    const body = { tenantId: null, seq: 7, headHash: Buffer.alloc(32, 0xab), signedAt: at };
    expect(canonicalCheckpoint(body)).toBe(
      `{"at":"2026-01-01T00:00:00.000Z","chain":"platform","count":7,"head":"${'ab'.repeat(32)}","seq":7,"v":1}`,
    );
    expect(canonicalCheckpoint({ ...body, constants: null })).toBe(canonicalCheckpoint(body));
    expect(canonicalCheckpoint({ ...body, constants: { macFromSeq: 4, legacyEvents: 2 } })).toBe(
      `{"at":"2026-01-01T00:00:00.000Z","chain":"platform","count":7,"head":"${'ab'.repeat(32)}","legacyEvents":2,"macFromSeq":4,"seq":7,"v":1}`,
    );
  });

  it('a head row with other values is refused until an operator adopts them, then signed', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 3);
    // As an upgraded chain: MACs required after its head at migration 0059, legacy events before 0030.
    await dropMacs(tenantId);
    await setHead(tenantId, 'mac_from_seq', 4);
    await setHead(tenantId, 'legacy_events', 2);
    clock.advance(1000);
    await signOldFormatCheckpoint(t.engine, signer, clock, tenantId);
    // Not trusted by itself (review: the owner could delete the checkpoints carrying constants and have
    // a raised head row trusted again): verify names the column and the way out, the job refuses.
    expect((await verify(tenantId)).broken).toMatchObject({
      kind: 'modified',
      message: expect.stringMatching(/mac_from_seq is 4 but .*rampart audit checkpoint --adopt-constants/),
    });
    await expect(createCheckpoint(t.db, signer, clock, tenantId)).rejects.toThrow(/--adopt-constants/);

    // An operator adopts them once (no new events: signed anyway, carrying the head row's constants).
    const signed = await createCheckpoint(t.db, signer, clock, tenantId, true);
    expect(signed).toMatchObject({ seq: 3, constants: { macFromSeq: 4, legacyEvents: 2 } });
    const stored = await t.engine.asOwner((o) =>
      o.query<{ mac_from_seq: string | null; legacy_events: string | null }>(
        `SELECT mac_from_seq::text, legacy_events::text FROM audit_checkpoints WHERE tenant_id = $1
         ORDER BY signed_at`,
        [tenantId],
      ),
    );
    expect(stored).toEqual([
      { mac_from_seq: null, legacy_events: null },
      { mac_from_seq: '4', legacy_events: '2' },
    ]);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toBeNull();
    expect(await verify(tenantId)).toMatchObject({ broken: null, checkpoints: 2, legacyEvents: 2 });

    // From now on the signed values hold, whatever the head row says.
    await setHead(tenantId, 'mac_from_seq', 1000);
    expect((await verify(tenantId)).broken).toMatchObject({
      kind: 'modified',
      message:
        "the chain head's mac_from_seq is 1000 but its signed checkpoints say 4: the head row was changed",
    });
  });
});

describe('an untouched chain', () => {
  it('with checkpoints carrying its constants verifies clean', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 3);
    await createCheckpoint(t.db, signer, clock, tenantId);
    await write(tenantId, 2);
    await createCheckpoint(t.db, signer, clock, tenantId);
    expect(await verify(tenantId)).toMatchObject({
      events: 5,
      checkpoints: 2,
      legacyEvents: 0,
      broken: null,
    });
    const stored = await t.engine.asOwner((o) =>
      o.query<{ seq: string; mac_from_seq: string | null; legacy_events: string | null }>(
        `SELECT seq::text, mac_from_seq::text, legacy_events::text FROM audit_checkpoints WHERE tenant_id = $1
         ORDER BY seq`,
        [tenantId],
      ),
    );
    expect(stored).toEqual([
      { seq: '3', mac_from_seq: '1', legacy_events: '0' },
      { seq: '5', mac_from_seq: '1', legacy_events: '0' },
    ]);
  });

  it('exports a bundle whose checkpoint lines carry the constants, under the signature', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 3);
    const checkpoint = await createCheckpoint(t.db, signer, clock, tenantId);
    if (!checkpoint) throw new Error('not signed');
    expect(checkpointMessage('m-1', checkpoint)).toMatchObject({ macFromSeq: 1, legacyEvents: 0 });

    const path = join(dir, `${tenantId}.jsonl`);
    const lines: string[] = [];
    await writeBundle(t.db, tenantId, keys, (line) => {
      lines.push(line);
    });
    await writeFile(path, `${lines.join('\n')}\n`);
    const cpLine = lines.find((l) => l.includes('"type":"checkpoint"'));
    expect(JSON.parse(cpLine ?? '{}')).toMatchObject({ seq: 3, macFromSeq: 1, legacyEvents: 0 });
    expect(await verifyBundle(path, keys)).toMatchObject({
      broken: null,
      constants: { macFromSeq: 1, legacyEvents: 0 },
    });

    for (const edit of [
      (o: Record<string, unknown>) => ({ ...o, macFromSeq: 1000 }),
      (o: Record<string, unknown>) => ({ ...o, legacyEvents: 5 }),
      ({ macFromSeq: _m, legacyEvents: _l, ...o }: Record<string, unknown>) => o,
    ]) {
      const text = await readFile(path, 'utf8');
      const edited = text
        .split('\n')
        .map((l) => (l.includes('"type":"checkpoint"') ? JSON.stringify(edit(JSON.parse(l))) : l))
        .join('\n');
      const tampered = join(dir, `${tenantId}-edited.jsonl`);
      await writeFile(tampered, edited);
      expect((await verifyBundle(tampered, keys)).broken).toMatchObject({
        kind: 'checkpoint',
        seq: 3,
        message: 'checkpoint at seq 3 has an invalid signature',
      });
    }
  });
});

/** As the owner, triggers off: every checkpoint of the chain that carries constants deleted. */
const deleteCarryingCheckpoints = (tenantId: string) =>
  t.engine.asOwner(async (o) => {
    await o.exec('ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only');
    try {
      await o.query('DELETE FROM audit_checkpoints WHERE tenant_id = $1 AND mac_from_seq IS NOT NULL', [
        tenantId,
      ]);
    } finally {
      await o.exec('ALTER TABLE audit_checkpoints ENABLE TRIGGER audit_checkpoints_append_only');
    }
  });

describe('the table owner deletes the checkpoints that carry the constants', () => {
  it('verify still sees a raised mac_from_seq below an event a node MACed', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 3);
    await signOldFormatCheckpoint(t.engine, signer, clock, tenantId);
    await write(tenantId, 2); // written since migration 0059: MACed
    await createCheckpoint(t.db, signer, clock, tenantId);
    await deleteCarryingCheckpoints(tenantId);
    await setHead(tenantId, 'mac_from_seq', 1000);
    await appendForged(t.engine, clock, tenantId);
    // Only the older-format checkpoint is left: the head row is not trusted for it.
    expect((await verify(tenantId)).broken).toMatchObject({
      kind: 'modified',
      message: expect.stringMatching(
        /mac_from_seq is 1000 but a chain whose signed checkpoints carry no constants/,
      ),
    });
    await expect(createCheckpoint(t.db, signer, clock, tenantId)).rejects.toThrow(/mac_from_seq/);
  });

  it('nor with every MAC taken away first: the job refuses to sign, verify reports it (review)', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 3);
    await signOldFormatCheckpoint(t.engine, signer, clock, tenantId);
    await write(tenantId, 2);
    await createCheckpoint(t.db, signer, clock, tenantId);
    await deleteCarryingCheckpoints(tenantId);
    await setHead(tenantId, 'mac_from_seq', 1000);
    await dropMacs(tenantId);
    await appendForged(t.engine, clock, tenantId);
    // Before: the job signed macFromSeq 1000 over the forged event and verify then reported nothing.
    await expect(createCheckpoint(t.db, signer, clock, tenantId)).rejects.toThrow(/mac_from_seq is 1000/);
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'modified' });
  });
});
