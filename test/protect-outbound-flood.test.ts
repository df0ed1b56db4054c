/**
 * Refusals a tenant admin can multiply. Protect sampled `protect.outbound.refused` into the trail once a
 * minute per purpose, HOST and reason, remembering every key in a map that only grew, and the rule raised
 * one platform `protect.incident` alert per host. A tenant's alert webhook pointed at a server that
 * redirects to a new hostname resolving to a private address on every attempt (or at many such names)
 * so grew the node's memory without bound and paged the platform once per hostname. Now a request made
 * for a tenant is sampled and alerted per tenant (one event a minute, one open alert), and the sampling
 * memory is bounded (src/protect/audit-sampler.ts).
 */
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AuditTables, createAlertEngine } from '../src/audit/index.ts';
import { createAuditSampler } from '../src/protect/audit-sampler.ts';
import { createProtection, OutboundRefusedError, type Protection } from '../src/protect/index.ts';
import { createTestDatabase, engineUnderTest, fakeClock, type TestDatabase, testConfig } from './helpers.ts';

const clock = fakeClock(new Date('2026-07-01T12:00:00Z'));
let database: TestDatabase;
let protection: Protection;

beforeAll(async () => {
  database = await createTestDatabase();
  protection = createProtection({
    config: testConfig(),
    db: database.db,
    clock,
    log: pino({ level: 'silent' }),
    // Every name under attacker.test resolves to a private address: refused before any connection.
    resolve: async (host) => (host.endsWith('.attacker.test') ? [{ address: '10.0.0.1', family: 4 }] : []),
  });
});
afterAll(async () => {
  await protection?.close();
  await database?.close();
});

/** A tenant's alert webhook sent to `host`, as the delivery job sends it; refused. */
async function webhookTo(tenantId: string, host: string) {
  const error = await protection.outbound
    .request('alerts', `http://${host}:9/hook`, { method: 'POST', body: '{}', tenantId })
    .then(
      () => null,
      (e: unknown) => e,
    );
  expect(error).toBeInstanceOf(OutboundRefusedError);
}

const refusedEvents = async () => {
  // The events are written in the background; the flush waits for them.
  await protection.flushBlockCounts();
  const rows = await database.db.withSystem<AuditTables, { details: unknown }[]>((tx) =>
    tx
      .selectFrom('audit_events')
      .select('details')
      .where('action', '=', 'protect.outbound.refused')
      .execute(),
  );
  return rows.map(
    (r) => (typeof r.details === 'string' ? JSON.parse(r.details) : r.details) as Record<string, string>,
  );
};

describe(`outbound refusals made for a tenant (${engineUnderTest})`, () => {
  it('are sampled and alerted per tenant, not once per hostname it can name', async () => {
    const engine = createAlertEngine({ db: database.db, clock, isStaff: async () => false });
    const [acme, globex] = [randomUUID(), randomUUID()];
    for (let i = 0; i < 40; i++) await webhookTo(acme, `h${i}.attacker.test`);
    await webhookTo(globex, 'hook.attacker.test');

    const events = await refusedEvents();
    expect(events.map((e) => e.tenant).sort()).toEqual([acme, globex].sort());
    expect(events.find((e) => e.tenant === acme)).toMatchObject({
      purpose: 'alerts',
      host: 'h0.attacker.test',
      reason: 'address_private',
    });
    const raised = await engine.evaluateChain(null);
    expect(raised.map((a) => a.keys).sort()).toEqual(
      [[`outbound:alerts:tenant:${acme}`], [`outbound:alerts:tenant:${globex}`]].sort(),
    );

    // A minute later, more hosts: one more event for the tenant, added to its open alert, no new page.
    clock.advance(61_000);
    for (let i = 40; i < 60; i++) await webhookTo(acme, `h${i}.attacker.test`);
    expect(await refusedEvents()).toHaveLength(3);
    expect(await engine.evaluateChain(null)).toEqual([]);
  });
});

describe('the audit sampler', () => {
  it('remembers at most its maximum of keys, and forgets keys past the longest window', () => {
    const at = fakeClock(new Date('2026-07-01T00:00:00Z'));
    const sampler = createAuditSampler(at, { maxKeys: 1000, maxWindowMs: 600_000 });
    for (let i = 0; i < 5000; i++) expect(sampler.admit(`host:${i}`, 60_000)).toBe(true);
    expect(sampler.size).toBe(1000);
    // Within its window a key is not admitted again; the newest are the ones kept.
    expect(sampler.admit('host:4999', 60_000)).toBe(false);
    at.advance(600_000);
    expect(sampler.admit('host:new', 60_000)).toBe(true);
    expect(sampler.size).toBe(1);
  });
});
