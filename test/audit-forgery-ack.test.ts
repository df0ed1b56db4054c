/**
 * Recovery from a forged event (security review): the checkpoint job refuses to sign a chain over an
 * event whose MAC does not match, and nothing ever let it sign that chain again, so one row written
 * straight into the database stopped a tenant's tamper evidence for good. An operator now acknowledges
 * the exact event (seq, id, stored hash, a reason; audited, stored with a MAC the database cannot make);
 * the job then signs over it while its hash and links hold, verify keeps naming it, and any other
 * forgery still blocks. PGlite and PostgreSQL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { registerAuditCommands } from '../src/audit/cli.ts';
import {
  auditMacKey,
  type ChainedEvent,
  CheckpointRefusedError,
  chainHash,
  checkpointSigner,
  createCheckpoint,
  recordAuditEvent,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { operatorSession, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const clock = fakeClock(new Date());
const signer = checkpointSigner(Buffer.from('audit-forgery-ack-test-root-key-0123456789'));
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };
let t: TestApp;
let ops: Awaited<ReturnType<typeof operatorSession>>;

beforeAll(async () => {
  // The app's periodic jobs stay still: this suite signs checkpoints itself.
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  t = await buildTestApp({ clock });
  ops = await operatorSession(t, 'ann@ops.test', clock);
});
afterAll(async () => {
  await t?.close();
  vi.useRealTimers();
});

async function write(tenantId: string, count: number) {
  for (let i = 0; i < count; i++) {
    clock.advance(1000);
    await t.db.withTenant(asTenantId(tenantId), (tx) =>
      recordAuditEvent(tx, clock, ctx, {
        tenantId,
        action: 'tenancy.tenant.suspended',
        outcome: 'success',
        target: { type: 'tenant', id: tenantId },
        details: { n: i },
      }),
    );
  }
}

const owner = <R>(text: string, params: unknown[] = []) =>
  t.database.engine.asOwner((o) => o.query<R>(text, params));

/**
 * As the table owner (the app role may do the same): one event appended after the head and the head
 * moved onto it, without a MAC. `brokenHash`: its stored hash is not the hash of its content (the chain
 * still links through it).
 */
async function appendForged(tenantId: string, brokenHash = false) {
  const id = randomUUID();
  let stored: Buffer = Buffer.alloc(0);
  let seq = 0;
  await t.database.engine.asOwner(async (o) => {
    const [head] = await o.query<{ seq: string; head_hash: Uint8Array }>(
      'SELECT seq::text AS seq, head_hash FROM audit_chain_heads WHERE chain = $1',
      [tenantId],
    );
    if (!head) throw new Error('no head');
    clock.advance(1000);
    const event: ChainedEvent = {
      id,
      tenantId,
      occurredAt: clock.now(),
      actorType: 'user',
      actorId: 'u-1',
      actorElevationId: null,
      action: 'tenancy.tenant.suspended',
      targetType: 'tenant',
      targetId: tenantId,
      outcome: 'success',
      ip: null,
      userAgent: null,
      requestId: null,
      details: { n: 99 },
    };
    const prev = Buffer.from(head.head_hash);
    stored = brokenHash ? randomBytes(32) : chainHash(prev, event);
    seq = Number(head.seq) + 1;
    await o.query(
      `INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, actor_id, action, target_type, target_id,
         outcome, details, chain_seq, prev_hash, hash, mac)
       VALUES ($1, $2::uuid, $3, 'user', 'u-1', 'tenancy.tenant.suspended', 'tenant', $2::text, 'success', '{"n":99}', $4, $5, $6, NULL)`,
      [id, tenantId, event.occurredAt, seq, prev, stored],
    );
    await o.query('UPDATE audit_chain_heads SET seq = $2, head_hash = $3 WHERE chain = $1', [
      tenantId,
      seq,
      stored,
    ]);
  });
  return { seq, id, hash: stored.toString('hex') };
}

const verify = (tenantId: string) => verifyAuditChain(t.db, tenantId, { keys, macKey: auditMacKey() });
const sign = (tenantId: string) => createCheckpoint(t.db, signer, clock, tenantId);
const refusal = (tenantId: string) =>
  sign(tenantId).then(
    () => null,
    (error: unknown) => {
      if (!(error instanceof CheckpointRefusedError)) throw error;
      return { seq: error.seq, eventId: error.eventId, reason: error.reason };
    },
  );

const acknowledge = (
  chain: string,
  body: { seq: number; eventId: string; eventHash: string; reason?: string },
  headers = ops.headers,
) =>
  t.app.inject({
    method: 'POST',
    url: `/api/v1/audit/chains/${chain}/forgery-acknowledgements`,
    headers,
    payload: { reason: 'row inserted by a compromised batch job; incident INC-42', ...body },
  });

/** A tenant chain: 4 signed events, one forged, 2 genuine after it (seq 5 forged, head at 7). */
async function forgedChain(brokenHash = false) {
  const tenantId = randomUUID();
  await write(tenantId, 4);
  expect(await sign(tenantId)).toMatchObject({ seq: 4 });
  const forged = await appendForged(tenantId, brokenHash);
  await write(tenantId, 2);
  return { tenantId, forged };
}

describe('acknowledging a forged event', () => {
  it('refuses an acknowledgement that does not name the forged event exactly', async () => {
    ops.headers = await ops.signInAgain();
    const { tenantId, forged } = await forgedChain();
    expect(await refusal(tenantId)).toEqual({ seq: 5, eventId: forged.id, reason: 'mac_mismatch' });
    const [genuine] = await owner<{ id: string; hash: string }>(
      `SELECT id::text AS id, encode(hash, 'hex') AS hash FROM audit_events WHERE tenant_id = $1 AND chain_seq = 6`,
      [tenantId],
    );
    if (!genuine) throw new Error('no event at seq 6');
    const cases = [
      // Another hash at that position: a different forgery there would not be covered.
      [{ ...forged, hash: randomBytes(32).toString('hex') }, 409, 'acknowledgement_mismatch'],
      // The forged event's id and hash at another position.
      [{ ...forged, seq: 6 }, 409, 'acknowledgement_mismatch'],
      [{ ...forged, id: randomUUID() }, 409, 'acknowledgement_mismatch'],
      // A genuine event: its MAC matches, there is nothing to acknowledge.
      [{ seq: 6, id: genuine.id, hash: genuine.hash }, 409, 'event_not_forged'],
      [{ ...forged, seq: 99 }, 404, 'forged_event_not_found'],
    ] as const;
    for (const [named, status, code] of cases) {
      const res = await acknowledge(tenantId, { seq: named.seq, eventId: named.id, eventHash: named.hash });
      expect({ status: res.statusCode, code: res.json().code }).toEqual({ status, code });
    }
    const noReason = await acknowledge(tenantId, {
      seq: 5,
      eventId: forged.id,
      eventHash: forged.hash,
      reason: '   ',
    });
    expect(noReason.statusCode).toBe(400);
    // verify prints the reason on the event's line: a line break could pass for a line of its own.
    const twoLines = await acknowledge(tenantId, {
      seq: 5,
      eventId: forged.id,
      eventHash: forged.hash,
      reason: 'checked\ntenant acme: ok, 7 events up to seq 7',
    });
    expect({ status: twoLines.statusCode, code: twoLines.json().code }).toEqual({
      status: 400,
      code: 'bad_acknowledgement',
    });
    // Nothing was stored, and the chain is still not signed.
    expect(
      await owner('SELECT 1 FROM audit_forgery_acknowledgements WHERE tenant_id = $1', [tenantId]),
    ).toEqual([]);
    expect(await refusal(tenantId)).toMatchObject({ seq: 5, reason: 'mac_mismatch' });
  });

  it('lets the next checkpoint sign over it; verify passes and names it as acknowledged; audited', async () => {
    ops.headers = await ops.signInAgain();
    const { tenantId, forged } = await forgedChain();
    const res = await acknowledge(tenantId, { seq: 5, eventId: forged.id, eventHash: forged.hash });
    expect(res.statusCode, res.body).toBe(201);
    const ack = res.json();
    expect(ack).toMatchObject({
      chain: tenantId,
      seq: 5,
      eventId: forged.id,
      eventHash: forged.hash,
      acknowledgedBy: { type: 'operator', id: ops.operatorId },
    });

    expect(await sign(tenantId)).toMatchObject({ seq: 7 });
    const report = await verify(tenantId);
    expect(report).toMatchObject({ broken: null, forgedAcknowledgements: [], events: 7, checkpoints: 2 });
    expect(report.forgedEvents).toMatchObject([
      {
        seq: 5,
        eventId: forged.id,
        hash: forged.hash,
        acknowledgement: { id: ack.id, actorType: 'operator', actorId: ops.operatorId, reason: ack.reason },
      },
    ]);
    // On the platform chain, by the operator, with the reason.
    const audited = await owner<{ actor_id: string; target_id: string; details: Record<string, unknown> }>(
      `SELECT actor_id, target_id, details FROM audit_events
        WHERE tenant_id IS NULL AND action = 'audit.chain.forgery_acknowledged' AND target_id = $1`,
      [tenantId],
    );
    expect(audited).toEqual([
      {
        actor_id: ops.operatorId,
        target_id: tenantId,
        details: { seq: 5, eventId: forged.id, acknowledgementId: ack.id, reason: ack.reason },
      },
    ]);
    const again = await acknowledge(tenantId, { seq: 5, eventId: forged.id, eventHash: forged.hash });
    expect({ status: again.statusCode, code: again.json().code }).toEqual({
      status: 409,
      code: 'already_acknowledged',
    });
  });

  it('covers only that event: a second forgery after it still blocks signing', async () => {
    ops.headers = await ops.signInAgain();
    const { tenantId, forged } = await forgedChain();
    const res = await acknowledge(tenantId, { seq: 5, eventId: forged.id, eventHash: forged.hash });
    expect(res.statusCode, res.body).toBe(201);
    const second = await appendForged(tenantId);
    await write(tenantId, 1);
    expect(await refusal(tenantId)).toEqual({ seq: 8, eventId: second.id, reason: 'mac_mismatch' });
    const report = await verify(tenantId);
    expect(report.broken).toMatchObject({ kind: 'forged', seq: 8, eventId: second.id });
    expect(report.forgedEvents.map((f) => [f.seq, f.acknowledgement !== null])).toEqual([
      [5, true],
      [8, false],
    ]);
  });

  it('covers a bad MAC only: a forged event that does not hash or link into the chain is refused', async () => {
    ops.headers = await ops.signInAgain();
    const broken = await forgedChain(true);
    const res = await acknowledge(broken.tenantId, {
      seq: 5,
      eventId: broken.forged.id,
      eventHash: broken.forged.hash,
    });
    expect({ status: res.statusCode, code: res.json().code }).toEqual({ status: 409, code: 'chain_broken' });

    // Acknowledged while consistent, then its content changed under the same stored hash (the owner,
    // triggers off): the checkpoint job checks the acknowledged event's hash and links again.
    const { tenantId, forged } = await forgedChain();
    const ok = await acknowledge(tenantId, { seq: 5, eventId: forged.id, eventHash: forged.hash });
    expect(ok.statusCode, ok.body).toBe(201);
    await t.database.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
      try {
        await o.query(`UPDATE audit_events SET details = '{"n":100}' WHERE id = $1`, [forged.id]);
      } finally {
        await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
      }
    });
    expect(await refusal(tenantId)).toEqual({
      seq: 5,
      eventId: forged.id,
      reason: 'acknowledged_chain_broken',
    });
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'modified', seq: 5 });
  });

  it('ignores an acknowledgement row written straight into the database (verify names it)', async () => {
    const { tenantId, forged } = await forgedChain();
    const ackId = randomUUID();
    await owner(
      `INSERT INTO audit_forgery_acknowledgements (id, chain, tenant_id, seq, event_id, event_hash, reason,
         actor_type, actor_id, acknowledged_at, mac)
       VALUES ($1, $2, $3::uuid, 5, $4, decode($5, 'hex'), 'trust me', 'operator', 'x', now(), $6)`,
      [
        ackId,
        tenantId,
        tenantId,
        forged.id,
        forged.hash,
        Buffer.concat([Buffer.from(auditMacKey().id, 'hex'), randomBytes(32)]),
      ],
    );
    expect(await refusal(tenantId)).toMatchObject({ seq: 5, reason: 'mac_mismatch' });
    const report = await verify(tenantId);
    expect(report.broken).toMatchObject({ kind: 'forged', seq: 5 });
    expect(report.forgedAcknowledgements).toMatchObject([{ seq: 5, eventId: forged.id }]);
    expect(report.forgedAcknowledgements[0]?.message).toContain(ackId);
  });

  it('is for operators with a recent second factor only', async () => {
    const { tenantId, forged } = await forgedChain();
    const body = { seq: 5, eventId: forged.id, eventHash: forged.hash };
    const tenant = await seedTenant(t, `ack-${randomUUID().slice(0, 8)}`);
    const admin = await tenantAdmin(t, tenant.slug, undefined, clock);
    // Every operator route answers a credential that is not an operator's as unauthenticated.
    const asAdmin = await acknowledge(tenantId, body, admin.headers);
    expect(asAdmin.statusCode).toBe(401);
    expect((await acknowledge(tenantId, body, { authorization: '' })).statusCode).toBe(401);
    // An operator's API token carries no second factor; a sign-in older than 5 minutes no longer counts.
    const apiToken = await acknowledge(tenantId, body, ops.apiHeaders);
    expect({ status: apiToken.statusCode, code: apiToken.json().code }).toEqual({
      status: 403,
      code: 'step_up_required',
    });
    ops.headers = await ops.signInAgain();
    clock.advance(6 * 60_000);
    const stale = await acknowledge(tenantId, body);
    expect({ status: stale.statusCode, code: stale.json().code }).toEqual({
      status: 403,
      code: 'step_up_required',
    });
    expect(
      await owner('SELECT 1 FROM audit_forgery_acknowledgements WHERE tenant_id = $1', [tenantId]),
    ).toEqual([]);
    expect(await refusal(tenantId)).toMatchObject({ seq: 5 });
  });

  it('from the CLI: verify names it with its hash, acknowledge-forged, checkpoint, verify passes', async () => {
    const { tenantId, forged } = await forgedChain();
    const cli: ActionContext = {
      actor: { type: 'system', id: 'cli:alice' },
      ip: null,
      userAgent: null,
      requestId: null,
    };
    const run = async (...args: string[]) => {
      let out = '';
      const root = new Command().exitOverride();
      registerAuditCommands(root, {
        out: new Writable({
          write(chunk, _encoding, done) {
            out += String(chunk);
            done();
          },
        }),
        err: new Writable({ write: (_c, _e, done) => done() }),
        clock,
        withDatabase: (fn) => fn(t.db),
        tenantId: async () => tenantId,
        async *tenants() {},
        signer: () => signer,
        retentionDays: async () => 400,
        context: cli,
      });
      const failure = await root.parseAsync(['node', 'rampart', ...args]).then(
        () => null,
        (error: Error) => error,
      );
      return { out, failure };
    };
    const before = await run('audit', 'verify', '--tenant', 'acme');
    expect(before.out).toContain('tenant acme: BROKEN, forged at seq 5');
    expect(before.out).toContain(
      `tenant acme: forged event at seq 5 (event ${forged.id}, hash ${forged.hash}): NOT acknowledged`,
    );
    expect(before.failure?.message).toMatch(/failed verification/);
    expect((await run('audit', 'checkpoint', '--tenant', 'acme')).failure?.message).toMatch(/not signed/);

    const missingReason = await run('audit', 'acknowledge-forged', '--tenant', 'acme', '--seq', '5');
    expect(missingReason.failure?.message).toMatch(/required option/);
    const ack = await run(
      'audit',
      'acknowledge-forged',
      '--tenant',
      'acme',
      '--seq',
      '5',
      '--event',
      forged.id,
      '--hash',
      forged.hash,
      '--reason',
      'restored from backup; INC-7',
    );
    expect(ack.failure).toBeNull();
    expect(ack.out).toContain('event at seq 5 acknowledged as forged');
    expect((await run('audit', 'checkpoint', '--tenant', 'acme')).out).toContain('tenant acme: signed seq 7');
    const after = await run('audit', 'verify', '--tenant', 'acme');
    expect(after.failure).toBeNull();
    expect(after.out).toContain(
      'tenant acme: ok, 7 events up to seq 7, 2 signed checkpoints, 1 acknowledged',
    );
    expect(after.out).toMatch(
      new RegExp(
        `forged event at seq 5 \\(event ${forged.id}, hash ${forged.hash}\\): acknowledged by system cli:alice at \\S+: restored from backup; INC-7`,
      ),
    );
  });
});
