/**
 * Recovery from a forged event (security review): the checkpoint job refuses to sign a chain over an
 * event whose MAC does not match, and nothing ever let it sign that chain again, so one row written
 * straight into the database stopped a tenant's tamper evidence for good. An operator now acknowledges
 * the exact event (seq, id, stored hash, a reason; audited, stored with a MAC the database cannot make);
 * the job then signs over it while its hash and links hold, verify keeps naming it, and any other
 * forgery still blocks.
 *
 * Security review, next: one operator alone could do it, so an insider with database access and an
 * operator account could forge an event and acknowledge it, and signing resumed over it. Acknowledging
 * is now a platform four-eyes action: one operator's request stores nothing, they cannot approve it
 * themselves, another operator's approval lets them run it once with exactly the approved parameters,
 * each step audited; the CLI has no command for it. PGlite and PostgreSQL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { insertAcknowledgement } from '../src/audit/forged-events.ts';
import {
  auditMacKey,
  CheckpointRefusedError,
  checkpointSigner,
  createCheckpoint,
  createForgeryService,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import type { AuditTables } from '../src/audit/tables.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { operatorSession, tenantAdmin } from './access-helpers.ts';
import { appendEvents, appendForged, auditCli } from './audit-helpers.ts';
import { buildTestApp, engineUnderTest, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const clock = fakeClock(new Date());
// The app's SECRET_KEY: the suite signs checkpoints with the app's own key (an older key would need the
// app's endorsement, migration 0089).
const secretKey = 'audit-forgery-ack-test-root-key-0123456789-secret';
const signer = checkpointSigner(Buffer.from(secretKey));
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };
let t: TestApp;
type Operator = Awaited<ReturnType<typeof operatorSession>>;
/** Ann asks for acknowledgements; Ben approves them. */
let ann: Operator;
let ben: Operator;

beforeAll(async () => {
  // The app's periodic jobs stay still: this suite signs checkpoints itself.
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  t = await buildTestApp({ clock, env: { SECRET_KEY: secretKey } });
  ann = await operatorSession(t, 'ann@ops.test', clock);
  ben = await operatorSession(t, 'ben@ops.test', clock);
});
afterAll(async () => {
  await t?.close();
  vi.useRealTimers();
});

const write = (tenantId: string, count: number) =>
  appendEvents(t.db, clock, ctx, tenantId, count, () => clock.advance(1000));

const owner = <R>(text: string, params: unknown[] = []) =>
  t.database.engine.asOwner((o) => o.query<R>(text, params));

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

type Headers = { authorization: string };
type Named = { seq: number; eventId: string; eventHash: string; reason?: string };
const REASON = 'row inserted by a compromised batch job; incident INC-42';

/** Asks for an acknowledgement (a platform four-eyes action): 202 with the request, or the refusal. */
const ask = (chain: string, body: Named, headers: Headers = ann.headers) =>
  t.app.inject({
    method: 'POST',
    url: `/api/v1/audit/chains/${chain}/forgery-acknowledgements`,
    headers,
    payload: { reason: REASON, ...body },
  });
const decide = (who: Headers, id: string, decision: 'approve' | 'reject' = 'approve') =>
  t.app.inject({ method: 'POST', url: `/api/v1/access/platform-approvals/${id}/${decision}`, headers: who });
const execute = (who: Headers, id: string, params: unknown) =>
  t.app.inject({
    method: 'POST',
    url: `/api/v1/access/platform-approvals/${id}/execute`,
    headers: who,
    payload: { params },
  });

/** Fresh sign-ins (password + TOTP): deciding and running need one within 5 minutes. */
async function signInBoth() {
  ann.headers = await ann.signInAgain();
  ben.headers = await ben.signInAgain();
}

/** The whole flow: Ann asks, Ben approves, Ann runs it with the recorded parameters; the run's answer. */
async function acknowledgeApproved(chain: string, body: Named) {
  await signInBoth();
  const asked = await ask(chain, body);
  expect(asked.statusCode, asked.body).toBe(202);
  const { id, params } = asked.json().approval;
  const approved = await decide(ben.headers, id);
  expect(approved.statusCode, approved.body).toBe(200);
  const run = await execute(ann.headers, id, params);
  expect(run.statusCode, run.body).toBe(200);
  return run.json() as { approval: { id: string }; result: Record<string, unknown> & { id: string } };
}

/** A refusal's status and problem code. */
const outcome = (res: { statusCode: number; json(): { code?: string } }) => ({
  status: res.statusCode,
  code: res.json().code,
});

const ackRows = (tenantId: string) =>
  owner('SELECT 1 FROM audit_forgery_acknowledgements WHERE tenant_id = $1', [tenantId]);
/** Platform audit events about one target, in the order of the platform chain. */
const eventsAbout = (targetId: string) =>
  owner<{ action: string; actor_id: string; tenant_id: string | null; details: Record<string, unknown> }>(
    'SELECT action, actor_id, tenant_id, details FROM audit_events WHERE target_id = $1 ORDER BY chain_seq',
    [targetId],
  );
/** Requests for acknowledgements of this chain (none is recorded for one that could not run). */
const requestsFor = (tenantId: string) =>
  owner(
    `SELECT 1 FROM access_approval_requests WHERE tenant_id IS NULL AND action = 'audit.forgery.acknowledge'
       AND params->>'chain' = $1`,
    [tenantId],
  );

/** A tenant chain: 4 signed events, one forged, 2 genuine after it (seq 5 forged, head at 7). */
async function forgedChain(brokenHash = false) {
  const tenantId = randomUUID();
  await write(tenantId, 4);
  expect(await sign(tenantId)).toMatchObject({ seq: 4 });
  const forged = await appendForged(t.database.engine, clock, tenantId, { brokenHash });
  await write(tenantId, 2);
  return { tenantId, forged };
}

const named = (f: { seq: number; id: string; hash: string }): Named => ({
  seq: f.seq,
  eventId: f.id,
  eventHash: f.hash,
});

describe('acknowledging a forged event', () => {
  it('refuses an acknowledgement that does not name the forged event exactly', async () => {
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
    for (const [event, status, code] of cases) {
      const res = await ask(tenantId, named(event));
      expect(outcome(res)).toEqual({ status, code });
    }
    const noReason = await ask(tenantId, { ...named(forged), reason: '   ' });
    expect(noReason.statusCode).toBe(400);
    // verify prints the reason on the event's line: a line break could pass for a line of its own.
    const twoLines = await ask(tenantId, {
      ...named(forged),
      reason: 'checked\ntenant acme: ok, 7 events up to seq 7',
    });
    expect(outcome(twoLines)).toEqual({ status: 400, code: 'validation_failed' });
    expect(twoLines.json().errors).toMatchObject([{ pointer: '/body/reason' }]);
    // Nothing was stored nor put up for approval, and the chain is still not signed.
    expect(await ackRows(tenantId)).toEqual([]);
    expect(await requestsFor(tenantId)).toEqual([]);
    expect(await refusal(tenantId)).toMatchObject({ seq: 5, reason: 'mac_mismatch' });
  });

  it('lets the next checkpoint sign over it; verify passes and names it as acknowledged; audited', async () => {
    const { tenantId, forged } = await forgedChain();
    const { approval, result: ack } = await acknowledgeApproved(tenantId, named(forged));
    expect(ack).toMatchObject({
      chain: tenantId,
      seq: 5,
      eventId: forged.id,
      eventHash: forged.hash,
      reason: REASON,
      acknowledgedBy: { type: 'operator', id: ann.operatorId },
    });

    // Seq 8: the tenant's own notice of the acknowledgement (below).
    expect(await sign(tenantId)).toMatchObject({ seq: 8 });
    const report = await verify(tenantId);
    expect(report).toMatchObject({ broken: null, forgedAcknowledgements: [], events: 8, checkpoints: 2 });
    expect(report.forgedEvents).toMatchObject([
      {
        seq: 5,
        eventId: forged.id,
        hash: forged.hash,
        acknowledgement: { id: ack.id, actorType: 'operator', actorId: ann.operatorId, reason: REASON },
      },
    ]);
    // On the platform chain, by the operator who ran it, with the reason and the approval.
    const audited = await owner<{ actor_id: string; target_id: string; details: Record<string, unknown> }>(
      `SELECT actor_id, target_id, details FROM audit_events
        WHERE tenant_id IS NULL AND action = 'audit.chain.forgery_acknowledged' AND target_id = $1`,
      [tenantId],
    );
    expect(audited).toEqual([
      {
        actor_id: ann.operatorId,
        target_id: tenantId,
        details: {
          seq: 5,
          eventId: forged.id,
          eventHash: forged.hash,
          acknowledgementId: ack.id,
          reason: REASON,
          approval: approval.id,
          approvedBy: ben.operatorId,
        },
      },
    ]);
    // Asking again is refused before anything is put up for approval.
    const again = await ask(tenantId, named(forged));
    expect(outcome(again)).toEqual({
      status: 409,
      code: 'already_acknowledged',
    });
    expect(await requestsFor(tenantId)).toHaveLength(1);
  });

  it('covers only that event: a second forgery after it still blocks signing', async () => {
    const { tenantId, forged } = await forgedChain();
    await acknowledgeApproved(tenantId, named(forged));
    const second = await appendForged(t.database.engine, clock, tenantId);
    await write(tenantId, 1);
    // Seq 8 is the tenant's notice of the acknowledgement.
    expect(await refusal(tenantId)).toEqual({ seq: 9, eventId: second.id, reason: 'mac_mismatch' });
    const report = await verify(tenantId);
    expect(report.broken).toMatchObject({ kind: 'forged', seq: 9, eventId: second.id });
    expect(report.forgedEvents.map((f) => [f.seq, f.acknowledgement !== null])).toEqual([
      [5, true],
      [9, false],
    ]);
  });

  it('covers a bad MAC only: a forged event that does not hash or link into the chain is refused', async () => {
    const broken = await forgedChain(true);
    const res = await ask(broken.tenantId, named(broken.forged));
    expect(outcome(res)).toEqual({ status: 409, code: 'chain_broken' });

    // Acknowledged while consistent, then its content changed under the same stored hash (the owner,
    // triggers off): the checkpoint job checks the acknowledged event's hash and links again.
    const { tenantId, forged } = await forgedChain();
    await acknowledgeApproved(tenantId, named(forged));
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

  it('is for operators; approving and running need a recent second factor', async () => {
    const { tenantId, forged } = await forgedChain();
    const tenant = await seedTenant(t, `ack-${randomUUID().slice(0, 8)}`);
    const admin = await tenantAdmin(t, tenant.slug, undefined, clock);
    // Every operator route answers a credential that is not an operator's as unauthenticated.
    expect((await ask(tenantId, named(forged), admin.headers)).statusCode).toBe(401);
    expect((await ask(tenantId, named(forged), { authorization: '' })).statusCode).toBe(401);
    // Asking changes nothing, so an API token may ask; deciding and running are what count.
    const asked = await ask(tenantId, named(forged), ann.apiHeaders);
    expect(asked.statusCode, asked.body).toBe(202);
    const { id, params } = asked.json().approval;
    const required = { status: 403, code: 'step_up_required' };
    // An operator's API token carries no second factor; a sign-in older than 5 minutes no longer counts.
    expect(outcome(await decide(ben.apiHeaders, id))).toEqual(required);
    await signInBoth();
    clock.advance(6 * 60_000);
    expect(outcome(await decide(ben.headers, id))).toEqual(required);
    await signInBoth();
    expect((await decide(ben.headers, id)).statusCode).toBe(200);
    expect(outcome(await execute(ann.apiHeaders, id, params))).toEqual(required);
    clock.advance(6 * 60_000);
    expect(outcome(await execute(ann.headers, id, params))).toEqual(required);
    expect(await ackRows(tenantId)).toEqual([]);
    expect(await refusal(tenantId)).toMatchObject({ seq: 5 });
  });
});

describe('acknowledging takes two operators', () => {
  it("one operator's request stores nothing, and they cannot approve it themselves", async () => {
    await signInBoth();
    const { tenantId, forged } = await forgedChain();
    const asked = await ask(tenantId, named(forged));
    expect(asked.statusCode, asked.body).toBe(202);
    expect(asked.json().status).toBe('approval_required');
    const approval = asked.json().approval;
    expect(approval).toMatchObject({
      action: 'audit.forgery.acknowledge',
      status: 'pending',
      permission: 'audit-chains:write',
      params: { chain: tenantId, ...named(forged), reason: REASON },
      requestedBy: { type: 'operator', id: ann.operatorId },
    });
    // The approver sees what they vouch for: the chain, the event and the reason.
    for (const part of [tenantId, 'seq 5', forged.id, forged.hash, REASON]) {
      expect(approval.summary).toContain(part);
    }

    const early = await execute(ann.headers, approval.id, approval.params);
    expect(outcome(early)).toEqual({
      status: 409,
      code: 'approval_not_approved',
    });
    const self = await decide(ann.headers, approval.id);
    expect(outcome(self)).toEqual({ status: 403, code: 'self_approval' });

    // Nothing took effect: no acknowledgement, the chain is still not signed, and no forgery event.
    expect(await ackRows(tenantId)).toEqual([]);
    expect(await refusal(tenantId)).toEqual({ seq: 5, eventId: forged.id, reason: 'mac_mismatch' });
    expect(await eventsAbout(tenantId)).not.toContainEqual(
      expect.objectContaining({ action: 'audit.chain.forgery_acknowledged' }),
    );
    expect((await eventsAbout(approval.id)).map((e) => [e.action, e.actor_id, e.tenant_id])).toEqual([
      ['access.approval.requested', ann.operatorId, null],
    ]);
    const denied = await owner<{ details: Record<string, unknown> }>(
      `SELECT details FROM audit_events WHERE tenant_id IS NULL AND action = 'access.request.denied'
         AND actor_id = $1 AND target_id = 'POST /api/v1/access/platform-approvals/:id/approve'`,
      [ann.operatorId],
    );
    expect(denied).toContainEqual({ details: { reason: 'self_approval' } });
  });

  it("another operator's approval runs it once, with exactly the approved parameters", async () => {
    await signInBoth();
    const { tenantId, forged } = await forgedChain();
    const other = await forgedChain();
    const asked = await ask(tenantId, named(forged));
    expect(asked.statusCode, asked.body).toBe(202);
    const { id, params } = asked.json().approval;
    expect((await decide(ben.headers, id)).statusCode).toBe(200);

    // Changed parameters run nothing: another reason, another chain's forged event.
    for (const changed of [
      { ...params, reason: 'nothing to see here' },
      { ...params, chain: other.tenantId, eventId: other.forged.id, eventHash: other.forged.hash },
    ]) {
      const res = await execute(ann.headers, id, changed);
      expect(outcome(res)).toEqual({ status: 409, code: 'params_changed' });
    }
    // The approver does not run it either: the requester does.
    const byApprover = await execute(ben.headers, id, params);
    expect(outcome(byApprover)).toEqual({
      status: 403,
      code: 'not_requester',
    });
    expect(await ackRows(tenantId)).toEqual([]);
    expect(await ackRows(other.tenantId)).toEqual([]);
    expect(await refusal(tenantId)).toMatchObject({ seq: 5, reason: 'mac_mismatch' });
    expect(await refusal(other.tenantId)).toMatchObject({ seq: 5, reason: 'mac_mismatch' });

    // Racing runs with the approved parameters: one runs it.
    const runs = await Promise.all([execute(ann.headers, id, params), execute(ann.headers, id, params)]);
    expect(runs.map((r) => r.statusCode).sort()).toEqual([200, 409]);
    const won = runs.find((r) => r.statusCode === 200)?.json();
    expect(won.approval).toMatchObject({ id, status: 'executed', decidedBy: { id: ben.operatorId } });
    expect(won.result).toMatchObject({ chain: tenantId, seq: 5, eventId: forged.id, reason: REASON });
    expect((await execute(ann.headers, id, params)).statusCode).toBe(409);
    expect(await ackRows(tenantId)).toHaveLength(1);
    expect(await sign(tenantId)).toMatchObject({ seq: 8 });
    expect(await refusal(other.tenantId)).toMatchObject({ seq: 5, reason: 'mac_mismatch' });

    // Asked, approved, refused twice for changed parameters, run: each on the platform chain.
    expect((await eventsAbout(id)).map((e) => [e.action, e.actor_id, e.tenant_id])).toEqual([
      ['access.approval.requested', ann.operatorId, null],
      ['access.approval.approved', ben.operatorId, null],
      ['access.approval.params_refused', ann.operatorId, null],
      ['access.approval.params_refused', ann.operatorId, null],
      ['access.approval.executed', ann.operatorId, null],
    ]);
    expect(
      (await eventsAbout(tenantId)).filter((e) => e.action === 'audit.chain.forgery_acknowledged'),
    ).toMatchObject([{ actor_id: ann.operatorId, details: { approval: id, approvedBy: ben.operatorId } }]);
  });

  it('from the CLI: verify names it and how to ask; there is no command to acknowledge it alone', async () => {
    const { tenantId, forged } = await forgedChain();
    const cli: ActionContext = {
      actor: { type: 'system', id: 'cli:alice' },
      ip: null,
      userAgent: null,
      requestId: null,
    };
    const run = auditCli({
      clock,
      withDatabase: (fn) => fn(t.db),
      tenantId: async () => tenantId,
      async *tenants() {},
      signer: () => signer,
      retentionDays: async () => 400,
      context: cli,
    });
    const before = await run('audit', 'verify', '--tenant', 'acme');
    expect(before.out).toContain('tenant acme: BROKEN, forged at seq 5');
    expect(before.out).toContain(
      `tenant acme: forged event at seq 5 (event ${forged.id}, hash ${forged.hash}): NOT acknowledged ` +
        `(once investigated, an operator asks: POST /api/v1/audit/chains/${tenantId}/forgery-acknowledgements ` +
        `{"seq": 5, "eventId": "${forged.id}", "eventHash": "${forged.hash}", "reason": "..."}; another operator approves it)`,
    );
    expect(before.failure?.message).toMatch(/failed verification/);
    expect((await run('audit', 'checkpoint', '--tenant', 'acme')).failure?.message).toMatch(/not signed/);

    // The server's shell is not a second operator (docs/access.md): no CLI command acknowledges alone.
    const alone = await run(
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
    expect(alone.failure?.message).toMatch(/unknown command/);
    expect(await ackRows(tenantId)).toEqual([]);
    expect((await run('audit', 'checkpoint', '--tenant', 'acme')).failure?.message).toMatch(/not signed/);

    await acknowledgeApproved(tenantId, { ...named(forged), reason: 'restored from backup; INC-7' });
    expect((await run('audit', 'checkpoint', '--tenant', 'acme')).out).toContain('tenant acme: signed seq 8');
    const after = await run('audit', 'verify', '--tenant', 'acme');
    expect(after.failure).toBeNull();
    expect(after.out).toContain(
      'tenant acme: ok, 8 events up to seq 8, 2 signed checkpoints, 1 acknowledged',
    );
    expect(after.out).toMatch(
      new RegExp(
        `forged event at seq 5 \\(event ${forged.id}, hash ${forged.hash}\\): acknowledged by operator ${ann.operatorId} at \\S+: restored from backup; INC-7`,
      ),
    );
  });
});

/**
 * A tenant chain pruned through seq 4 (signed there), with a forged event at seq 5 linking to `linkTo`
 * (the pruned checkpoint's head hash by default) and 2 genuine events after it. Pruning is mimicked as
 * the table owner: the events up to the checkpoint deleted, the head's pruned_through moved.
 */
async function prunedForgedChain(linkTo?: Buffer) {
  const tenantId = randomUUID();
  await write(tenantId, 4);
  expect(await sign(tenantId)).toMatchObject({ seq: 4 });
  const forged = await appendForged(t.database.engine, clock, tenantId, { linkTo });
  await write(tenantId, 2);
  await t.database.engine.asOwner(async (o) => {
    await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
    try {
      await o.query('DELETE FROM audit_events WHERE tenant_id = $1 AND chain_seq <= 4', [tenantId]);
    } finally {
      await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
    }
    await o.query('UPDATE audit_chain_heads SET pruned_through = 4 WHERE chain = $1', [tenantId]);
  });
  return { tenantId, forged };
}

const operatorCtx = (): ActionContext => ({
  actor: { type: 'operator', id: ann.operatorId },
  ip: null,
  userAgent: null,
  requestId: null,
});
/** An approval as the platform-approvals execution hands it to the service (guard: a no-op unless given). */
const approvalFor = (guard: () => Promise<void> = async () => {}) => ({
  guard,
  approvalId: randomUUID(),
  approvedBy: ben.operatorId,
});

describe('acknowledging a forged event: code review', () => {
  it('L1: refuses a reason with a lone surrogate (stored as U+FFFD, its MAC would never verify)', async () => {
    const { tenantId, forged } = await forgedChain();
    const asked = await ask(tenantId, { ...named(forged), reason: 'restored\ud800 from backup' });
    expect(outcome(asked)).toEqual({ status: 400, code: 'validation_failed' });
    expect(asked.json().errors).toMatchObject([{ pointer: '/body/reason' }]);
    // An approved request runs with its recorded params: the service checks them again.
    const forgeries = createForgeryService({ db: t.db, clock, signer });
    const input = { tenantId, ...named(forged), reason: 'restored\ud800 from backup' };
    await expect(forgeries.check(input)).rejects.toMatchObject({ code: 'bad_acknowledgement' });
    await expect(forgeries.acknowledge(operatorCtx(), input, approvalFor())).rejects.toMatchObject({
      code: 'bad_acknowledgement',
    });
    expect(await ackRows(tenantId)).toEqual([]);
    expect(await requestsFor(tenantId)).toEqual([]);
    expect((await verify(tenantId)).forgedAcknowledgements).toEqual([]);
  });

  it('L2: refuses an upper-case or urn:uuid: chain or event id with a 400 naming the field', async () => {
    const { tenantId, forged } = await forgedChain();
    const cases = [
      [tenantId.toUpperCase(), named(forged), '/path/chain'],
      [`urn:uuid:${tenantId}`, named(forged), '/path/chain'],
      [tenantId, { ...named(forged), eventId: forged.id.toUpperCase() }, '/body/eventId'],
      [tenantId, { ...named(forged), eventId: `urn:uuid:${forged.id}` }, '/body/eventId'],
    ] as const;
    for (const [chain, body, pointer] of cases) {
      const res = await ask(chain, body);
      expect(outcome(res), `${chain} ${body.eventId}`).toEqual({ status: 400, code: 'validation_failed' });
      expect(res.json().errors[0]).toMatchObject({ pointer });
    }
    const forgeries = createForgeryService({ db: t.db, clock, signer });
    for (const input of [
      { tenantId: tenantId.toUpperCase(), ...named(forged), reason: REASON },
      { tenantId, ...named(forged), eventId: forged.id.toUpperCase(), reason: REASON },
    ]) {
      await expect(forgeries.acknowledge(operatorCtx(), input, approvalFor())).rejects.toMatchObject({
        code: 'bad_acknowledgement',
      });
    }
    expect(await ackRows(tenantId)).toEqual([]);
    expect(await requestsFor(tenantId)).toEqual([]);
  });

  it('L5: the first event after a pruned checkpoint must link to that checkpoint', async () => {
    const broken = await prunedForgedChain(randomBytes(32));
    expect(outcome(await ask(broken.tenantId, named(broken.forged)))).toEqual({
      status: 409,
      code: 'chain_broken',
    });
    // An acknowledgement a node made (its MAC verifies): the checkpoint job still checks the link.
    await t.db.withSystem<AuditTables, void>((tx) =>
      insertAcknowledgement(tx, auditMacKey(), {
        id: randomUUID(),
        chain: broken.tenantId,
        seq: 5,
        eventId: broken.forged.id,
        eventHash: Buffer.from(broken.forged.hash, 'hex'),
        reason: REASON,
        actorType: 'operator',
        actorId: ann.operatorId,
        acknowledgedAt: clock.now(),
      }),
    );
    expect(await refusal(broken.tenantId)).toEqual({
      seq: 5,
      eventId: broken.forged.id,
      reason: 'acknowledged_chain_broken',
    });

    // Linked to the checkpoint's head hash (the head it signed), it is acknowledged and signed over.
    const linked = await prunedForgedChain();
    await acknowledgeApproved(linked.tenantId, named(linked.forged));
    expect(await sign(linked.tenantId)).toMatchObject({ seq: 8 });
  });

  it("L6, M1: the hash in a reason is not taken for a secret; the tenant's own chain is told", async () => {
    const { tenantId, forged } = await forgedChain();
    const reason = `row ${forged.hash} came from the restored batch job; INC-9`;
    const { approval, result: ack } = await acknowledgeApproved(tenantId, { ...named(forged), reason });
    expect(ack.reason).toBe(reason);
    const [platform] = await owner<{ details: Record<string, unknown> }>(
      `SELECT details FROM audit_events WHERE tenant_id IS NULL AND action = 'audit.chain.forgery_acknowledged'
         AND target_id = $1`,
      [tenantId],
    );
    // The hash is its own detail; the rest of the reason is kept (not "[redacted: ...]").
    expect(platform?.details).toMatchObject({
      eventHash: forged.hash,
      reason: 'row [hex elided] came from the restored batch job; INC-9',
    });
    // On the tenant's chain, in the same transaction: who asked and approved, not the reason.
    const notices = await owner<{ actor_id: string; target_id: string; details: Record<string, unknown> }>(
      `SELECT actor_id, target_id, details FROM audit_events
        WHERE tenant_id = $1 AND action = 'audit.forged_event.acknowledged'`,
      [tenantId],
    );
    expect(notices).toEqual([
      {
        actor_id: ann.operatorId,
        target_id: forged.id,
        details: {
          seq: 5,
          eventId: forged.id,
          eventHash: forged.hash,
          acknowledgementId: ack.id,
          approval: approval.id,
          approvedBy: ben.operatorId,
        },
      },
    ]);
    // The tenant reads it through its own scope; its MAC is a node's, so the chain signs and verifies.
    expect(await sign(tenantId)).toMatchObject({ seq: 8 });
    expect(await verify(tenantId)).toMatchObject({ broken: null, events: 8 });
  });

  it('L7: two approved acknowledgements of one event run at once: one is stored, the other 409', async () => {
    const { tenantId, forged } = await forgedChain();
    const forgeries = createForgeryService({ db: t.db, clock, signer });
    // Both runs pass their approval's re-check before either reads the acknowledgements. PGlite runs one
    // transaction at a time, so only PostgreSQL can overlap them.
    const overlap = engineUnderTest === 'postgres';
    let arrived = 0;
    let release = () => {};
    const both = new Promise<void>((resolve) => {
      release = resolve;
    });
    const guard = async () => {
      if (!overlap) return;
      arrived += 1;
      if (arrived === 2) release();
      await both;
    };
    const run = () =>
      forgeries
        .acknowledge(operatorCtx(), { tenantId, ...named(forged), reason: REASON }, approvalFor(guard))
        .then(
          () => 'stored',
          (error: { code?: string }) => error.code,
        );
    expect((await Promise.all([run(), run()])).sort()).toEqual(['already_acknowledged', 'stored']);
    expect(await ackRows(tenantId)).toHaveLength(1);
  });

  it('L7: a row written straight into the table does not block the genuine acknowledgement', async () => {
    const { tenantId, forged } = await forgedChain();
    await owner(
      `INSERT INTO audit_forgery_acknowledgements (id, chain, tenant_id, seq, event_id, event_hash, reason,
         actor_type, actor_id, acknowledged_at, mac)
       VALUES ($1, $2, $3::uuid, 5, $4, decode($5, 'hex'), 'trust me', 'operator', 'x', now(), $6)`,
      [randomUUID(), tenantId, tenantId, forged.id, forged.hash, randomBytes(40)],
    );
    await acknowledgeApproved(tenantId, named(forged));
    expect(await ackRows(tenantId)).toHaveLength(2);
    expect(await sign(tenantId)).toMatchObject({ seq: 8 });
  });
});
