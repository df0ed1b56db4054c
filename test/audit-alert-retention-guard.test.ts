/**
 * Security review (2026-11-28): the alert-retention guard of migrations 0036/0055/0082 ("the app role may
 * delete alerts only within those bounds ... whatever the caller's cutoff") did not hold against the app
 * role; migration 0087 makes it.
 *  (a) The guard trusts status, acknowledged_at and last_seen_at, and the app role has UPDATE on every
 *      column of audit_alerts (0033): it acknowledges and back-dates an open, fresh alert, then deletes it.
 *      A pending delivery is no obstacle either: the system scope may UPDATE/DELETE any delivery row.
 *  (b) audit_alert_prune_floor() (0082) has no pinned search_path and reads `audit_retention` by its bare
 *      name: the app role's own TEMP table of that name stands in for it (pg_temp is searched first for
 *      relations), so a tenant keeping 600 days loses a 100-day-old acknowledged alert.
 * Each test expects the guard's documented refusal (both failed before 0087). PGlite and PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { asTenantId } from '../src/platform/db/index.ts';
import { createTestDatabase, type TestDatabase } from './helpers.ts';

const DAY = 86_400_000;
const now = Date.now();
const ago = (days: number) => new Date(now - days * DAY);
let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

async function alert(tenantId: string, status: 'open' | 'acknowledged', daysAgo: number, pending = false) {
  const id = randomUUID();
  await t.db.withTenant(asTenantId(tenantId), async (tx) => {
    await sql`INSERT INTO audit_alerts (id, tenant_id, rule, severity, keys, summary, status, occurrences,
        first_event_id, last_event_id, raised_at, last_seen_at, acknowledged_at, acknowledged_by)
      VALUES (${id}, ${tenantId}, 'signin.failures', 'high', ARRAY['chain'], 'evidence', ${status}, 1,
        ${randomUUID()}, ${randomUUID()}, ${ago(daysAgo + 1)}, ${ago(daysAgo)},
        ${status === 'acknowledged' ? ago(daysAgo) : null}, ${status === 'acknowledged' ? 'user:u-1' : null})`.execute(
      tx,
    );
    if (pending) {
      await sql`INSERT INTO audit_alert_deliveries (alert_id, channel, destination, tenant_id, payload,
          enqueued_at, attempts, next_attempt_at)
        VALUES (${id}, 'email', 'soc@example.test', ${tenantId}, '{}'::jsonb, ${ago(0)}, 0, ${ago(0)})`.execute(
        tx,
      );
    }
  });
  return id;
}

const exists = (id: string) =>
  t.engine.asOwner(
    async (o) => (await o.query('SELECT 1 FROM audit_alerts WHERE id = $1', [id])).length === 1,
  );

describe('alert retention guard against the app role', () => {
  it('(a) an open alert raised today with a pending delivery cannot be deleted, even after UPDATEs', async () => {
    const tenantId = randomUUID();
    const id = await alert(tenantId, 'open', 0, true);
    // System scope (no tenant): the delivery queue is the app role's to change.
    await t.db.withSystem((tx) =>
      sql`UPDATE audit_alert_deliveries SET failed_at = now() WHERE alert_id = ${id}`.execute(tx),
    );
    const attempt = t.db.withTenant(asTenantId(tenantId), async (tx) => {
      await sql`UPDATE audit_alerts SET status = 'acknowledged', acknowledged_at = '2000-01-01',
          last_seen_at = '2000-01-01' WHERE id = ${id}`.execute(tx);
      await sql`DELETE FROM audit_alerts WHERE id = ${id}`.execute(tx);
    });
    await expect(attempt).rejects.toThrow(
      /cannot be acknowledged before it was raised|its last match cannot move back/,
    );
    expect(await exists(id)).toBe(true);
  });

  it('(a) nor by moving its raise time back first, or by taking an acknowledgement back', async () => {
    const tenantId = randomUUID();
    const id = await alert(tenantId, 'open', 0);
    const asApp = (statement: ReturnType<typeof sql>) =>
      t.db.withTenant(asTenantId(tenantId), (tx) => statement.execute(tx));
    await expect(
      asApp(sql`UPDATE audit_alerts SET raised_at = '1999-01-01' WHERE id = ${id}`),
    ).rejects.toThrow(/raise time cannot change/);
    // An honest acknowledgement goes through; it is not undone or re-dated afterwards.
    await asApp(
      sql`UPDATE audit_alerts SET status = 'acknowledged', acknowledged_at = now() WHERE id = ${id}`,
    );
    await expect(asApp(sql`UPDATE audit_alerts SET status = 'open' WHERE id = ${id}`)).rejects.toThrow(
      /not taken back or re-dated/,
    );
    await expect(
      asApp(sql`UPDATE audit_alerts SET acknowledged_at = '2001-01-01' WHERE id = ${id}`),
    ).rejects.toThrow(/not taken back or re-dated/);
    await expect(asApp(sql`DELETE FROM audit_alerts WHERE id = ${id}`)).rejects.toThrow(/cannot be deleted/);
    expect(await exists(id)).toBe(true);
  });

  it('(b) a temporary audit_retention table does not lower the floor of a tenant keeping 600 days', async () => {
    const tenantId = randomUUID();
    await t.db.withTenant(asTenantId(tenantId), (tx) =>
      sql`INSERT INTO audit_retention (tenant_id, days, updated_at) VALUES (${tenantId}, 600, now())`.execute(
        tx,
      ),
    );
    const id = await alert(tenantId, 'acknowledged', 100);
    // Without the shadow, the guard refuses (retention 600 days):
    await expect(
      t.db.withTenant(asTenantId(tenantId), (tx) =>
        sql`DELETE FROM audit_alerts WHERE id = ${id}`.execute(tx),
      ),
    ).rejects.toThrow(/cannot be deleted/);
    const attempt = t.db.withTenant(asTenantId(tenantId), async (tx) => {
      await sql`CREATE TEMP TABLE audit_retention (tenant_id uuid, days int, previous_days int,
          changed_at timestamptz) ON COMMIT DROP`.execute(tx);
      await sql`INSERT INTO audit_retention VALUES (${tenantId}, 30, NULL, NULL)`.execute(tx);
      await sql`DELETE FROM audit_alerts WHERE id = ${id}`.execute(tx);
    });
    await expect(attempt).rejects.toThrow(/cannot be deleted/);
    expect(await exists(id)).toBe(true);
  });
});
