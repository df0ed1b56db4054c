/**
 * Retention of alerts: the pruning job deletes acknowledged alerts older than their chain's retention
 * (audited) with their given-up deliveries, keeps open, recent and still-undelivered ones, and the app role
 * cannot delete an open or a recent alert, or one with a delivery pending, however it asks. Runs on PGlite and, with DATABASE_URL, PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneAlerts } from '../src/audit/alert-prune.ts';
import { checkpointSigner, createRetentionService, pruneAllChains, trustedKeys } from '../src/audit/index.ts';
import { inChain } from '../src/audit/store.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { createTestDatabase, type TestDatabase } from './helpers.ts';

const DAY = 86_400_000;
const realNow = Date.now();
const clock = { now: () => new Date(realNow) };
const keys = trustedKeys([checkpointSigner(Buffer.from('audit-alert-retention-test-root-key')).publicKey]);
const pruner = systemContext('audit-retention');
let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

interface AlertAt {
  status: 'open' | 'acknowledged';
  /** Days ago it was acknowledged (and raised), and last matched. */
  acknowledged: number;
  lastSeen?: number;
  pendingDelivery?: boolean;
  /** A delivery given up at its maximum age (migration 0042). */
  failedDelivery?: boolean;
}

async function alert(tenantId: string | null, at: AlertAt): Promise<string> {
  const id = randomUUID();
  const ago = (days: number) => new Date(realNow - days * DAY);
  await inChain(t.db, tenantId, async (tx) => {
    await sql`INSERT INTO audit_alerts (id, tenant_id, rule, severity, keys, summary, status, occurrences,
        first_event_id, last_event_id, raised_at, last_seen_at, acknowledged_at, acknowledged_by)
      VALUES (${id}, ${tenantId}, 'signin.failures', 'medium', ARRAY['chain'], 'test', ${at.status}, 1,
        ${randomUUID()}, ${randomUUID()}, ${ago(at.acknowledged + 1)}, ${ago(at.lastSeen ?? at.acknowledged)},
        ${at.status === 'acknowledged' ? ago(at.acknowledged) : null},
        ${at.status === 'acknowledged' ? 'user:u-1' : null})`.execute(tx);
    if (at.pendingDelivery) {
      await sql`INSERT INTO audit_alert_deliveries (alert_id, channel, destination, tenant_id, payload,
          enqueued_at, attempts, next_attempt_at, last_error)
        VALUES (${id}, 'email', 'soc@example.test', ${tenantId}, '{}'::jsonb, ${ago(at.acknowledged + 1)}, 40,
          ${new Date(realNow)}, 'HTTP 503')`.execute(tx);
    }
    if (at.failedDelivery) {
      await sql`INSERT INTO audit_alert_deliveries (alert_id, channel, destination, tenant_id, payload,
          enqueued_at, attempts, next_attempt_at, last_error, failed_at)
        VALUES (${id}, 'webhook', 'https://hooks.example.test/a', ${tenantId}, '{}'::jsonb,
          ${ago(at.acknowledged + 1)}, 80, ${ago(at.acknowledged - 2)}, 'HTTP 503', ${ago(at.acknowledged - 2)})`.execute(
        tx,
      );
    }
  });
  return id;
}

const alertIds = (tenantId: string | null) =>
  t.engine.asOwner(async (o) => {
    const rows = await o.query<{ id: string }>(
      'SELECT id FROM audit_alerts WHERE tenant_id IS NOT DISTINCT FROM $1 ORDER BY id',
      [tenantId],
    );
    return rows.map((r) => r.id).sort();
  });
const prunedEvents = (tenantId: string | null) =>
  t.engine.asOwner((o) =>
    o.query<{ details: { alerts: number } }>(
      `SELECT details FROM audit_events WHERE action = 'audit.alert.pruned' AND tenant_id IS NOT DISTINCT FROM $1`,
      [tenantId],
    ),
  );

describe('alert retention', () => {
  it('the pruning job deletes old acknowledged alerts of every chain by its retention, audited', async () => {
    const acme = randomUUID();
    const old = await alert(acme, { status: 'acknowledged', acknowledged: 500 });
    const stillMatching = await alert(acme, { status: 'acknowledged', acknowledged: 500, lastSeen: 10 });
    const open = await alert(acme, { status: 'open', acknowledged: 500 });
    const undelivered = await alert(acme, {
      status: 'acknowledged',
      acknowledged: 500,
      pendingDelivery: true,
    });
    const recent = await alert(acme, { status: 'acknowledged', acknowledged: 100 });
    // A tenant that keeps 600 days keeps its 500-day-old alert.
    const longer = randomUUID();
    await t.db.withTenant(asTenantId(longer), (tx) =>
      sql`INSERT INTO audit_retention (tenant_id, days, updated_at) VALUES (${longer}, 600, now())`.execute(
        tx,
      ),
    );
    const keptByRetention = await alert(longer, { status: 'acknowledged', acknowledged: 500 });
    const platformOld = await alert(null, { status: 'acknowledged', acknowledged: 500 });
    const platformBefore = await alertIds(null);

    const retention = createRetentionService({ db: t.db, clock, defaultDays: 400, platformDays: 400 });
    const result = await pruneAllChains(
      {
        db: t.db,
        clock,
        keys,
        daysFor: (id) => retention.daysFor(id),
        async *tenantIds() {
          yield* [acme, longer];
        },
      },
      pruner,
    );
    expect(result.failures).toEqual([]);
    expect(result.alerts).toBe(2);
    expect(await alertIds(acme)).toEqual([stillMatching, open, undelivered, recent].sort());
    expect(await alertIds(longer)).toEqual([keptByRetention]);
    expect(await alertIds(null)).toEqual(platformBefore.filter((id) => id !== platformOld));
    expect(await alertIds(null)).not.toContain(platformOld);
    // The undelivered alert's delivery is still queued.
    const queued = await t.engine.asOwner((o) =>
      o.query('SELECT 1 FROM audit_alert_deliveries WHERE alert_id = $1', [undelivered]),
    );
    expect(queued).toHaveLength(1);
    expect((await prunedEvents(acme)).map((e) => e.details.alerts)).toEqual([1]);
    expect((await prunedEvents(null)).map((e) => e.details.alerts)).toEqual([1]);
    expect(await prunedEvents(longer)).toEqual([]);
    expect(await alertIds(acme)).not.toContain(old);

    // A second run finds nothing and records nothing more.
    expect(await pruneAlerts(t.db, clock, pruner, acme, new Date(realNow - 400 * DAY))).toBe(0);
    expect(await prunedEvents(acme)).toHaveLength(1);
  });

  it('a delivery given up goes with its alert; a pending one keeps it, even against a direct delete', async () => {
    const tenantId = randomUUID();
    const gaveUp = await alert(tenantId, { status: 'acknowledged', acknowledged: 500, failedDelivery: true });
    const pending = await alert(tenantId, {
      status: 'acknowledged',
      acknowledged: 500,
      pendingDelivery: true,
    });
    expect(await pruneAlerts(t.db, clock, pruner, tenantId, new Date(realNow - 400 * DAY))).toBe(1);
    expect(await alertIds(tenantId)).toEqual([pending]);
    const left = await t.engine.asOwner((o) =>
      o.query<{ alert_id: string }>('SELECT alert_id FROM audit_alert_deliveries WHERE alert_id = ANY($1)', [
        [gaveUp, pending],
      ]),
    );
    expect(left.map((r) => r.alert_id)).toEqual([pending]);
    // Past the pruning job's own check: the database refuses to cascade to a pending delivery.
    await expect(
      t.db.withTenant(asTenantId(tenantId), (tx) =>
        sql`DELETE FROM audit_alerts WHERE id = ${pending}`.execute(tx),
      ),
    ).rejects.toThrow(/has a delivery pending/);
    expect(await alertIds(tenantId)).toEqual([pending]);
  });

  it('a cutoff in the future is clamped to the retention floor: nothing recent or open goes', async () => {
    const tenantId = randomUUID();
    const recent = await alert(tenantId, { status: 'acknowledged', acknowledged: 10 });
    const open = await alert(tenantId, { status: 'open', acknowledged: 90 });
    // The tenant has no own setting: the floor is the database's default (400 days, migration 0082).
    const withinDefault = await alert(tenantId, { status: 'acknowledged', acknowledged: 45 });
    const old = await alert(tenantId, { status: 'acknowledged', acknowledged: 450 });
    expect(await pruneAlerts(t.db, clock, pruner, tenantId, new Date('9999-01-01'))).toBe(1);
    expect(await alertIds(tenantId)).toEqual([recent, open, withinDefault].sort());
    expect(await alertIds(tenantId)).not.toContain(old);
  });

  it('the app role cannot delete an open or a recent alert directly, nor another tenant’s', async () => {
    const tenantId = randomUUID();
    const recent = await alert(tenantId, { status: 'acknowledged', acknowledged: 10 });
    const open = await alert(tenantId, { status: 'open', acknowledged: 400 });
    for (const id of [recent, open]) {
      await expect(
        t.db.withTenant(asTenantId(tenantId), (tx) =>
          sql`DELETE FROM audit_alerts WHERE id = ${id}`.execute(tx),
        ),
      ).rejects.toThrow(/cannot be deleted/);
    }
    const other = randomUUID();
    const theirs = await alert(other, { status: 'acknowledged', acknowledged: 500 });
    const deleted = await t.db.withTenant(asTenantId(tenantId), (tx) =>
      sql`DELETE FROM audit_alerts WHERE id = ${theirs}`.execute(tx),
    );
    expect(deleted.numAffectedRows).toBe(0n);
    expect(await alertIds(tenantId)).toEqual([recent, open].sort());
    expect(await alertIds(other)).toEqual([theirs]);
  });
});
