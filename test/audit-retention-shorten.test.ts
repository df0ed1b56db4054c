/**
 * Shortening the audit retention (security review, LOW):
 * - the four-eyes gate read the retention before the write, so a PUT racing an approved (or direct)
 *   lengthening wrote a shorter value without approval; the write now decides on the locked row;
 * - a shortening took effect at the next hourly prune; pruning now keeps events for the longest
 *   retention in effect during the last 30 days (the app with its clock, the database with its own).
 * The delay runs on PGlite and PostgreSQL; the race needs two connections, so PostgreSQL only.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  checkpointSigner,
  createCheckpoint,
  createRetentionService,
  pruneAllChains,
  pruneChain,
  recordAuditEvent,
  trustedKeys,
} from '../src/audit/index.ts';
import { type ActionContext, systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { tenantAdmin } from './access-helpers.ts';
import {
  buildTestApp,
  createTestDatabase,
  engineUnderTest,
  seedTenant,
  type TestApp,
  type TestDatabase,
} from './helpers.ts';
import { CHAIN_HEAD_LOCK, rowHolder } from './race-helpers.ts';

const DAY = 86_400_000;
const signer = checkpointSigner(Buffer.from('audit-retention-shorten-test-root-key'));
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };
const pruner = systemContext('audit-retention');

describe('a shortened retention takes effect for pruning only after 30 days', () => {
  let t: TestDatabase;
  let now = Date.now();
  const clock = { now: () => new Date(now) };
  beforeAll(async () => {
    t = await createTestDatabase();
  });
  afterAll(async () => {
    await t?.close();
  });

  async function write(tenantId: string, count: number, at: number) {
    const before = now;
    now = at;
    for (let i = 0; i < count; i++) {
      await t.db.withTenant(asTenantId(tenantId), (tx) =>
        recordAuditEvent(tx, clock, ctx, {
          tenantId,
          action: 'tenancy.tenant.suspended',
          outcome: 'success',
        }),
      );
    }
    await createCheckpoint(t.db, signer, clock, tenantId);
    now = before;
  }

  const count = async (tenantId: string) =>
    (
      await t.engine.asOwner((o) =>
        o.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_events WHERE tenant_id = $1', [
          tenantId,
        ]),
      )
    )[0]?.n;

  it('the next prune after shortening 400 to 30 days deletes nothing younger than 400 days', async () => {
    now = Date.now();
    const tenantId = randomUUID();
    await write(tenantId, 5, now - 100 * DAY);
    await write(tenantId, 2, now - DAY);
    const retention = createRetentionService({ db: t.db, clock, defaultDays: 400, platformDays: 400 });
    const prune = () =>
      pruneAllChains(
        {
          db: t.db,
          clock,
          keys,
          daysFor: (id) => retention.daysFor(id),
          async *tenantIds() {
            yield tenantId;
          },
        },
        pruner,
      );

    await retention.set(tenantId, ctx, 30);
    expect(await retention.get(tenantId)).toEqual({ days: 30, isDefault: false });
    expect(await retention.daysFor(tenantId)).toBe(400); // the setting shows; pruning keeps the old one
    expect((await prune()).events).toBe(0);
    // The database keeps to it too, whatever cutoff the app passes (its own clock and history).
    const direct = await pruneChain(t.db, clock, pruner, {
      tenantId,
      cutoff: new Date(now - 30 * DAY),
      keys,
    });
    expect(direct.events).toBe(0);
    expect(await count(tenantId)).toBe(8); // 7 written, one audit.retention.updated

    // The app role cannot clear or back-date the history: the database keeps it.
    await t.db.withTenant(asTenantId(tenantId), async (tx) => {
      await sql`UPDATE audit_retention SET previous_days = NULL, changed_at = '2000-01-01', days = 31`.execute(
        tx,
      );
    });
    expect(await retention.daysFor(tenantId)).toBe(400);
    expect((await pruneChain(t.db, clock, pruner, { tenantId, cutoff: new Date(now), keys })).events).toBe(0);

    // 31 days on (the database's clock cannot be faked: its change time is moved back as its owner).
    now += 31 * DAY;
    await t.engine.asOwner(async (o) => {
      // Its history trigger keeps even the owner from back-dating the change: off for this one statement.
      await o.exec('ALTER TABLE audit_retention DISABLE TRIGGER audit_retention_history');
      try {
        await o.query(
          `UPDATE audit_retention SET changed_at = changed_at - interval '31 days' WHERE tenant_id = $1`,
          [tenantId],
        );
      } finally {
        await o.exec('ALTER TABLE audit_retention ENABLE TRIGGER audit_retention_history');
      }
    });
    expect(await retention.daysFor(tenantId)).toBe(31);
    expect((await prune()).events).toBe(5);
  });

  it('a lengthening applies at once, and a later shortening keeps the longest of the last 30 days', async () => {
    now = Date.now();
    const tenantId = randomUUID();
    await write(tenantId, 1, now);
    const retention = createRetentionService({ db: t.db, clock, defaultDays: 100, platformDays: 400 });
    await retention.set(tenantId, ctx, 900);
    expect(await retention.daysFor(tenantId)).toBe(900);
    await retention.set(tenantId, ctx, 300);
    await retention.set(tenantId, ctx, 60);
    expect(await retention.daysFor(tenantId)).toBe(900);
  });
});

describe.skipIf(engineUnderTest !== 'postgres')('a PUT racing a lengthening (PostgreSQL)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await buildTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('cannot write a shorter value than the lengthening it raced without approval', async () => {
    const tenant = await seedTenant(app, 'race-co');
    const ada = await tenantAdmin(app, 'race-co');
    const bea = await tenantAdmin(app, 'race-co', 'bea@race-co.test');
    const url = '/api/v1/t/race-co/audit/retention';
    const lock = await rowHolder(app);
    try {
      // Hold the tenant's chain head: Ada's lengthening writes its value, then waits to append its event.
      await lock.hold(CHAIN_HEAD_LOCK, [tenant.id]);
      const lengthen = app.app.inject({ method: 'PUT', url, headers: ada.headers, payload: { days: 1000 } });
      await lock.waiting(1);
      // Bea's gate reads 400 (Ada has not committed): 500 looks like a lengthening, no approval asked.
      const racer = app.app.inject({ method: 'PUT', url, headers: bea.headers, payload: { days: 500 } });
      await lock.waiting(2);
      await lock.release();
      const [longer, raced] = await Promise.all([lengthen, racer]);

      expect(longer.statusCode, longer.body).toBe(200);
      // Once Ada committed, 500 shortens 1000: refused, nothing written, ask again (then for approval).
      expect(raced.statusCode, raced.body).toBe(409);
      expect(raced.json()).toMatchObject({ code: 'retention_changed' });
      expect((await app.app.inject({ url, headers: ada.headers })).json()).toEqual({
        days: 1000,
        isDefault: false,
      });
      const again = await app.app.inject({
        method: 'PUT',
        url,
        headers: bea.headers,
        payload: { days: 500 },
      });
      expect(again.statusCode, again.body).toBe(202);
      expect(again.json().approval.action).toBe('audit.retention.shorten');
    } finally {
      await lock.close();
    }
  });
});

// Review, 2026-11-27: whether a shortening needs approval was read just before the locked transaction,
// so `audit.retention.shorten` added to the four-eyes list meanwhile was bypassed. It is now read in the
// writing transaction, after the retention lock, with the settings row locked FOR SHARE.
describe('the four-eyes rule is read in the locked write', () => {
  it('asks whether approval is needed inside the transaction that holds the retention lock', async () => {
    const t = await createTestDatabase();
    try {
      const tenantId = randomUUID();
      const asked: Array<{ inWrite: boolean; locked: boolean }> = [];
      const retention = createRetentionService({
        db: t.db,
        clock: { now: () => new Date() },
        defaultDays: 400,
        platformDays: 400,
        shorteningNeedsApproval: async (tx: unknown) => {
          const inWrite = typeof tx === 'object' && tx !== null;
          const locked = inWrite
            ? (
                await sql<{ n: number }>`SELECT count(*)::int AS n FROM pg_locks
                  WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted`.execute(
                  tx as Parameters<typeof recordAuditEvent>[0],
                )
              ).rows[0]?.n === 1
            : false;
          asked.push({ inWrite, locked });
          return true;
        },
      });
      const refused = await retention.set(tenantId, ctx, 100).catch((e: { code?: string }) => e);
      expect(refused).toMatchObject({ code: 'retention_changed' });
      expect(asked).toEqual([{ inWrite: true, locked: true }]);
      // A lengthening never asks.
      await retention.set(tenantId, ctx, 500);
      expect(asked).toHaveLength(1);
    } finally {
      await t.close();
    }
  });
});

describe.skipIf(engineUnderTest !== 'postgres')('a shortening racing a four-eyes rule (PostgreSQL)', () => {
  let app: TestApp;
  beforeAll(async () => {
    app = await buildTestApp();
  });
  afterAll(async () => {
    await app?.close();
  });

  it('is refused when audit.retention.shorten joined the list while it waited for the retention lock', async () => {
    const tenant = await seedTenant(app, 'rule-co');
    const ada = await tenantAdmin(app, 'rule-co');
    const url = '/api/v1/t/rule-co/audit/retention';
    const lock = await rowHolder(app);
    const list = async (actions: string) =>
      lock.run(
        `INSERT INTO access_settings (tenant_id, four_eyes_actions, approval_ttl_minutes, elevation_approver,
           elevation_thresholds, updated_at)
         VALUES ($1, $2::text[], 1440, 'operator', '{}', now())
         ON CONFLICT (tenant_id) DO UPDATE SET four_eyes_actions = excluded.four_eyes_actions`,
        [tenant.id, actions],
      );
    try {
      await list('{}'); // nothing needs approval: the gate lets a shortening through
      // Hold the retention's lock (the advisory lock a tenant without its own row is locked by).
      await lock.hold(`SELECT pg_advisory_xact_lock(hashtext('rampart.audit_retention'), hashtext($1))`, [
        tenant.id,
      ]);
      const shorten = app.app.inject({ method: 'PUT', url, headers: ada.headers, payload: { days: 60 } });
      await lock.waiting(1);
      await list('{audit.retention.shorten}');
      await lock.release();
      const res = await shorten;
      expect(res.statusCode, res.body).toBe(409);
      expect(res.json()).toMatchObject({ code: 'retention_changed' });
      expect((await app.app.inject({ url, headers: ada.headers })).json()).toMatchObject({ isDefault: true });
      const again = await app.app.inject({ method: 'PUT', url, headers: ada.headers, payload: { days: 60 } });
      expect(again.statusCode, again.body).toBe(202);
    } finally {
      await lock.close();
    }
  });
});
