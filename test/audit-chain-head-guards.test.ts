/**
 * The app role cannot block a chain (migration 0084). It may INSERT audit_events and move a head's seq
 * (0034's column grants); an event written above the head, or a head moved back below existing events,
 * made every later append of the chain fail on the unique index (tenant_id, chain_seq), and the app role
 * cannot delete the row: every audited write of the tenant refused for good. Now the database refuses an
 * event above its chain's head (or of a chain with no head) and a head moving back; appends go on.
 * PGlite and PostgreSQL.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { type Kysely, type RawBuilder, sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_EVENTS_PER_APPEND } from '../src/audit/chain.ts';
import {
  chainHash,
  checkpointSigner,
  recordAuditEvents,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { appendEvents, outsideEvent } from './audit-helpers.ts';
import { createTestDatabase, fakeClock, type TestDatabase } from './helpers.ts';

let t: TestDatabase;
const clock = fakeClock();
const signer = checkpointSigner(Buffer.from('audit-chain-head-guards-root-key-0123456789'));
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = { actor: { type: 'user', id: 'u-1' }, ip: null, userAgent: null, requestId: null };

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

const asApp = <R>(tenantId: string, fn: (tx: Kysely<unknown>) => Promise<R>) =>
  t.db.withTenant(asTenantId(tenantId), fn);

const outcome = (p: Promise<unknown>) =>
  p.then(
    () => 'done',
    (e: Error) => e.message,
  );

async function headOf(tenantId: string) {
  return asApp(tenantId, async (tx) => {
    const { rows } = await sql<{ seq: string; head_hash: Uint8Array }>`
      SELECT seq::text AS seq, head_hash FROM audit_chain_heads WHERE chain = ${tenantId}`.execute(tx);
    const row = rows[0];
    return row ? { seq: Number(row.seq), hash: Buffer.from(row.head_hash) } : null;
  });
}

/** As the app role: a well-linked event at `seq`, the head left where it is. */
function insertAt(tenantId: string, seq: number, prev: Buffer) {
  const event = outsideEvent(randomUUID(), tenantId, clock.now(), 'x');
  return asApp(tenantId, (tx) =>
    sql`INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, actor_id, action,
        target_type, target_id, outcome, details, chain_seq, prev_hash, hash, mac)
      VALUES (${event.id}, ${tenantId}, ${event.occurredAt}, 'user', 'x', 'tenancy.tenant.suspended',
        'tenant', ${tenantId}, 'success', '{"n":99}'::jsonb, ${seq}, ${prev}, ${chainHash(prev, event)},
        ${randomBytes(40)})`.execute(tx),
  );
}

const append = (tenantId: string, count = 1) =>
  outcome(appendEvents(t.db, clock, ctx, tenantId, count, () => clock.advance(1000)));

describe('the app role cannot block a chain', () => {
  it('an event above the head is refused, and the tenant goes on appending', async () => {
    const tenantId = randomUUID();
    expect(await append(tenantId, 2)).toBe('done');
    const head = await headOf(tenantId);
    if (!head) throw new Error('no head');
    expect(await outcome(insertAt(tenantId, head.seq + 1, head.hash))).toBe(
      `audit_events: seq ${head.seq + 1} of chain ${tenantId} lies beyond its head (seq ${head.seq})`,
    );
    expect(await outcome(insertAt(tenantId, head.seq + 1000, head.hash))).toMatch(/lies beyond its head/);
    expect(await append(tenantId)).toBe('done');
    expect(await verifyAuditChain(t.db, tenantId, { keys })).toMatchObject({ events: 3, broken: null });
  });

  it('a head cannot move back, and the tenant goes on appending', async () => {
    const tenantId = randomUUID();
    expect(await append(tenantId, 3)).toBe('done');
    for (const to of [sql`seq - 1`, sql`0`]) {
      expect(
        await outcome(
          asApp(tenantId, (tx) =>
            sql`UPDATE audit_chain_heads SET seq = ${to} WHERE chain = ${tenantId}`.execute(tx),
          ),
        ),
      ).toMatch(
        new RegExp(`^audit_chain_heads: the head of chain ${tenantId} cannot move back from seq 3 to`),
      );
    }
    expect(await append(tenantId)).toBe('done');
    expect((await headOf(tenantId))?.seq).toBe(4);
    expect(await verifyAuditChain(t.db, tenantId, { keys })).toMatchObject({ events: 4, broken: null });
  });

  it('a head cannot leap to where the next append overflows (migration 0086), and appends go on', async () => {
    const tenantId = randomUUID();
    expect(await append(tenantId, 2)).toBe('done');
    const moveBy = (by: RawBuilder<unknown>) =>
      outcome(
        asApp(tenantId, (tx) =>
          sql`UPDATE audit_chain_heads SET seq = ${by} WHERE chain = ${tenantId}`.execute(tx),
        ),
      );
    // To the bigint maximum: before, every next append failed with "bigint out of range".
    expect(await moveBy(sql`9223372036854775807`)).toBe(
      `audit_chain_heads: the head of chain ${tenantId} cannot move more than 10000 positions at once (from seq 2 to 9223372036854775807)`,
    );
    expect(await moveBy(sql`seq + 10001`)).toMatch(/cannot move more than 10000 positions at once/);
    expect((await headOf(tenantId))?.seq).toBe(2);
    expect(await append(tenantId)).toBe('done');
    expect(await verifyAuditChain(t.db, tenantId, { keys })).toMatchObject({ events: 3, broken: null });
    // A step of 10,000 is still taken (a gap verify reports), and appends go on after it.
    expect(await moveBy(sql`seq + 10000`)).toBe('done');
    expect(await append(tenantId)).toBe('done');
    expect((await headOf(tenantId))?.seq).toBe(10_004);
  });

  it('one append writes at most MAX_EVENTS_PER_APPEND events, with an error that says so', async () => {
    const tenantId = randomUUID();
    const events = (n: number) =>
      Array.from({ length: n }, (_, i) => ({
        tenantId,
        action: 'tenancy.tenant.suspended' as const,
        outcome: 'success' as const,
        details: { n: i },
      }));
    expect(
      await outcome(
        t.db.withTenant(asTenantId(tenantId), (tx) =>
          recordAuditEvents(tx, clock, ctx, events(MAX_EVENTS_PER_APPEND + 1)),
        ),
      ),
    ).toBe(`one append writes at most ${MAX_EVENTS_PER_APPEND} events, not ${MAX_EVENTS_PER_APPEND + 1}`);
    expect(await headOf(tenantId)).toBeNull();
  });

  it('an event of a chain with no head is refused, and the first append creates it', async () => {
    const tenantId = randomUUID();
    expect(await outcome(insertAt(tenantId, 1, Buffer.alloc(32)))).toBe(
      `audit_events: chain ${tenantId} has no head; seq 1 cannot be written`,
    );
    // The app role may create a head (seq 0): an event at 1 is still above it.
    await asApp(tenantId, (tx) =>
      sql`INSERT INTO audit_chain_heads (chain, tenant_id) VALUES (${tenantId}, ${tenantId})`.execute(tx),
    );
    expect(await outcome(insertAt(tenantId, 1, Buffer.alloc(32)))).toMatch(/lies beyond its head \(seq 0\)/);
    expect(await append(tenantId, 2)).toBe('done');
  });

  it('moving the head on and writing there is still possible (verify names it), and appends go on', async () => {
    const tenantId = randomUUID();
    expect(await append(tenantId, 2)).toBe('done');
    const head = await headOf(tenantId);
    if (!head) throw new Error('no head');
    await asApp(tenantId, (tx) =>
      sql`UPDATE audit_chain_heads SET seq = seq + 1 WHERE chain = ${tenantId}`.execute(tx),
    );
    expect(await outcome(insertAt(tenantId, head.seq + 1, head.hash))).toBe('done');
    expect(await append(tenantId)).toBe('done');
  });

  it('a batch append of one transaction is accepted (head moved first, then the rows)', async () => {
    const tenantId = randomUUID();
    const events = Array.from({ length: 50 }, (_, i) => ({
      tenantId,
      action: 'tenancy.tenant.suspended' as const,
      outcome: 'success' as const,
      details: { n: i },
    }));
    for (let round = 0; round < 2; round++) {
      await t.db.withTenant(asTenantId(tenantId), (tx) => recordAuditEvents(tx, clock, ctx, events));
    }
    expect(await verifyAuditChain(t.db, tenantId, { keys })).toMatchObject({ events: 100, broken: null });
  });
});

describe('columns fixed once written (migration 0084, defence in depth)', () => {
  it("a head's mac_from_seq and legacy_events do not change, even for the table owner with triggers on", async () => {
    const tenantId = randomUUID();
    expect(await append(tenantId, 2)).toBe('done');
    // The app role has no right on them at all (0034's column grants).
    for (const column of ['mac_from_seq', 'legacy_events']) {
      expect(
        await outcome(
          asApp(tenantId, (tx) =>
            sql`UPDATE audit_chain_heads SET ${sql.ref(column)} = 100 WHERE chain = ${tenantId}`.execute(tx),
          ),
        ),
      ).toMatch(/permission denied/);
      expect(
        await outcome(
          t.engine.asOwner((o) =>
            o.query(`UPDATE audit_chain_heads SET ${column} = 100 WHERE chain = $1`, [tenantId]),
          ),
        ),
      ).toBe(`audit_chain_heads: mac_from_seq and legacy_events of chain ${tenantId} cannot change`);
    }
    // Moving the head (the append path) still works.
    expect(await append(tenantId)).toBe('done');
    const [head] = await t.engine.asOwner((o) =>
      o.query<{ mac_from_seq: string; legacy_events: string }>(
        'SELECT mac_from_seq::text, legacy_events::text FROM audit_chain_heads WHERE chain = $1',
        [tenantId],
      ),
    );
    expect(head).toEqual({ mac_from_seq: '1', legacy_events: '0' });
  });

  it("a signing key's recorded_at is the database's clock, whatever the insert says", async () => {
    const other = checkpointSigner(Buffer.from('audit-chain-head-guards-other-root-0123456789'));
    const der = other.publicKey.export({ format: 'der', type: 'spki' });
    await t.engine.asOwner((o) =>
      o.query(
        `INSERT INTO audit_signing_keys (key_id, public_key, recorded_at) VALUES ($1, $2, '2000-01-01Z')`,
        [other.keyId, der],
      ),
    );
    const [row] = await t.engine.asOwner((o) =>
      o.query<{ recent: boolean }>(
        `SELECT recorded_at > now() - interval '1 hour' AS recent FROM audit_signing_keys WHERE key_id = $1`,
        [other.keyId],
      ),
    );
    expect(row).toEqual({ recent: true });
  });
});
