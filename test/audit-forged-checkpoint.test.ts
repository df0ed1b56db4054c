/**
 * Junk checkpoints (security review): whoever can write to the database can add checkpoint rows with
 * signatures that do not verify, and such rows can never be deleted. They must not take the server's
 * place (it still signs that position), nor become a verification start, a prune anchor or "the newest
 * checkpoint"; verify names them and walks the chain with the genuine ones. PGlite and PostgreSQL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkpointLag,
  checkpointSigner,
  createCheckpoint,
  pruneChain,
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
const signer = checkpointSigner(Buffer.from('audit-forged-checkpoint-test-root-key'));
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

async function write(tenantId: string, count: number, at = realNow) {
  clock.set(at);
  await appendEvents(t.db, clock, ctx, tenantId, count);
}

/**
 * As the table owner: a checkpoint row at `seq` under the server's key id, with a signature nobody
 * made. `headHash` defaults to the event's real hash there (a plausible forgery), else random bytes.
 */
async function forge(tenantId: string, seq: number, options: { randomHead?: boolean; at?: number } = {}) {
  await t.engine.asOwner(async (o) => {
    const [row] = await o.query<{ hash: Uint8Array | null }>(
      'SELECT hash FROM audit_events WHERE tenant_id = $1 AND chain_seq = $2',
      [tenantId, seq],
    );
    const head = options.randomHead || !row?.hash ? randomBytes(32) : Buffer.from(row.hash);
    await o.query(
      `INSERT INTO audit_checkpoints (tenant_id, seq, head_hash, signed_at, key_id, signature)
       VALUES ($1, $2, $3, $4, $5, $6)`,
      [tenantId, seq, head, new Date(options.at ?? now), signer.keyId, randomBytes(64)],
    );
  });
}

describe('forged checkpoint rows', () => {
  it('the server still signs a position a forged row took, and verify names the forged row', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 10);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 10 });
    await write(tenantId, 5);
    // The current head (15) and the next position (16), taken before the server signs them.
    await forge(tenantId, 15);
    await forge(tenantId, 16, { randomHead: true });
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 15 });
    await write(tenantId, 1);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 16 });
    // Signed once per position: a second run finds its own row there.
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toBeNull();

    const report = await verifyAuditChain(t.db, tenantId, { keys });
    expect(report).toMatchObject({ events: 16, headSeq: 16, checkpoints: 3, broken: null });
    expect(report.forged).toEqual([
      {
        kind: 'checkpoint',
        seq: 15,
        eventId: null,
        message: 'checkpoint at seq 15 has an invalid signature',
      },
      {
        kind: 'checkpoint',
        seq: 16,
        eventId: null,
        message: 'checkpoint at seq 16 has an invalid signature',
      },
    ]);
  });

  it('a forged row is not "the newest checkpoint"', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 4);
    await createCheckpoint(t.db, signer, clock, tenantId);
    await write(tenantId, 3);
    await forge(tenantId, 7);
    const lag = await checkpointLag(t.db, tenantId, keys);
    expect(lag).toMatchObject({ newest: { seq: 4 }, headSeq: 7, unsigned: 3 });
  });

  it('pruning passes over a forged row and prunes to the newest genuine checkpoint; verify starts there', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 5, realNow - 500 * DAY);
    await createCheckpoint(t.db, signer, clock, tenantId); // genuine, at 5
    await write(tenantId, 5, realNow - 450 * DAY);
    await forge(tenantId, 10, { at: realNow - 450 * DAY }); // the newest old one is forged
    await write(tenantId, 3, realNow);
    await createCheckpoint(t.db, signer, clock, tenantId); // genuine, at 13 (too young to prune to)
    const pruner = systemContext('audit-retention');
    const result = await pruneChain(t.db, clock, pruner, {
      tenantId,
      cutoff: new Date(realNow - 400 * DAY),
      keys,
    });
    expect(result).toMatchObject({ fromSeq: 0, throughSeq: 5, events: 5 });
    const report = await verifyAuditChain(t.db, tenantId, { keys });
    // 6..13, plus the audit.trail.pruned event; checkpoints 5 (the start) and 13.
    expect(report).toMatchObject({ events: 9, headSeq: 14, checkpoints: 2, broken: null });
    expect(report.forged).toMatchObject([{ kind: 'checkpoint', seq: 10 }]);
  });

  it('a forged row at the pruned position is not taken as the start', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 5, realNow - 500 * DAY);
    // Forged (another head) before the server's own row at the same position.
    await forge(tenantId, 5, { randomHead: true, at: realNow - 500 * DAY });
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toMatchObject({ seq: 5 });
    await write(tenantId, 2, realNow);
    await createCheckpoint(t.db, signer, clock, tenantId);
    const pruner = systemContext('audit-retention');
    const pruned = await pruneChain(t.db, clock, pruner, {
      tenantId,
      cutoff: new Date(realNow - 400 * DAY),
      keys,
    });
    expect(pruned).toMatchObject({ throughSeq: 5, events: 5 });
    const report = await verifyAuditChain(t.db, tenantId, { keys });
    expect(report).toMatchObject({ events: 3, broken: null });
    expect(report.forged).toMatchObject([{ seq: 5 }]);
  });
});
