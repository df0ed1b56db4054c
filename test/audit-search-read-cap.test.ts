/**
 * The search read cap: where a tenant's exports need a second approver, one person may page through at
 * most AUDIT_SEARCH_EVENTS_PER_DAY events a day by search (else paging would bypass the approval).
 */
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAuditEvents } from '../src/audit/index.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const CAP = 25;
// Ten minutes before midnight UTC: the day turns within the sessions' idle limit.
const clock = fakeClock(new Date('2026-03-02T23:50:00Z'));
const system = { actor: { type: 'system' as const, id: 'test' }, ip: null, userAgent: null, requestId: null };
let t: TestApp;
let tenantId: string;
let ann: Person;
let bob: Person;

beforeAll(async () => {
  t = await buildTestApp({ clock, env: { AUDIT_SEARCH_EVENTS_PER_DAY: String(CAP) } });
  tenantId = (await seedTenant(t, 'acme')).id;
  ann = await tenantAdmin(t, 'acme', 'ann@acme.test', clock);
  bob = await tenantAdmin(t, 'acme', 'bob@acme.test', clock);
  const events = Array.from({ length: 40 }, (_, n) => ({
    tenantId,
    action: 'identity.signin.password' as const,
    outcome: 'success' as const,
    details: { n },
  }));
  await t.db.withTenant(asTenantId(tenantId), (tx) => recordAuditEvents(tx, clock, system, events));
});
afterAll(async () => {
  await t?.close();
});

const page = (who: Person, limit: number) =>
  t.app.inject({
    url: `/api/v1/t/acme/audit/events?action=identity.signin.password&limit=${limit}`,
    headers: who.headers,
  });

/** [reader, events] per row of the tenant's read counts, by reader. */
const readsOnRecord = async () =>
  t.db.withTenant(asTenantId(tenantId), async (tx) => {
    const { rows } = await sql<{ actor_id: string; events: number }>`
      SELECT actor_id, events FROM audit_search_reads ORDER BY actor_id`.execute(tx);
    return rows.map((r): [string, number] => [r.actor_id, r.events]);
  });

describe('search read cap', () => {
  it('answers pages up to the cap, refuses the page that would pass it and counts nothing for it', async () => {
    expect((await page(ann, 10)).json().items).toHaveLength(10);
    expect((await page(ann, 10)).json().items).toHaveLength(10);
    const refused = await page(ann, 10);
    expect(refused.statusCode, refused.body).toBe(403);
    expect(refused.headers['content-type']).toContain('application/problem+json');
    expect(refused.json().code).toBe('read_cap_reached');
    expect(refused.json().detail).toContain('limit=5');
    expect(refused.json().detail).toContain('export');
    expect(await readsOnRecord()).toEqual([[ann.userId, 20]]);
    // What is left can still be read; then nothing more today.
    expect((await page(ann, 5)).json().items).toHaveLength(5);
    expect((await page(ann, 1)).json().code).toBe('read_cap_reached');
    // Each person has their own count.
    expect((await page(bob, 25)).json().items).toHaveLength(25);
    const counted = new Map(await readsOnRecord());
    expect(counted.get(ann.userId)).toBe(25);
    expect(counted.get(bob.userId)).toBe(25);
  });

  it('audits each refusal as a denial by the reader', async () => {
    const refusals = await t.db.withTenant(asTenantId(tenantId), async (tx) => {
      const { rows } = await sql<{ actor_id: string; n: number }>`
        SELECT actor_id, count(*)::int AS n FROM audit_events
        WHERE action = 'access.request.denied' AND details->>'reason' = 'read_cap_reached'
        GROUP BY actor_id`.execute(tx);
      return rows;
    });
    expect(refusals).toEqual([{ actor_id: ann.userId, n: 2 }]);
  });

  it('starts again the next UTC day and forgets the earlier days', async () => {
    clock.advance(15 * 60_000);
    expect((await page(ann, 10)).statusCode).toBe(200);
    // Ann's first page today replaced her row of yesterday; Bob has not searched today yet.
    const counted = new Map(await readsOnRecord());
    expect(counted.get(ann.userId)).toBe(10);
    expect(counted.get(bob.userId)).toBe(25);
    const days = await t.db.withTenant(asTenantId(tenantId), async (tx) => {
      const { rows } = await sql<{ day: string }>`
        SELECT day::text AS day FROM audit_search_reads WHERE actor_id = ${ann.userId}`.execute(tx);
      return rows.map((r) => r.day);
    });
    expect(days).toEqual(['2026-03-03']);
  });

  it('does not cap a tenant whose exports need no second approver', async () => {
    const { access } = t.app.services;
    const current = await access.settings.get(tenantId);
    await access.settings.update(tenantId, system, {
      ...current,
      fourEyesActions: current.fourEyesActions.filter((a) => a !== 'audit.export'),
    });
    try {
      for (let i = 0; i < 3; i++) expect((await page(bob, 40)).json().items).toHaveLength(40);
    } finally {
      await access.settings.update(tenantId, system, current);
    }
    // The pages read meanwhile were not counted: Bob's day (the new one) starts now.
    expect((await page(bob, 20)).json().items).toHaveLength(20);
    expect((await page(bob, 10)).json().code).toBe('read_cap_reached');
  });
});
