/**
 * SECRET_KEY rotation (security review): the checkpoint key and the event MAC key derive from it. Two
 * server instances on one database, the second with a new secret and the old one as SECRET_KEY_PREVIOUS
 * (the documented procedure): the checkpoints of the first still verify (the new key endorses the old one
 * when it is first recorded, migrations 0060 and 0089), pruning goes on from them, new checkpoints use the
 * new key, and the old key is trusted only up to where the new one took over. Without SECRET_KEY_PREVIOUS
 * at that first start, nothing endorses the old key: its checkpoints count only with --public-key.
 * PGlite and PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  CheckpointRefusedError,
  type CheckpointSigner,
  checkpointLag,
  checkpointSigner,
  configureAuditMac,
  createCheckpoint,
  loadTrustedKeys,
  pruneAllChains,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import { type ActionContext, systemContext } from '../src/platform/context.ts';
import { appendEvents } from './audit-helpers.ts';
import { createTestDatabase, type TestDatabase } from './helpers.ts';

const DAY = 86_400_000;
const realNow = Date.now();
let t: TestDatabase;
let now = realNow;
const clock = { now: () => new Date(now), set: (at: number) => (now = at) };
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };

/**
 * What a server instance derives from its SECRET_KEY (and SECRET_KEY_PREVIOUS): the checkpoint signer,
 * which endorses the previous keys when it records its own, and the event MAC key.
 */
function instance(secret: string, previous: string[] = []) {
  const root = Buffer.from(secret);
  return {
    secret,
    signer: checkpointSigner(
      root,
      previous.map((p) => Buffer.from(p)),
    ),
    /** Makes this instance the one appending (the MAC key is per process, set when the app starts). */
    start: () => configureAuditMac(root),
  };
}
const before = instance('audit-rotation-test-secret-before-0123456789');
const after = instance('audit-rotation-test-secret-after-9876543210', [before.secret]);

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

async function write(tenantId: string, count: number, at: number) {
  clock.set(at);
  await appendEvents(t.db, clock, ctx, tenantId, count);
}

/** A checkpoint of the chain's head signed with `signer`, written straight into the table (as the owner). */
async function signDirectly(signer: CheckpointSigner, tenantId: string) {
  await t.engine.asOwner(async (o) => {
    const [head] = await o.query<{ seq: string; head_hash: Uint8Array }>(
      'SELECT seq::text AS seq, head_hash FROM audit_chain_heads WHERE chain = $1',
      [tenantId],
    );
    if (!head) throw new Error('no head');
    const body = {
      tenantId,
      seq: Number(head.seq),
      headHash: Buffer.from(head.head_hash),
      signedAt: clock.now(),
    };
    await o.query(
      `INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, signed_at, key_id, signature)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [tenantId, body.seq, body.headHash, body.signedAt, signer.keyId, signer.sign(body)],
    );
  });
}

describe('rotating SECRET_KEY between two instances on one database', () => {
  it('old checkpoints verify, pruning works, new checkpoints use the new key', async () => {
    const tenantId = randomUUID();
    before.start();
    await write(tenantId, 5, realNow - 500 * DAY);
    expect(await createCheckpoint(t.db, before.signer, clock, tenantId)).toMatchObject({ seq: 5 });
    await write(tenantId, 5, realNow - 450 * DAY);
    expect(await createCheckpoint(t.db, before.signer, clock, tenantId)).toMatchObject({ seq: 10 });

    // The new instance: another secret, so another checkpoint key and another MAC key.
    const macKey = after.start();
    await write(tenantId, 3, realNow);
    const signed = await createCheckpoint(t.db, after.signer, clock, tenantId);
    expect(signed).toMatchObject({ seq: 13, keyId: after.signer.keyId });
    expect(after.signer.keyId).not.toBe(before.signer.keyId);

    // Only the new key at hand: the old checkpoints were unknown (what the rotation used to do)...
    const alone = await verifyAuditChain(t.db, tenantId, {
      keys: trustedKeys([after.signer.publicKey]),
      macKey,
    });
    expect(alone.forged).toHaveLength(2);
    // ...with the recorded keys (the new key endorsed the old one) they verify, and so do the events
    // MACed under the old key they cover.
    const keys = await loadTrustedKeys(t.db, after.signer);
    const report = await verifyAuditChain(t.db, tenantId, { keys, macKey });
    expect(report).toMatchObject({ events: 13, checkpoints: 3, broken: null, forged: [] });

    // Pruning (the app's job reads the recorded keys each run) goes on from the old checkpoints.
    const run = await pruneAllChains(
      {
        db: t.db,
        clock,
        keys: trustedKeys([after.signer.publicKey]),
        loadKeys: () => loadTrustedKeys(t.db, after.signer),
        daysFor: async () => 400,
        tenantIds: async function* () {
          yield tenantId;
        },
      },
      systemContext('audit-retention'),
    );
    expect(run.failures).toEqual([]);
    expect(run.events).toBeGreaterThanOrEqual(10);
    const pruned = await verifyAuditChain(t.db, tenantId, {
      keys: await loadTrustedKeys(t.db, after.signer),
      macKey,
    });
    expect(pruned).toMatchObject({ broken: null, forged: [] });
    expect(pruned.events).toBeGreaterThanOrEqual(3);
  });

  it('the old key is not trusted after the new one took over (a leaked old secret signs nothing new)', async () => {
    const tenantId = randomUUID();
    before.start();
    await write(tenantId, 3, realNow);
    await createCheckpoint(t.db, before.signer, clock, tenantId);
    const macKey = after.start();
    await write(tenantId, 2, realNow);
    expect(await createCheckpoint(t.db, after.signer, clock, tenantId)).toMatchObject({ seq: 5 });
    await write(tenantId, 1, realNow);
    // Whoever kept the old secret signs the new head with the old key.
    expect(await createCheckpoint(t.db, before.signer, clock, tenantId)).toMatchObject({ seq: 6 });
    const report = await verifyAuditChain(t.db, tenantId, {
      keys: await loadTrustedKeys(t.db, after.signer),
      macKey,
    });
    expect(report).toMatchObject({ broken: null, checkpoints: 2 });
    expect(report.forged).toEqual([
      {
        kind: 'checkpoint',
        seq: 6,
        eventId: null,
        message: `checkpoint at seq 6 is signed by key ${before.signer.keyId} after key ${after.signer.keyId} took over at seq 5`,
      },
    ]);
    // Nor is it where the job starts proving, or what the lag counts from (review): the newest trusted
    // checkpoint is still the new key's at seq 5, and seq 6 is unsigned.
    const keys = await loadTrustedKeys(t.db, after.signer);
    expect(await checkpointLag(t.db, tenantId, keys)).toMatchObject({
      newest: { seq: 5 },
      headSeq: 6,
      unsigned: 1,
    });
    // The new instance signs that position itself.
    expect(await createCheckpoint(t.db, after.signer, clock, tenantId)).toMatchObject({ seq: 6 });
    expect(await checkpointLag(t.db, tenantId, keys)).toMatchObject({ newest: { seq: 6 }, unsigned: 0 });
  });

  it('a key recorded after the server key (not one it signed with) is not trusted', async () => {
    const intruder = instance('someone-with-database-access-only-0123');
    const tenantId = randomUUID();
    const macKey = after.start();
    await write(tenantId, 2, realNow);
    await createCheckpoint(t.db, after.signer, clock, tenantId);
    await write(tenantId, 1, realNow);
    // Recorded through the app role's own grant, and a checkpoint signed with it.
    await createCheckpoint(t.db, intruder.signer, clock, tenantId);
    const report = await verifyAuditChain(t.db, tenantId, {
      keys: await loadTrustedKeys(t.db, after.signer),
      macKey,
    });
    expect(report).toMatchObject({ broken: null, checkpoints: 1 });
    expect(report.forged).toMatchObject([{ seq: 3, message: expect.stringContaining('unknown key') }]);
  });

  it('started without SECRET_KEY_PREVIOUS, the new key does not endorse the old one: its checkpoints count only with --public-key', async () => {
    const old = instance('audit-rotation-test-secret-unendorsed-old-01');
    const fresh = instance('audit-rotation-test-secret-unendorsed-new-02'); // the old secret not configured
    const tenantId = randomUUID();
    old.start();
    await write(tenantId, 3, realNow);
    expect(await createCheckpoint(t.db, old.signer, clock, tenantId)).toMatchObject({ seq: 3 });
    const macKey = fresh.start();
    await write(tenantId, 2, realNow);
    // The old key is recorded (it signed), but no trusted key endorsed it.
    const keys = await loadTrustedKeys(t.db, fresh.signer);
    expect(keys.has(old.signer.keyId)).toBe(false);
    const report = await verifyAuditChain(t.db, tenantId, { keys, macKey });
    expect(report.forged).toMatchObject([
      { seq: 3, message: expect.stringContaining(`unknown key ${old.signer.keyId}`) },
    ]);
    // The job proves from genesis: the old key's events carry MACs under the old MAC key, which only a
    // trusted checkpoint vouches for, so it refuses until the operator restarts with SECRET_KEY_PREVIOUS.
    await expect(createCheckpoint(t.db, fresh.signer, clock, tenantId)).rejects.toBeInstanceOf(
      CheckpointRefusedError,
    );
    // The operator gives the old public key: its checkpoints verify again.
    const given = await verifyAuditChain(t.db, tenantId, {
      keys: await loadTrustedKeys(t.db, fresh.signer, [old.signer.publicKey]),
      macKey,
    });
    expect(given).toMatchObject({ broken: null, forged: [], checkpoints: 1 });
    // Restarted with SECRET_KEY_PREVIOUS, the node endorses the old key the next time it records its own.
    const restarted = instance(fresh.secret, [old.secret]);
    expect(await createCheckpoint(t.db, restarted.signer, clock, tenantId)).toMatchObject({ seq: 5 });
    const endorsed = await verifyAuditChain(t.db, tenantId, {
      keys: await loadTrustedKeys(t.db, fresh.signer),
      macKey,
    });
    expect(endorsed).toMatchObject({ broken: null, forged: [], checkpoints: 2 });
  });

  it("two rotations A→B→C: A is trusted through B's endorsement, each key up to where the next took over", async () => {
    const a = instance('audit-rotation-test-secret-two-step-a-000001');
    const b = instance('audit-rotation-test-secret-two-step-b-000002', [a.secret]);
    const c = instance('audit-rotation-test-secret-two-step-c-000003', [b.secret]); // A's secret is gone
    const tenantId = randomUUID();
    const quiet = randomUUID(); // signed by A only, never since
    a.start();
    await write(tenantId, 2, realNow);
    await write(quiet, 2, realNow);
    expect(await createCheckpoint(t.db, a.signer, clock, tenantId)).toMatchObject({ seq: 2 });
    expect(await createCheckpoint(t.db, a.signer, clock, quiet)).toMatchObject({ seq: 2 });
    b.start();
    await write(tenantId, 2, realNow);
    expect(await createCheckpoint(t.db, b.signer, clock, tenantId)).toMatchObject({ seq: 4 });
    const macKey = c.start();
    await write(tenantId, 2, realNow);
    expect(await createCheckpoint(t.db, c.signer, clock, tenantId)).toMatchObject({ seq: 6 });
    // Whoever kept A's secret signs the new head: B (and C) took over, so it is not trusted.
    await write(tenantId, 1, realNow);
    await signDirectly(a.signer, tenantId);

    const keys = await loadTrustedKeys(t.db, c.signer);
    expect([...keys.keys()].sort()).toEqual([a.signer.keyId, b.signer.keyId, c.signer.keyId].sort());
    const report = await verifyAuditChain(t.db, tenantId, { keys, macKey });
    expect(report).toMatchObject({ broken: null, checkpoints: 3 });
    expect(report.forged).toMatchObject([
      {
        seq: 7,
        message: expect.stringContaining(
          `signed by key ${a.signer.keyId} after key ${b.signer.keyId} took over at seq 4`,
        ),
      },
    ]);
    expect(await verifyAuditChain(t.db, quiet, { keys, macKey })).toMatchObject({
      broken: null,
      forged: [],
      checkpoints: 1,
    });
    // C signs on from B's checkpoint (the events since are C's own).
    expect(await createCheckpoint(t.db, c.signer, clock, tenantId)).toMatchObject({ seq: 7 });
  });

  it('a previous key that signed but was never recorded (a restored database) is endorsed all the same', async () => {
    const old = instance('audit-rotation-test-secret-unrecorded-old-01');
    const fresh = instance('audit-rotation-test-secret-unrecorded-new-02', [old.secret]);
    const tenantId = randomUUID();
    old.start();
    await write(tenantId, 2, realNow);
    // The old key's checkpoint, without its audit_signing_keys row.
    await signDirectly(old.signer, tenantId);
    const macKey = fresh.start();
    await write(tenantId, 1, realNow);
    expect(await createCheckpoint(t.db, fresh.signer, clock, tenantId)).toMatchObject({ seq: 3 });
    const report = await verifyAuditChain(t.db, tenantId, {
      keys: await loadTrustedKeys(t.db, fresh.signer),
      macKey,
    });
    expect(report).toMatchObject({ broken: null, forged: [], checkpoints: 2 });
  });
});
