/**
 * Weakening the platform's alerting is a platform four-eyes action (security review: one operator could
 * mute the platform's alerts or point them elsewhere, alone). Turning a rule off, raising a threshold,
 * widening working hours and any change of where alerts go are asked for (202) and run once another
 * operator approved them; strengthening passes alone. Runs on both engines.
 */
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type AuditTables, createAlertService } from '../src/audit/index.ts';
import { normaliseEmail } from '../src/identity/index.ts';
import { systemContext } from '../src/platform/context.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { actingAsOperator, operatorSession } from './access-helpers.ts';
import { buildTestApp, fakeClock, type TestApp } from './helpers.ts';

const url = '/api/v1/audit/alert-settings';
const clock = fakeClock(new Date());
let t: TestApp;
type Op = Awaited<ReturnType<typeof operatorSession>>;
let alice: Op;
let bob: Op;

type Settings = {
  rules: Record<string, Record<string, number | boolean>>;
  workingHours: { timeZone: string; days: number[]; start: string; end: string } | null;
  channels: { emails: string[]; webhookUrl: string | null };
};
const current = async (): Promise<Settings> => (await t.app.inject({ url, headers: t.asOperator })).json();
const put = (who: { headers: Record<string, string> }, payload: Settings) =>
  t.app.inject({ method: 'PUT', url, headers: who.headers, payload });
const platform = (path: string, who: { headers: Record<string, string> }, payload?: object) =>
  t.app.inject({
    method: 'POST',
    url: `/api/v1/access/platform-approvals/${path}`,
    headers: who.headers,
    ...(payload ? { payload } : {}),
  });

async function platformEvents(action: string) {
  const rows = await t.db.withSystem<AuditTables, { actor_id: string | null; details: unknown }[]>((tx) =>
    tx
      .selectFrom('audit_events')
      .select(['actor_id', 'details'])
      .where('tenant_id', 'is', null)
      .where('action', '=', action)
      .orderBy('chain_seq')
      .execute(),
  );
  return rows.map((r) => ({
    actorId: r.actor_id,
    details: (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, unknown>,
  }));
}

/** A weakening asked for by alice: 202, nothing changed; returns the request. */
async function asked(next: Settings) {
  const before = await current();
  const res = await put(alice, next);
  expect(res.statusCode, res.body).toBe(202);
  expect(res.json().approval).toMatchObject({
    action: 'audit.platform-alerts.weaken',
    status: 'pending',
    requestedBy: { type: 'operator', id: alice.operatorId },
  });
  expect(await current()).toEqual(before);
  return res.json().approval as { id: string; params: Settings; summary: string };
}

beforeAll(async () => {
  t = await buildTestApp({ clock, env: { OUTBOUND_ALLOW_PRIVATE: '127.0.0.1/32' } });
  alice = await operatorSession(t, 'alice@ops.test', clock);
  bob = await operatorSession(t, 'bob@ops.test', clock);
});
afterAll(async () => {
  await t?.close();
});

describe("weakening the platform's alerting", () => {
  it('turning a rule off waits for a second operator, then runs once (was: one operator alone)', async () => {
    const next = await current();
    next.rules['signin.failures'] = { ...next.rules['signin.failures'], enabled: false };
    const approval = await asked(next);
    expect(approval.summary).toContain('signin.failures off');

    const self = await platform(`${approval.id}/approve`, alice);
    expect(self.statusCode).toBe(403);
    expect(self.json().code).toBe('self_approval');
    expect((await platform(`${approval.id}/approve`, bob)).statusCode).toBe(200);
    const run = await platform(`${approval.id}/execute`, alice, { params: approval.params });
    expect(run.statusCode, run.body).toBe(200);
    expect(run.json().result.rules['signin.failures'].enabled).toBe(false);
    expect((await current()).rules['signin.failures']?.enabled).toBe(false);
    expect((await platform(`${approval.id}/execute`, alice, { params: approval.params })).statusCode).toBe(
      409,
    );
    const updated = (await platformEvents('audit.alert_settings.updated')).at(-1);
    expect(updated).toMatchObject({
      actorId: alice.operatorId,
      details: { approval: approval.id, approvedBy: bob.operatorId, weakened: 'signin.failures off' },
    });

    // Turning it back on is stronger: one operator, at once.
    next.rules['signin.failures'] = { ...next.rules['signin.failures'], enabled: true };
    expect((await put(alice, next)).statusCode).toBe(200);
  });

  // The action's transaction rolled back by a deadlock ran nothing: the approval must stay usable, not be
  // marked failed while the answer says "send it again" (review).
  it('a run rolled back by a deadlock gives the approval back; run again, it runs once', async () => {
    const next = await current();
    next.rules['signin.failures'] = { ...next.rules['signin.failures'], enabled: false };
    const approval = await asked(next);
    expect((await platform(`${approval.id}/approve`, bob)).statusCode).toBe(200);
    const def = t.app.services.access.critical.action('audit.platform-alerts.weaken');
    if (!def?.executePlatform) throw new Error('no executor');
    const deadlock = Object.assign(new Error('deadlock detected'), { code: '40P01', severity: 'ERROR' });
    const spy = vi.spyOn(def, 'executePlatform').mockRejectedValueOnce(deadlock);
    try {
      const conflicted = await platform(`${approval.id}/execute`, alice, { params: approval.params });
      expect(conflicted.statusCode, conflicted.body).toBe(409);
      expect(conflicted.json().code).toBe('execution_conflict');
    } finally {
      spy.mockRestore();
    }
    expect((await platformEvents('access.approval.conflicted')).at(-1)).toMatchObject({
      actorId: alice.operatorId,
    });
    const run = await platform(`${approval.id}/execute`, alice, { params: approval.params });
    expect(run.statusCode, run.body).toBe(200);
    expect((await current()).rules['signin.failures']?.enabled).toBe(false);
    next.rules['signin.failures'] = { ...next.rules['signin.failures'], enabled: true };
    expect((await put(alice, next)).statusCode).toBe(200);
  });

  // The gate writes its summary against the settings it read; a change committed before the request
  // is recorded must not become the basis its approved run writes over unnamed (review).
  it('is recorded only against the settings its summary was written on (409 state_changed otherwise)', async () => {
    const seen = await current();
    const next = structuredClone(seen);
    next.rules['signin.failures'] = { ...next.rules['signin.failures'], enabled: false };
    const what = {
      action: 'audit.platform-alerts.weaken',
      params: next,
      summary: "Weaken the platform's alerting: signin.failures off",
      // As the gate would have read it before another operator turned export.mass off meanwhile.
      seen: {
        ...seen,
        rules: {
          ...seen.rules,
          'export.mass': { ...seen.rules['export.mass'], enabled: !seen.rules['export.mass']?.enabled },
        },
      },
    } as never;
    const asker = actingAsOperator(alice.operatorId);
    const requests = async () => (await platformEvents('access.approval.requested')).length;
    const before = await requests();
    await expect(
      t.app.services.access.platformApprovals.request(asker, what, 'platform-alerts:write'),
    ).rejects.toMatchObject({ code: 'state_changed' });
    expect(await requests()).toBe(before);
    // Against the settings as they are, it is recorded.
    const recorded = await t.app.services.access.platformApprovals.request(
      asker,
      { ...(what as object), seen } as never,
      'platform-alerts:write',
    );
    expect(recorded).toMatchObject({ status: 'pending' });
  });

  it('a higher threshold, a shorter window, a longer look-back are weaker; the opposite passes alone', async () => {
    const base = await current();
    for (const [rule, field, delta] of [
      ['signin.failures', 'perAccount', +1],
      ['export.mass', 'windowSeconds', -60],
      ['signin.new_location', 'lookbackDays', +1],
    ] as const) {
      const weaker = structuredClone(base);
      (weaker.rules[rule] as Record<string, number>)[field] = Number(base.rules[rule]?.[field]) + delta;
      expect((await asked(weaker)).summary).toContain(`${rule}.${field}`);
      const stronger = structuredClone(base);
      (stronger.rules[rule] as Record<string, number>)[field] = Number(base.rules[rule]?.[field]) - delta;
      const saved = await put(alice, stronger);
      expect(saved.statusCode, saved.body).toBe(200);
      expect((await put(alice, base)).statusCode).toBe(202);
      // Back to the base through the platform's own service: not what this test is about.
      await directly(base);
    }
  });

  it('working hours: setting or narrowing them passes alone; widening, another zone or removing them is asked', async () => {
    const base = await current();
    const hours = { timeZone: 'Europe/Berlin', days: [1, 2, 3, 4, 5], start: '08:00', end: '18:00' };
    expect((await put(alice, { ...base, workingHours: hours })).statusCode).toBe(200);
    const narrower = { ...hours, days: [1, 2, 3], start: '09:00' };
    expect((await put(alice, { ...base, workingHours: narrower })).statusCode).toBe(200);
    await asked({ ...base, workingHours: hours });
    await asked({ ...base, workingHours: { ...narrower, timeZone: 'Asia/Tokyo' } });
    await asked({ ...base, workingHours: { ...narrower, start: '22:00', end: '02:00' } });
    await asked({ ...base, workingHours: null });
  });

  it('any change of where alerts go is asked; a new webhook secret goes to the requester only when it runs', async () => {
    const base = await current();
    const hook = 'http://127.0.0.1:9/alerts';
    const approval = await asked({ ...base, channels: { emails: [], webhookUrl: hook } });
    expect(JSON.stringify(approval)).not.toMatch(/whsec_/);
    expect((await platform(`${approval.id}/approve`, bob)).statusCode).toBe(200);
    const run = await platform(`${approval.id}/execute`, alice, { params: approval.params });
    expect(run.statusCode, run.body).toBe(200);
    expect(run.json().result.webhookSecret).toMatch(/^whsec_/);
    expect((await current()).channels.webhookUrl).toBe(hook);
    const after = await current();
    await asked({ ...after, channels: { emails: ['secops@ops.test'], webhookUrl: hook } });
    await asked({ ...after, channels: { emails: [], webhookUrl: null } });
    await asked({ ...after, channels: { emails: [], webhookUrl: 'http://127.0.0.1:10/alerts' } });
  });

  it('an approved weakening does not overwrite a change made after it was asked', async () => {
    const base = await current();
    const weaker = structuredClone(base);
    weaker.rules['read.mass'] = { ...weaker.rules['read.mass'], enabled: false };
    const approval = await asked(weaker);
    const stronger = structuredClone(base);
    stronger.rules['export.mass'] = { ...stronger.rules['export.mass'], threshold: 2 };
    expect((await put(alice, stronger)).statusCode).toBe(200);
    bob.headers = await bob.signInAgain();
    alice.headers = await alice.signInAgain();
    expect((await platform(`${approval.id}/approve`, bob)).statusCode).toBe(200);
    const run = await platform(`${approval.id}/execute`, alice, { params: approval.params });
    expect(run.statusCode, run.body).toBe(409);
    expect(run.json().code).toBe('state_changed');
    expect(await current()).toEqual(stronger);
    expect((await platformEvents('access.approval.state_changed')).length).toBeGreaterThan(0);
  });

  it('the write decides again: a weakening reaching the service unapproved is refused, changing nothing', async () => {
    const before = await current();
    const weaker = structuredClone(before);
    weaker.rules['protect.incident'] = { enabled: false };
    const failed = directly(weaker, false);
    await expect(failed).rejects.toMatchObject({ code: 'alert_settings_changed' });
    expect(await current()).toEqual(before);
  });
});

/**
 * The platform's alert service of this app's database, called as the route would (`approved`: with an
 * approval whose re-check stands, as an approved run passes it).
 */
function directly(settings: Settings, approved = true) {
  const alerts = createAlertService({
    db: t.db,
    clock,
    box: createSecretBox(deriveKey(Buffer.alloc(32), 'audit-alerts')),
    normaliseEmail,
  });
  const approval = {
    guard: async () => {},
    approvalId: '00000000-0000-4000-8000-000000000000',
    approvedBy: null,
  };
  return alerts.updateSettings(
    null,
    systemContext('test'),
    settings as Parameters<typeof alerts.updateSettings>[2],
    ...(approved ? [approval] : []),
  );
}
