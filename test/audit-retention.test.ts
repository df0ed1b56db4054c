/**
 * Retention: old prefixes of a chain are pruned up to a signed checkpoint, recent events stay, verify
 * then starts from that checkpoint and still catches tampering. The app role can delete nothing recent,
 * neither directly nor through the pruning function. Runs on PGlite and, with DATABASE_URL, PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyBundle, writeBundle } from '../src/audit/bundle.ts';
import {
  checkpointSigner,
  createCheckpoint,
  createRetentionService,
  PruneRefusedError,
  pruneAllChains,
  pruneChain,
  recordAuditEvent,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import { type ActionContext, systemContext } from '../src/platform/context.ts';
import { asTenantId, type TenantTx } from '../src/platform/db/index.ts';
import { tenantAdmin } from './access-helpers.ts';
import { buildTestApp, createTestDatabase, seedTenant, type TestApp, type TestDatabase } from './helpers.ts';

const DAY = 86_400_000;
const realNow = Date.now();
let t: TestDatabase;
let now = realNow - 600 * DAY;
const clock = { now: () => new Date(now), set: (at: number) => (now = at) };
const signer = checkpointSigner(Buffer.from('audit-retention-test-root-key-0123456'));
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };
const pruner = systemContext('audit-retention');

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

const scoped = <R>(tenantId: string, fn: (tx: TenantTx<unknown>) => Promise<R>) =>
  t.db.withTenant(asTenantId(tenantId), fn);

async function write(tenantId: string, count: number, at: number) {
  clock.set(at);
  for (let i = 0; i < count; i++) {
    await scoped(tenantId, (tx) =>
      recordAuditEvent(tx, clock, ctx, {
        tenantId,
        action: 'tenancy.tenant.suspended',
        outcome: 'success',
        target: { type: 'tenant', id: tenantId },
        details: { n: i },
      }),
    );
  }
  await createCheckpoint(t.db, signer, clock, tenantId);
}

async function seqs(tenantId: string): Promise<number[]> {
  const rows = await t.engine.asOwner((o) =>
    o.query<{ seq: string }>(
      'SELECT chain_seq::text AS seq FROM audit_events WHERE tenant_id = $1 ORDER BY chain_seq',
      [tenantId],
    ),
  );
  return rows.map((r) => Number(r.seq));
}

/** A chain of 23 events: 10 at -500 days, 5 at -450 (checkpoints at 10 and 15), 5 at -10, 3 now. */
async function chainWithHistory(): Promise<string> {
  const tenantId = randomUUID();
  await write(tenantId, 10, realNow - 500 * DAY);
  await write(tenantId, 5, realNow - 450 * DAY);
  await write(tenantId, 5, realNow - 10 * DAY);
  await write(tenantId, 3, realNow);
  return tenantId;
}

const cutoff = (days: number) => new Date(realNow - days * DAY);

describe('pruning', () => {
  it('deletes old events up to the newest qualifying checkpoint, keeps recent ones, verify passes', async () => {
    const tenantId = await chainWithHistory();
    const dry = await pruneChain(t.db, clock, pruner, { tenantId, cutoff: cutoff(400), keys, dryRun: true });
    expect(dry).toMatchObject({ fromSeq: 0, throughSeq: 15, events: 15 });
    expect((await seqs(tenantId)).length).toBe(23);

    const progress: number[] = [];
    const result = await pruneChain(t.db, clock, pruner, {
      tenantId,
      cutoff: cutoff(400),
      keys,
      batchEvents: 5,
      onProgress: (done) => progress.push(done),
    });
    expect(result).toMatchObject({ fromSeq: 0, throughSeq: 15, events: 15 });
    expect(progress).toEqual([0, 10, 15]); // one transaction per checkpoint reached
    // 16..23 kept, plus one audit.trail.pruned event per batch appended to the same chain.
    expect(await seqs(tenantId)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24, 25]);
    const pruned = await t.engine.asOwner((o) =>
      o.query<{ details: Record<string, unknown> }>(
        `SELECT details FROM audit_events WHERE tenant_id = $1 AND action = 'audit.trail.pruned' ORDER BY chain_seq`,
        [tenantId],
      ),
    );
    expect(pruned.map((p) => p.details)).toMatchObject([
      { fromSeq: 1, throughSeq: 10, events: 10 },
      { fromSeq: 11, throughSeq: 15, events: 5 },
    ]);

    const report = await verifyAuditChain(t.db, tenantId, { keys });
    expect(report.broken).toBeNull();
    expect(report.events).toBe(10);
    // The offline bundle starts at the checkpoint too, and verifies with nothing but the public key.
    const file = join(mkdtempSync(join(tmpdir(), 'rampart-retention-')), 'chain.jsonl');
    const lines: string[] = [];
    await writeBundle(t.db, tenantId, keys, (line) => {
      lines.push(line);
    });
    writeFileSync(file, `${lines.join('\n')}\n`);
    expect(JSON.parse(lines[0] ?? '{}').start.seq).toBe(15);
    // Its last two events (the pruning's own) are after the newest checkpoint: refused unless allowed.
    expect((await verifyBundle(file, keys)).broken).toMatchObject({ kind: 'unsigned', seq: 24 });
    expect(await verifyBundle(file, keys, { allowUnsignedTail: true })).toMatchObject({
      broken: null,
      events: 10,
      unsigned: 2,
      lastSigned: { seq: 23 },
    });
    // Nothing more is old enough: a second run prunes nothing.
    expect((await pruneChain(t.db, clock, pruner, { tenantId, cutoff: cutoff(400), keys })).events).toBe(0);
  });

  it('stops at a checkpoint: old events after the last checkpoint stay until one covers them', async () => {
    const tenantId = randomUUID();
    await write(tenantId, 4, realNow - 500 * DAY);
    clock.set(realNow - 490 * DAY);
    await scoped(tenantId, (tx) =>
      recordAuditEvent(tx, clock, ctx, { tenantId, action: 'tenancy.tenant.suspended', outcome: 'success' }),
    );
    const result = await pruneChain(t.db, clock, pruner, { tenantId, cutoff: cutoff(400), keys });
    expect(result.throughSeq).toBe(4);
    expect(await seqs(tenantId)).toEqual([5, 6]);
  });

  it('refuses to prune a prefix that does not verify (the evidence is kept)', async () => {
    const tenantId = await chainWithHistory();
    await t.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
      await o.query(`UPDATE audit_events SET details = '{"n":99}' WHERE tenant_id = $1 AND chain_seq = 3`, [
        tenantId,
      ]);
      await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
    });
    await expect(
      pruneChain(t.db, clock, pruner, { tenantId, cutoff: cutoff(400), keys }),
    ).rejects.toBeInstanceOf(PruneRefusedError);
    expect((await seqs(tenantId)).length).toBe(23);
  });

  it('tampering after pruning is still detected, and so is a missing start checkpoint', async () => {
    const tenantId = await chainWithHistory();
    await pruneChain(t.db, clock, pruner, { tenantId, cutoff: cutoff(400), keys });
    await t.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
      await o.query(`UPDATE audit_events SET details = '{"n":42}' WHERE tenant_id = $1 AND chain_seq = 17`, [
        tenantId,
      ]);
      await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
    });
    const report = await verifyAuditChain(t.db, tenantId, { keys });
    expect(report.broken).toMatchObject({ kind: 'modified', seq: 17 });

    const other = await chainWithHistory();
    await pruneChain(t.db, clock, pruner, { tenantId: other, cutoff: cutoff(400), keys });
    await t.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_checkpoints DISABLE TRIGGER audit_checkpoints_append_only');
      await o.query('DELETE FROM audit_checkpoints WHERE tenant_id = $1 AND seq = 15', [other]);
      await o.exec('ALTER TABLE audit_checkpoints ENABLE TRIGGER audit_checkpoints_append_only');
    });
    expect((await verifyAuditChain(t.db, other, { keys })).broken).toMatchObject({ kind: 'checkpoint' });
  });
});

describe('the pruned prefix stays empty', () => {
  const zero = Buffer.alloc(32);
  const forgedAt = (tenantId: string, id: string, seq: number) =>
    sql`INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, action, outcome, chain_seq,
      prev_hash, hash) VALUES (${id}, ${tenantId}, now(), 'system', 'tenancy.tenant.suspended', 'success',
      ${seq}, ${zero}, ${zero})`;

  it('the app role cannot write an event back into it', async () => {
    const tenantId = await chainWithHistory();
    await pruneChain(t.db, clock, pruner, { tenantId, cutoff: cutoff(400), keys });
    for (const seq of [2, 15]) {
      await expect(
        scoped(tenantId, (tx) => forgedAt(tenantId, randomUUID(), seq).execute(tx)),
      ).rejects.toThrow(/pruned prefix/);
    }
    // One statement of several rows (the guard checks once per statement): a forged row among others
    // refuses the whole statement, whichever row it is.
    await expect(
      scoped(tenantId, (tx) =>
        sql`INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, action, outcome, chain_seq,
          prev_hash, hash) VALUES
          (${randomUUID()}, ${tenantId}, now(), 'system', 'tenancy.tenant.suspended', 'success', 900, ${zero}, ${zero}),
          (${randomUUID()}, ${tenantId}, now(), 'system', 'tenancy.tenant.suspended', 'success', 3, ${zero}, ${zero})`.execute(
          tx,
        ),
      ),
    ).rejects.toThrow(/seq 3 of chain .* lies in its pruned prefix/);
    expect(await seqs(tenantId)).toEqual([16, 17, 18, 19, 20, 21, 22, 23, 24]);
    expect((await verifyAuditChain(t.db, tenantId, { keys })).broken).toBeNull();
    // Appending goes on as before.
    await write(tenantId, 1, realNow);
    expect((await verifyAuditChain(t.db, tenantId, { keys })).broken).toBeNull();
  });

  it('verify names a row the table owner wrote into it past the trigger', async () => {
    const tenantId = await chainWithHistory();
    await pruneChain(t.db, clock, pruner, { tenantId, cutoff: cutoff(400), keys });
    const [low, high] = [randomUUID(), randomUUID()];
    await t.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_within_chain');
      try {
        for (const [id, seq] of [
          [high, 9],
          [low, 2],
        ] as const) {
          await o.query(
            `INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, action, outcome, chain_seq,
               prev_hash, hash) VALUES ($1, $2, now(), 'system', 'tenancy.tenant.suspended', 'success', $3, $4, $4)`,
            [id, tenantId, seq, zero],
          );
        }
      } finally {
        await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_within_chain');
      }
    });
    const report = await verifyAuditChain(t.db, tenantId, { keys });
    expect(report.broken).toMatchObject({ kind: 'inserted', seq: 2, eventId: low });
    expect(report.broken?.message).toMatch(/^2 event\(s\) were inserted into the pruned part/);
  });
});

it('the retention job prunes every chain by its own retention and skips one that does not verify', async () => {
  const kept = await chainWithHistory(); // retention 600 days: nothing goes
  await scoped(kept, (tx) =>
    sql`INSERT INTO audit_retention (tenant_id, days, updated_at) VALUES (${kept}, 600, now())`.execute(tx),
  );
  const pruned = await chainWithHistory(); // the default, 400 days: 15 go
  const broken = await chainWithHistory();
  await t.engine.asOwner(async (o) => {
    await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
    await o.query(`UPDATE audit_events SET action = 'x.y' WHERE tenant_id = $1 AND chain_seq = 2`, [broken]);
    await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
  });
  const retention = createRetentionService({ db: t.db, clock, defaultDays: 400, platformDays: 400 });
  const result = await pruneAllChains(
    {
      db: t.db,
      clock,
      keys,
      daysFor: (id) => retention.daysFor(id),
      async *tenantIds() {
        yield* [kept, broken, pruned];
      },
    },
    pruner,
  );
  expect(result.failures.map((f) => [f.chain, f.error.name])).toEqual([[broken, 'PruneRefusedError']]);
  expect((await seqs(kept)).length).toBe(23);
  expect((await seqs(broken)).length).toBe(23);
  expect((await seqs(pruned))[0]).toBe(16);
});

describe('what the app role cannot do', () => {
  it('cannot delete or update events, nor move pruned_through or legacy_events', async () => {
    const tenantId = await chainWithHistory();
    const attempts = [
      sql`DELETE FROM audit_events WHERE chain_seq <= 3`,
      sql`UPDATE audit_events SET details = '{}'::jsonb`,
      sql`UPDATE audit_chain_heads SET pruned_through = 15`,
      sql`UPDATE audit_chain_heads SET legacy_events = 100`,
      sql`INSERT INTO audit_chain_heads (chain, tenant_id, pruned_through) VALUES ('x', ${tenantId}, 1)`,
    ];
    for (const statement of attempts) {
      await expect(scoped(tenantId, (tx) => statement.execute(tx))).rejects.toThrow(/permission denied/);
    }
    expect((await seqs(tenantId)).length).toBe(23);
  });

  it('cannot delete recent events through the pruning function, whatever it passes', async () => {
    const tenantId = await chainWithHistory();
    // A cutoff in the future: the function clamps it to now() minus 30 days at most.
    const result = await scoped(tenantId, async (tx) => {
      const { rows } = await sql<{ through: string }>`SELECT through_seq::text AS through
        FROM audit_prune_chain(${tenantId}::uuid, '9999-01-01'::timestamptz, NULL, false, ARRAY(SELECT seq FROM audit_checkpoints))`.execute(
        tx,
      );
      return rows[0]?.through;
    });
    expect(result).toBe('15');
    expect(await seqs(tenantId)).toEqual([16, 17, 18, 19, 20, 21, 22, 23]);
    // No audit.trail.pruned event accounts for that prefix: verify names it, and so does the offline
    // bundle's verify (it starts at the signed checkpoint at 15, which alone proved nothing of 1-15).
    expect((await verifyAuditChain(t.db, tenantId, { keys })).broken).toMatchObject({
      kind: 'deleted',
      seq: 15,
    });
    const file = join(mkdtempSync(join(tmpdir(), 'rampart-retention-')), 'chain.jsonl');
    const lines: string[] = [];
    await writeBundle(t.db, tenantId, keys, (line) => {
      lines.push(line);
    });
    writeFileSync(file, `${lines.join('\n')}\n`);
    expect((await verifyBundle(file, keys)).broken).toMatchObject({
      kind: 'deleted',
      seq: 15,
      message: expect.stringContaining('no audit.trail.pruned event'),
    });

    // The tenant's stored retention is a floor too: with 400 days kept, a 31-day cutoff prunes nothing.
    const kept = await chainWithHistory();
    await scoped(kept, (tx) =>
      sql`INSERT INTO audit_retention (tenant_id, days, updated_at) VALUES (${kept}, 600, now())`.execute(tx),
    );
    await scoped(kept, (tx) =>
      sql`SELECT * FROM audit_prune_chain(${kept}::uuid, '9999-01-01'::timestamptz, NULL, false, ARRAY(SELECT seq FROM audit_checkpoints))`.execute(
        tx,
      ),
    );
    expect((await seqs(kept)).length).toBe(23);
    // Below the 30-day floor is refused by the table itself.
    await expect(scoped(kept, (tx) => sql`UPDATE audit_retention SET days = 1`.execute(tx))).rejects.toThrow(
      /check constraint/,
    );

    // Another chain than the transaction's scope is refused.
    const victim = await chainWithHistory();
    await expect(
      scoped(tenantId, (tx) =>
        sql`SELECT * FROM audit_prune_chain(${victim}::uuid, '9999-01-01'::timestamptz, NULL, false, ARRAY(SELECT seq FROM audit_checkpoints))`.execute(
          tx,
        ),
      ),
    ).rejects.toThrow(/not the transaction's scope/);
    await expect(
      t.db.withSystem((tx) =>
        sql`SELECT * FROM audit_prune_chain(${victim}::uuid, '9999-01-01'::timestamptz, NULL, false, ARRAY(SELECT seq FROM audit_checkpoints))`.execute(
          tx,
        ),
      ),
    ).rejects.toThrow(/not the transaction's scope/);
    expect((await seqs(victim)).length).toBe(23);
  });

  it('even the owner cannot delete events outside the pruning function', async () => {
    const tenantId = await chainWithHistory();
    await expect(
      t.engine.asOwner((o) => o.query('DELETE FROM audit_events WHERE tenant_id = $1', [tenantId])),
    ).rejects.toThrow(/append-only/);
  });
});

describe('retention setting (API)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await buildTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('tenant admins read and lengthen it (audited); shortening needs a second approver', async () => {
    await seedTenant(app, 'keep-co');
    const ada = await tenantAdmin(app, 'keep-co');
    const url = '/api/v1/t/keep-co/audit/retention';
    const get = await app.app.inject({ url, headers: ada.headers });
    expect(get.json()).toEqual({ days: 400, isDefault: true });

    const longer = await app.app.inject({ method: 'PUT', url, headers: ada.headers, payload: { days: 730 } });
    expect(longer.statusCode, longer.body).toBe(200);
    expect(longer.json()).toEqual({ days: 730, isDefault: false });

    const shorter = await app.app.inject({ method: 'PUT', url, headers: ada.headers, payload: { days: 90 } });
    expect(shorter.statusCode, shorter.body).toBe(202);
    expect(shorter.json().approval.action).toBe('audit.retention.shorten');
    expect((await app.app.inject({ url, headers: ada.headers })).json().days).toBe(730);

    for (const payload of [{ days: 29 }, { days: 'x' }, { days: 100, extra: 1 }, {}]) {
      const bad = await app.app.inject({ method: 'PUT', url, headers: ada.headers, payload });
      expect(bad.statusCode).toBe(400);
      expect(bad.headers['content-type']).toMatch(/problem\+json/);
    }
    // Another admin approves; the initiator then runs it, with the recorded parameters.
    const bea = await tenantAdmin(app, 'keep-co', 'bea@keep-co.test');
    const approval = shorter.json().approval;
    const approved = await app.app.inject({
      method: 'POST',
      url: `/api/v1/t/keep-co/access/approvals/${approval.id}/approve`,
      headers: bea.headers,
    });
    expect(approved.statusCode, approved.body).toBe(200);
    const run = await app.app.inject({
      method: 'POST',
      url: `/api/v1/t/keep-co/access/approvals/${approval.id}/execute`,
      headers: ada.headers,
      payload: { params: { days: 90 } },
    });
    expect(run.statusCode, run.body).toBe(200);
    expect((await app.app.inject({ url, headers: ada.headers })).json()).toEqual({
      days: 90,
      isDefault: false,
    });

    const events = await app.app.inject({
      url: '/api/v1/t/keep-co/audit/events?action=audit.retention',
      headers: ada.headers,
    });
    expect(events.json().items).toMatchObject([
      { action: 'audit.retention.updated', details: { days: 90, previousDays: 730 } },
      { action: 'audit.retention.updated', details: { days: 730, previousDays: 400 } },
    ]);
  });
});
