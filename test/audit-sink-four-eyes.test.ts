/**
 * Security review: one operator holding audit-sinks:write could, alone, add a SIEM sink that streams
 * every tenant's audit events to any address. Adding a sink is now a platform four-eyes action: the
 * asking operator cannot approve it; racing approvers decide once and racing runs add one sink; changed
 * parameters and an expired approval run nothing; without approval no sink exists and nothing is
 * forwarded; every step is on the platform audit trail. Both engines (PostgreSQL: real races on FOR UPDATE).
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AccessTables } from '../src/access/index.ts';
import { createForwarder, type OutboundRequest } from '../src/audit/index.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { operatorSession } from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const SECRET_KEY = 'c2VjcmV0LWtleS1mb3ItdGhlLXNpbmstZm91ci1leWVzLXRlc3QtMDEyMzQ1Ng';
const clock = fakeClock(new Date());
let t: TestApp;
type Operator = Awaited<ReturnType<typeof operatorSession>>;
let ann: Operator;
let ben: Operator;
let cat: Operator;
/**
 * What the forwarder sent, to any sink (recorded, answered 204): a real receiver would check the
 * Standard Webhooks timestamp against the wall clock, which this suite's sign-ins move by minutes.
 */
const sent: OutboundRequest[] = [];
const sentActions = () => sent.map((r) => (JSON.parse(r.body) as { data: { action: string } }).data.action);

beforeAll(async () => {
  // The app's periodic jobs stay still: this test runs the forwarding passes itself.
  vi.useFakeTimers({ toFake: ['setInterval', 'clearInterval'] });
  t = await buildTestApp({ clock, env: { SECRET_KEY } });
  ann = await operatorSession(t, 'ann@ops.test', clock);
  ben = await operatorSession(t, 'ben@ops.test', clock);
  cat = await operatorSession(t, 'cat@ops.test', clock);
});
afterAll(async () => {
  await t?.close();
  vi.useRealTimers();
});

const forwarder = () =>
  createForwarder({
    db: t.db,
    clock,
    box: createSecretBox(deriveKey(Buffer.from(SECRET_KEY, 'utf8'), 'audit-sinks')),
    send: async (r) => {
      sent.push(r);
      return { status: 204 };
    },
  });

const hook = (path: string) => ({ kind: 'webhook', url: `https://siem.example.test/${path}` });
const ask = (who: { authorization: string }, payload: object) =>
  t.app.inject({ method: 'POST', url: '/api/v1/audit/sinks', headers: who, payload });
const decide = (who: { authorization: string }, id: string, decision: 'approve' | 'reject') =>
  t.app.inject({ method: 'POST', url: `/api/v1/access/platform-approvals/${id}/${decision}`, headers: who });
const execute = (who: { authorization: string }, id: string, params: unknown) =>
  t.app.inject({
    method: 'POST',
    url: `/api/v1/access/platform-approvals/${id}/execute`,
    headers: who,
    payload: { params },
  });

/** Fresh sign-ins (password + TOTP) for all three: deciding and running need one within 5 minutes. */
async function signInAll() {
  ann.headers = await ann.signInAgain();
  ben.headers = await ben.signInAgain();
  cat.headers = await cat.signInAgain();
}

async function owner<R>(sql: string, params: unknown[] = []): Promise<R[]> {
  return t.database.engine.asOwner((o) => o.query<R>(sql, params));
}
const sinkRows = () => owner<{ id: string; url: string }>('SELECT id::text, url FROM audit_sinks');
/** Platform audit events about one target, in the order of the platform chain. */
const eventsAbout = (targetId: string) =>
  owner<{
    action: string;
    actor_id: string;
    outcome: string;
    tenant_id: string | null;
    details: Record<string, unknown>;
  }>(
    'SELECT action, actor_id, outcome, tenant_id, details FROM audit_events WHERE target_id = $1 ORDER BY chain_seq',
    [targetId],
  );

describe('adding a SIEM sink needs a second operator', () => {
  it('without approval no sink exists and nothing is forwarded; the request holds no secret', async () => {
    const asked = await ask(ann.apiHeaders, hook('unapproved'));
    expect(asked.statusCode, asked.body).toBe(202);
    const approval = asked.json().approval;
    expect(approval).toMatchObject({
      action: 'audit.sink.connect',
      status: 'pending',
      permission: 'audit-sinks:write',
      params: hook('unapproved'),
      requestedBy: { type: 'operator', id: ann.operatorId },
    });
    expect(approval.summary).toContain('https://siem.example.test/unapproved');
    expect(asked.body).not.toMatch(/whsec_/);
    const [row] = await owner<{ tenant_id: string | null; params: unknown }>(
      'SELECT tenant_id, params FROM access_approval_requests WHERE id = $1',
      [approval.id],
    );
    expect(row?.tenant_id).toBeNull();
    expect(JSON.stringify(row?.params)).not.toMatch(/whsec_|secret/);

    expect(await sinkRows()).toEqual([]);
    expect((await t.app.inject({ url: '/api/v1/audit/sinks', headers: t.asOperator })).json()).toEqual([]);
    const tenant = await seedTenant(t, 'quiet-co');
    clock.advance(20_000);
    expect((await forwarder().deliverDue()).delivered).toBe(0);
    expect(sent).toEqual([]);
    expect(await owner('SELECT 1 FROM audit_outbox')).toEqual([]);

    // A platform request is not a tenant's: a tenant scope does not see it.
    const seen = await t.db.withTenant<AccessTables, { id: string }[]>(asTenantId(tenant.id), (tx) =>
      tx.selectFrom('access_approval_requests').select('id').execute(),
    );
    expect(seen).toEqual([]);
    expect((await eventsAbout(approval.id)).map((e) => [e.action, e.tenant_id])).toEqual([
      ['access.approval.requested', null],
    ]);
  });

  it('the requester cannot approve their own request, and an API token cannot decide', async () => {
    await signInAll();
    const asked = await ask(ann.headers, hook('self'));
    const id = asked.json().approval.id;
    const self = await decide(ann.headers, id, 'approve');
    expect(self.statusCode).toBe(403);
    expect(self.json().code).toBe('self_approval');
    const byToken = await decide(ben.apiHeaders, id, 'approve');
    expect(byToken.statusCode).toBe(403);
    expect(byToken.json().code).toBe('step_up_required');
    const early = await execute(ann.headers, id, hook('self'));
    expect(early.statusCode).toBe(409);
    expect(early.json().code).toBe('approval_not_approved');
    expect(await sinkRows()).toEqual([]);
    const view = await t.app.inject({ url: '/api/v1/access/platform-approvals', headers: ben.headers });
    expect(view.json().find((a: { id: string }) => a.id === id)).toMatchObject({ status: 'pending' });

    // Rejected: it can never run.
    expect((await decide(ben.headers, id, 'reject')).statusCode).toBe(200);
    expect((await execute(ann.headers, id, hook('self'))).json().code).toBe('approval_not_approved');
    expect((await eventsAbout(id)).map((e) => e.action)).toEqual([
      'access.approval.requested',
      'access.approval.rejected',
    ]);
    expect(await sinkRows()).toEqual([]);
  });

  it('racing approvers decide once, racing runs add the sink exactly once, and it then delivers', async () => {
    await signInAll();
    const payload = hook('approved');
    const id = (await ask(ann.headers, payload)).json().approval.id;
    const raced = await Promise.all([decide(ben.headers, id, 'approve'), decide(cat.headers, id, 'approve')]);
    expect(raced.map((r) => r.statusCode).sort()).toEqual([200, 409]);

    const runs = await Promise.all([execute(ann.headers, id, payload), execute(ann.headers, id, payload)]);
    expect(runs.map((r) => r.statusCode).sort()).toEqual([200, 409]);
    const won = runs.find((r) => r.statusCode === 200)?.json();
    expect(won.approval).toMatchObject({ id, status: 'executed' });
    expect(won.result).toMatchObject({
      kind: 'webhook',
      url: payload.url,
      secret: expect.stringMatching(/^whsec_/),
    });
    expect((await execute(ann.headers, id, payload)).statusCode).toBe(409);
    const sinks = await sinkRows();
    expect(sinks).toEqual([{ id: won.result.id, url: payload.url }]);

    // Every step on the platform trail: asked, approved, run (by whom), and the sink's creation naming it.
    const approvedBy = won.approval.decidedBy.id;
    expect([ben.operatorId, cat.operatorId]).toContain(approvedBy);
    expect((await eventsAbout(id)).map((e) => [e.action, e.actor_id, e.tenant_id])).toEqual([
      ['access.approval.requested', ann.operatorId, null],
      ['access.approval.approved', approvedBy, null],
      ['access.approval.executed', ann.operatorId, null],
    ]);
    expect(await eventsAbout(won.result.id)).toMatchObject([
      { action: 'audit.sink.created', actor_id: ann.operatorId, details: { approval: id, approvedBy } },
    ]);

    await seedTenant(t, 'watched-co');
    clock.advance(20_000);
    await forwarder().deliverDue();
    expect(new Set(sent.map((r) => r.url))).toEqual(new Set([payload.url]));
    expect(sentActions()).toContain('tenancy.tenant.created');
    expect(sentActions()).toContain('audit.sink.created');

    // Disabling stays one operator's action (it reduces exposure), audited as before.
    const off = await t.app.inject({
      method: 'DELETE',
      url: `/api/v1/audit/sinks/${won.result.id}?now=true`,
      headers: ben.apiHeaders,
    });
    expect(off.statusCode).toBe(200);
    expect((await eventsAbout(won.result.id)).map((e) => e.action)).toEqual([
      'audit.sink.created',
      'audit.sink.disabled',
      'audit.sink.stopped',
    ]);
  });

  it('a run with other parameters is refused and runs nothing', async () => {
    await signInAll();
    const payload = hook('exact');
    const id = (await ask(ann.headers, payload)).json().approval.id;
    expect((await decide(ben.headers, id, 'approve')).statusCode).toBe(200);
    const before = await sinkRows();
    for (const other of [hook('elsewhere'), { ...payload, kind: 'syslog' }, { ...payload, extra: 1 }]) {
      const changed = await execute(ann.headers, id, other);
      expect(changed.statusCode).toBe(409);
      expect(changed.json().code).toBe('params_changed');
    }
    expect(await sinkRows()).toEqual(before);
    const actions = (await eventsAbout(id)).map((e) => e.action);
    expect(actions.filter((a) => a === 'access.approval.params_refused')).toHaveLength(3);
    // Still approved for exactly what was asked.
    expect((await execute(ann.headers, id, payload)).statusCode).toBe(200);
    expect((await sinkRows()).filter((s) => s.url === payload.url)).toHaveLength(1);
  });

  it('an expired approval cannot run, nor can an expired request be approved', async () => {
    await signInAll();
    const payload = hook('late');
    const approved = (await ask(ann.headers, payload)).json().approval.id;
    const pending = (await ask(ann.headers, hook('later'))).json().approval.id;
    expect((await decide(ben.headers, approved, 'approve')).statusCode).toBe(200);
    clock.advance(24 * 3_600_000 + 60_000);
    await signInAll();
    const run = await execute(ann.headers, approved, payload);
    expect(run.statusCode).toBe(409);
    expect(run.json().code).toBe('approval_expired');
    const decideLate = await decide(ben.headers, pending, 'approve');
    expect(decideLate.statusCode).toBe(409);
    expect(decideLate.json().code).toBe('approval_expired');
    expect((await sinkRows()).filter((s) => s.url.endsWith('/late') || s.url.endsWith('/later'))).toEqual([]);
    expect((await eventsAbout(approved)).map((e) => e.action)).toEqual([
      'access.approval.requested',
      'access.approval.approved',
      'access.approval.expired',
    ]);
    expect((await eventsAbout(pending)).map((e) => e.action)).toEqual([
      'access.approval.requested',
      'access.approval.expired',
    ]);
  });

  it('an approval by an operator disabled since runs nothing and goes back to pending', async () => {
    await signInAll();
    const payload = hook('approver-gone');
    const id = (await ask(ann.headers, payload)).json().approval.id;
    expect((await decide(cat.headers, id, 'approve')).statusCode).toBe(200);
    const disabled = await t.app.inject({
      method: 'POST',
      url: `/api/v1/operators/${cat.operatorId}/disable`,
      headers: ben.headers,
      payload: {},
    });
    expect(disabled.statusCode, disabled.body).toBe(200);
    const run = await execute(ann.headers, id, payload);
    expect(run.statusCode).toBe(409);
    expect(run.json().code).toBe('approver_lost_permission');
    expect((await sinkRows()).filter((s) => s.url === payload.url)).toEqual([]);
    const [row] = await owner<{ status: string }>(
      'SELECT status FROM access_approval_requests WHERE id = $1',
      [id],
    );
    expect(row?.status).toBe('pending');
    expect((await eventsAbout(id)).map((e) => e.action)).toContain('access.approval.approver_lost');
  });
});
