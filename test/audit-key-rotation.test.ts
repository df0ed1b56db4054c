/**
 * SECRET_KEY rotation (security review): the checkpoint key and the event MAC key derive from it. Two
 * server instances on one database, the second with a new secret: the checkpoints of the first still
 * verify (the keys a server signs with are recorded, migration 0060), pruning goes on from them, new
 * checkpoints use the new key, and the old key is trusted only up to where the new one took over.
 * PGlite and PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
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

/** What a server instance derives from its SECRET_KEY: the checkpoint signer and the event MAC key. */
function instance(secret: string) {
  const root = Buffer.from(secret);
  return {
    signer: checkpointSigner(root),
    /** Makes this instance the one appending (the MAC key is per process, set when the app starts). */
    start: () => configureAuditMac(root),
  };
}
const before = instance('audit-rotation-test-secret-before-0123456789');
const after = instance('audit-rotation-test-secret-after-9876543210');

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
    // ...with the recorded keys they verify, and so do the events MACed under the old key they cover.
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
});
