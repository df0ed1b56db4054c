/**
 * The database knows the server's default retentions (security review 2026-11-27, MEDIUM; migration
 * 0082). audit_prune_chain and the alert-pruning floor used to fall back to 30 days for a tenant without
 * an own setting and for the platform chain, so the app role could delete their events (and alerts)
 * older than 30 days at once, with no audit.trail.pruned event, and verify still passed. The defaults
 * are now written by the schema owner after every migration run, from its configuration; the app role
 * can only read them. Runs on PGlite and, with DATABASE_URL, PostgreSQL.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneAlerts } from '../src/audit/alert-prune.ts';
import {
  checkpointSigner,
  createCheckpoint,
  createRetentionService,
  pruneAllChains,
  readRetentionDefaults,
  recordAuditEvent,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import { inChain } from '../src/audit/store.ts';
import { allMigrations } from '../src/migrations.ts';
import { type ActionContext, systemContext } from '../src/platform/context.ts';
import { migrate } from '../src/platform/db/index.ts';
import { ownerSettingsFrom } from '../src/runtime.ts';
import { createTestDatabase, type TestDatabase, testConfig } from './helpers.ts';

const DAY = 86_400_000;
const realNow = Date.now();
let now = realNow;
const clock = { now: () => new Date(now) };
const signer = checkpointSigner(Buffer.from('audit-retention-defaults-test-root-key'));
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };
const pruner = systemContext('audit-retention');
let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

/** `count` events of the chain at `at`, then a signed checkpoint. */
async function write(tenantId: string | null, count: number, at: number) {
  now = at;
  for (let i = 0; i < count; i++) {
    await inChain(t.db, tenantId, (tx) =>
      recordAuditEvent(tx, clock, ctx, {
        tenantId,
        action: 'tenancy.tenant.suspended',
        outcome: 'success',
        details: { n: i },
      }),
    );
  }
  await createCheckpoint(t.db, signer, clock, tenantId);
  now = realNow;
}

/** 5 events 450 days old, 5 of 150 days, 2 of now: checkpoints at 5, 10 and 12. */
async function history(tenantId: string | null) {
  await write(tenantId, 5, realNow - 450 * DAY);
  await write(tenantId, 5, realNow - 150 * DAY);
  await write(tenantId, 2, realNow);
}

const ages = async (tenantId: string | null) =>
  (
    await t.engine.asOwner((o) =>
      o.query<{ days: number }>(
        `SELECT round(extract(epoch FROM $2::timestamptz - occurred_at) / 86400)::int AS days
           FROM audit_events WHERE tenant_id IS NOT DISTINCT FROM $1 AND action = 'tenancy.tenant.suspended'
          ORDER BY chain_seq`,
        [tenantId, new Date(realNow)],
      ),
    )
  ).map((r) => r.days);

/** The reviewer's call: the app role, in the chain's scope, with a cutoff of now and every checkpoint. */
const directPrune = (tenantId: string | null) =>
  inChain(t.db, tenantId, async (tx) => {
    const { rows } = await sql<{
      events: string;
    }>`SELECT events::text FROM audit_prune_chain(${tenantId}::uuid,
        now(), NULL, false, ARRAY(SELECT seq FROM audit_checkpoints))`.execute(tx);
    return Number(rows[0]?.events);
  });

/** The server's job for one chain, with the retentions a node's configuration gives. */
const serverPrune = (tenantId: string | null, defaultDays: number, platformDays = defaultDays) => {
  const retention = createRetentionService({ db: t.db, clock, defaultDays, platformDays });
  return pruneAllChains(
    {
      db: t.db,
      clock,
      keys,
      daysFor: (id) => retention.daysFor(id),
      async *tenantIds() {
        if (tenantId !== null) yield tenantId;
      },
    },
    pruner,
  );
};

/** `rampart migrate` (or the embedded engine's start) with this configuration (runtime.ts). */
const migrateWith = (tenantDays: number, platformDays: number) =>
  migrate(
    t.engine,
    allMigrations,
    undefined,
    ownerSettingsFrom(
      testConfig({
        AUDIT_RETENTION_DAYS: String(tenantDays),
        AUDIT_PLATFORM_RETENTION_DAYS: String(platformDays),
      }),
    ),
  );

const prunedEvents = (tenantId: string | null) =>
  t.engine.asOwner((o) =>
    o.query(
      `SELECT 1 FROM audit_events WHERE action = 'audit.trail.pruned' AND tenant_id IS NOT DISTINCT FROM $1`,
      [tenantId],
    ),
  );

describe('a chain without an own retention is pruned by the database’s default', () => {
  it('the app role’s own call deletes nothing younger than the default (tenant), and the job still prunes', async () => {
    const tenantId = randomUUID();
    await history(tenantId);
    // Only the 450-day-old segment is older than the 400-day default.
    expect(await directPrune(tenantId)).toBe(5);
    expect(await ages(tenantId)).toEqual([150, 150, 150, 150, 150, 0, 0]);
    expect(await directPrune(tenantId)).toBe(0);
    // Nothing recorded that pruning: verify names it (the server's job appends audit.trail.pruned).
    expect((await verifyAuditChain(t.db, tenantId, { keys })).broken).toMatchObject({
      kind: 'deleted',
      seq: 5,
      message: expect.stringMatching(/no audit.trail.pruned event/),
    });

    // The server's job with the same default finds nothing more.
    const job = await serverPrune(tenantId, 400);
    expect(job.failures).toEqual([]);
    expect(job.events).toBe(0);
  });

  it('the same for the platform chain, whose retention the database did not know at all', async () => {
    await history(null);
    expect(await directPrune(null)).toBe(5);
    expect(await ages(null)).toEqual([150, 150, 150, 150, 150, 0, 0]);
    expect(await directPrune(null)).toBe(0);
    expect((await verifyAuditChain(t.db, null, { keys })).broken).toMatchObject({ kind: 'deleted', seq: 5 });
  });

  it('the server’s job prunes a default tenant and an own setting as before', async () => {
    const onDefault = randomUUID();
    await history(onDefault);
    const job = await serverPrune(onDefault, 400);
    expect(job.failures).toEqual([]);
    expect(job.events).toBe(5);
    expect(await ages(onDefault)).toEqual([150, 150, 150, 150, 150, 0, 0]);
    expect(await prunedEvents(onDefault)).toHaveLength(1);
    expect((await verifyAuditChain(t.db, onDefault, { keys })).broken).toBeNull();

    // An own setting of 100 days (older than 30 days, so in force) prunes past the default.
    const own = randomUUID();
    await history(own);
    await inChain(t.db, own, (tx) =>
      sql`INSERT INTO audit_retention (tenant_id, days, updated_at) VALUES (${own}, 100, now())`.execute(tx),
    );
    await t.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_retention DISABLE TRIGGER audit_retention_history');
      try {
        await o.query(
          `UPDATE audit_retention SET changed_at = changed_at - interval '31 days' WHERE tenant_id = $1`,
          [own],
        );
      } finally {
        await o.exec('ALTER TABLE audit_retention ENABLE TRIGGER audit_retention_history');
      }
    });
    const ownJob = await serverPrune(own, 400);
    expect(ownJob.failures).toEqual([]);
    expect(ownJob.events).toBe(10);
    expect(await ages(own)).toEqual([0, 0]);
    expect((await verifyAuditChain(t.db, own, { keys })).broken).toBeNull();
  });

  it('an app role’s first own setting of 30 days waits 30 days like any shortening of the default', async () => {
    const tenantId = randomUUID();
    await history(tenantId);
    // The writer says the previous retention was 30 days: the database keeps its own default instead.
    await inChain(t.db, tenantId, (tx) =>
      sql`INSERT INTO audit_retention (tenant_id, days, updated_at, previous_days)
        VALUES (${tenantId}, 30, now(), 30)`.execute(tx),
    );
    const stored = await t.engine.asOwner((o) =>
      o.query<{ previous_days: number }>('SELECT previous_days FROM audit_retention WHERE tenant_id = $1', [
        tenantId,
      ]),
    );
    expect(stored).toEqual([{ previous_days: 400 }]);
    expect(await directPrune(tenantId)).toBe(5);
    expect(await ages(tenantId)).toEqual([150, 150, 150, 150, 150, 0, 0]);
  });

  it('the app role cannot change the defaults', async () => {
    for (const statement of [
      sql`UPDATE audit_retention_defaults SET tenant_days = 30, platform_days = 30`,
      sql`DELETE FROM audit_retention_defaults`,
      sql`INSERT INTO audit_retention_defaults (only_row, tenant_days, platform_days) VALUES (false, 30, 30)`,
    ]) {
      await expect(inChain(t.db, null, (tx) => statement.execute(tx))).rejects.toThrow(/permission denied/);
    }
    const { rows } = await inChain(t.db, null, (tx) =>
      sql<{ tenant_days: number; platform_days: number }>`SELECT tenant_days, platform_days
        FROM audit_retention_defaults`.execute(tx),
    );
    expect(rows).toEqual([{ tenant_days: 400, platform_days: 400 }]);
  });
});

describe('the defaults follow the configuration of whoever migrates', () => {
  it('a node configured shorter than the database prunes by the database; the next migrate changes it', async () => {
    const tenantId = randomUUID();
    await history(tenantId);
    // The platform chain still holds the 150-day-old segment of the test above.
    expect(await ages(null)).toEqual([150, 150, 150, 150, 150, 0, 0]);
    // The database says 400 (the last migration run); this node's configuration says 100.
    const job = await serverPrune(tenantId, 100);
    expect(job.failures).toEqual([]);
    expect(await ages(tenantId)).toEqual([150, 150, 150, 150, 150, 0, 0]);
    expect(await ages(null)).toEqual([150, 150, 150, 150, 150, 0, 0]);

    try {
      // `rampart migrate` with AUDIT_RETENTION_DAYS=100, AUDIT_PLATFORM_RETENTION_DAYS=120: written as
      // the owner even with no migration pending.
      expect((await migrateWith(100, 120)).applied).toEqual([]);
      const defaults = await t.engine.asOwner((o) =>
        o.query('SELECT tenant_days, platform_days FROM audit_retention_defaults'),
      );
      expect(defaults).toEqual([{ tenant_days: 100, platform_days: 120 }]);
      // What a node compares its configuration with at start (server.ts warns when they differ).
      expect(await readRetentionDefaults(t.db)).toEqual({ tenantDays: 100, platformDays: 120 });
      const again = await serverPrune(tenantId, 100, 120);
      expect(again.failures).toEqual([]);
      expect(await ages(tenantId)).toEqual([0, 0]);
      expect(await ages(null)).toEqual([0, 0]);

      // Configured longer again: the next migration run restores it, and a direct call keeps to it.
      await migrateWith(400, 400);
      const other = randomUUID();
      await history(other);
      expect(await directPrune(other)).toBe(5);
      expect(await ages(other)).toEqual([150, 150, 150, 150, 150, 0, 0]);
    } finally {
      await migrateWith(400, 400);
    }
  });
});

describe('what a node says a default tenant keeps', () => {
  it('the longer of its configuration and the database’s default; a setting below it is a shortening', async () => {
    const tenantId = randomUUID();
    // The database says 400 (the last migration run); this node's configuration says 100.
    const retention = createRetentionService({ db: t.db, clock, defaultDays: 100, platformDays: 100 });
    expect(await retention.get(tenantId)).toEqual({ days: 400, isDefault: true });
    expect(await retention.daysFor(tenantId)).toBe(400);
    await retention.set(tenantId, ctx, 200);
    expect(await retention.get(tenantId)).toEqual({ days: 200, isDefault: false });
    const { rows } = await inChain(t.db, tenantId, (tx) =>
      sql<{ details: Record<string, unknown> }>`SELECT details FROM audit_events
        WHERE action = 'audit.retention.updated'`.execute(tx),
    );
    // Recorded as what it is: 400 days shortened to 200, which pruning uses 30 days later.
    expect(rows).toEqual([{ details: { days: 200, previousDays: 400, prunesByItFrom: expect.any(String) } }]);
  });
});

describe('alerts of a chain without an own retention', () => {
  async function alert(tenantId: string | null, acknowledgedDaysAgo: number): Promise<string> {
    const id = randomUUID();
    const ago = (days: number) => new Date(realNow - days * DAY);
    await inChain(t.db, tenantId, (tx) =>
      sql`INSERT INTO audit_alerts (id, tenant_id, rule, severity, keys, summary, status, occurrences,
          first_event_id, last_event_id, raised_at, last_seen_at, acknowledged_at, acknowledged_by)
        VALUES (${id}, ${tenantId}, 'signin.failures', 'medium', ARRAY['chain'], 'test', 'acknowledged', 1,
          ${randomUUID()}, ${randomUUID()}, ${ago(acknowledgedDaysAgo + 1)}, ${ago(acknowledgedDaysAgo)},
          ${ago(acknowledgedDaysAgo)}, 'user:u-1')`.execute(tx),
    );
    return id;
  }
  const alertIds = (tenantId: string | null) =>
    t.engine.asOwner(async (o) =>
      (
        await o.query<{ id: string }>('SELECT id FROM audit_alerts WHERE tenant_id IS NOT DISTINCT FROM $1', [
          tenantId,
        ])
      )
        .map((r) => r.id)
        .sort(),
    );

  for (const chain of ['tenant', 'platform'] as const) {
    it(`keeps them for the default, whatever the cutoff or a direct delete (${chain})`, async () => {
      const tenantId = chain === 'tenant' ? randomUUID() : null;
      const before = await alertIds(tenantId);
      const recent = await alert(tenantId, 45);
      const old = await alert(tenantId, 450);
      await expect(
        inChain(t.db, tenantId, (tx) => sql`DELETE FROM audit_alerts WHERE id = ${recent}`.execute(tx)),
      ).rejects.toThrow(/cannot be deleted/);
      expect(await pruneAlerts(t.db, clock, pruner, tenantId, new Date('9999-01-01'))).toBe(1);
      expect(await alertIds(tenantId)).toEqual([...before, recent].sort());
      expect(await alertIds(tenantId)).not.toContain(old);
    });
  }
});
