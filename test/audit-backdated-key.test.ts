/**
 * Regression (tamper-evidence review of 2026-11-28, /work/wt-rev-chain rev-chain-backdated-key): the table
 * owner, who has no SECRET_KEY, inserts its own key into audit_signing_keys with a recorded_at older than
 * the server's. It used to be trusted wherever the server's key had not signed yet (a new tenant; after a
 * rotation every quiet chain), and every recorded row while the server's key was not recorded: the
 * owner's checkpoint over an event MACed under a made-up key id passed verify ("vouched by another key")
 * and the checkpoint job signed on from it. Now an older key is trusted only when a trusted key endorsed
 * it (migration 0089). PGlite and PostgreSQL.
 */
import { generateKeyPairSync, randomBytes, randomUUID, sign } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { canonicalCheckpoint } from '../src/audit/canonical.ts';
import {
  CheckpointRefusedError,
  checkpointSigner,
  configureAuditMac,
  createCheckpoint,
  loadTrustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import { keyIdOf } from '../src/audit/signer.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { appendEvents, appendForged } from './audit-helpers.ts';
import { createTestDatabase, fakeClock, type TestDatabase } from './helpers.ts';

const clock = fakeClock();
const root = Buffer.from('audit-backdated-key-test-root-key-0123456789');
const signer = checkpointSigner(root);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };
const attacker = generateKeyPairSync('ed25519');
const attackerKeyId = keyIdOf(attacker.publicKey);
const attackerDer = attacker.publicKey.export({ format: 'der', type: 'spki' });

/** As the owner: the attacker's key, dated a day before the oldest recorded key (or now, if none). */
async function backdateAttackerKey(t: TestDatabase) {
  await t.engine.asOwner((o) =>
    o.query(
      `INSERT INTO audit_signing_keys (key_id, public_key, recorded_at)
       VALUES ($1, $2, coalesce((SELECT min(recorded_at) FROM audit_signing_keys), now()) - interval '1 day')`,
      [attackerKeyId, attackerDer],
    ),
  );
}

/** A forged event under a made-up MAC key id, then a checkpoint over it signed with the owner's key. */
async function forgeAndSign(t: TestDatabase, tenantId: string) {
  const forged = await appendForged(t.engine, clock, tenantId, {
    mac: Buffer.concat([randomBytes(8), randomBytes(32)]),
  });
  clock.advance(1000);
  const body = {
    tenantId,
    seq: forged.seq,
    headHash: Buffer.from(forged.hash, 'hex'),
    signedAt: clock.now(),
  };
  const signature = sign(null, Buffer.from(canonicalCheckpoint(body), 'utf8'), attacker.privateKey);
  await t.engine.asOwner((o) =>
    o.query(
      `INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, signed_at, key_id, signature)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [tenantId, body.seq, body.headHash, body.signedAt, attackerKeyId, signature],
    ),
  );
  return forged;
}

async function expectFlagged(t: TestDatabase, tenantId: string, forgedSeq: number) {
  const keys = await loadTrustedKeys(t.db, signer);
  expect(keys.has(attackerKeyId)).toBe(false);
  const report = await verifyAuditChain(t.db, tenantId, { keys, macKey: configureAuditMac(root) });
  expect(report.forged).toMatchObject([
    { kind: 'checkpoint', seq: forgedSeq, message: expect.stringContaining(`unknown key ${attackerKeyId}`) },
  ]);
  expect(report.forgedEvents).toMatchObject([{ seq: forgedSeq }]);
}

describe('a signing key the owner records as older than the server key', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
    configureAuditMac(root);
    // Some chain was signed once, so the server's key is recorded.
    const other = randomUUID();
    await appendEvents(t.db, clock, ctx, other, 1);
    await createCheckpoint(t.db, signer, clock, other);
    await backdateAttackerKey(t);
  });
  afterAll(async () => {
    await t?.close();
  });

  it('is not trusted: verify names the forged event and the owner-signed checkpoint', async () => {
    const tenantId = randomUUID();
    await appendEvents(t.db, clock, ctx, tenantId, 3, () => clock.advance(1000)); // new tenant, not signed yet
    const forged = await forgeAndSign(t, tenantId);
    expect(forged.seq).toBe(4);
    await expectFlagged(t, tenantId, 4);
  });

  it('the checkpoint job refuses to sign on from the owner-signed checkpoint', async () => {
    const tenantId = randomUUID();
    await appendEvents(t.db, clock, ctx, tenantId, 3, () => clock.advance(1000));
    await forgeAndSign(t, tenantId);
    await appendEvents(t.db, clock, ctx, tenantId, 2, () => clock.advance(1000)); // genuine, after it
    const signed = await createCheckpoint(t.db, signer, clock, tenantId).catch((e: unknown) => e);
    expect(signed, 'the server signed over the forged event').toBeInstanceOf(CheckpointRefusedError);
  });

  it('an endorsement row the owner writes (no valid signature of a trusted key) counts for nothing', async () => {
    // The owner has no SECRET_KEY: it can only sign with its own key, or write bytes that do not verify.
    const selfSigned = sign(null, Buffer.from(`rampart audit key endorsement v1\n`), attacker.privateKey);
    await t.engine.asOwner(async (o) => {
      await o.query(
        `INSERT INTO audit_key_endorsements (endorser_key_id, key_id, public_key, signature) VALUES ($1, $2, $3, $4)`,
        [signer.keyId, attackerKeyId, attackerDer, selfSigned],
      );
      await o.query(
        `INSERT INTO audit_key_endorsements (endorser_key_id, key_id, public_key, signature, created_at)
         VALUES ($1, $2, $3, $4, now() - interval '2 days')`,
        [signer.keyId, attackerKeyId, attackerDer, randomBytes(64)],
      );
    });
    const tenantId = randomUUID();
    await appendEvents(t.db, clock, ctx, tenantId, 2, () => clock.advance(1000));
    await forgeAndSign(t, tenantId);
    await expectFlagged(t, tenantId, 3);
  });
});

describe('while the server key is not recorded yet', () => {
  let t: TestDatabase;
  beforeAll(async () => {
    t = await createTestDatabase();
    configureAuditMac(root);
    await backdateAttackerKey(t); // the only recorded row: every row used to be trusted then
  });
  afterAll(async () => {
    await t?.close();
  });

  it('a recorded key is not trusted, and the first checkpoint job refuses', async () => {
    const tenantId = randomUUID();
    await appendEvents(t.db, clock, ctx, tenantId, 2, () => clock.advance(1000));
    await forgeAndSign(t, tenantId);
    await expectFlagged(t, tenantId, 3);
    await appendEvents(t.db, clock, ctx, tenantId, 1, () => clock.advance(1000));
    const signed = await createCheckpoint(t.db, signer, clock, tenantId).catch((e: unknown) => e);
    expect(signed).toBeInstanceOf(CheckpointRefusedError);
  });
});
