/**
 * The hash chain against an attacker with the table owner's rights: direct SQL with the append-only
 * trigger disabled, as such an attacker would do. verify must name the first bad event every time.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  chainHash,
  checkpointSigner,
  createCheckpoint,
  recordAuditEvent,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { createTestDatabase, fakeClock, type TestDatabase } from './helpers.ts';

let t: TestDatabase;
const clock = fakeClock();
const signer = checkpointSigner(Buffer.from('audit-chain-test-root-key-0123456789'));
const keys = trustedKeys([signer.publicKey]);
const ctx: ActionContext = {
  actor: { type: 'operator', id: 'op-1' },
  ip: '203.0.113.7',
  userAgent: 'vitest',
  requestId: 'req-audit-chain',
};

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

async function writeEvents(tenantId: string | null, count: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 1; i <= count; i++) {
    clock.advance(1000);
    const event = {
      action: 'tenancy.tenant.suspended' as const,
      outcome: 'success' as const,
      target: { type: 'tenant', id: `t-${i}` },
      details: { n: i, note: `change ${i}` },
      tenantId,
    };
    ids.push(
      tenantId === null
        ? await t.db.withSystem((tx) => recordAuditEvent(tx, clock, ctx, event))
        : await t.db.withTenant(asTenantId(tenantId), (tx) => recordAuditEvent(tx, clock, ctx, event)),
    );
  }
  return ids;
}

/** Runs statements as the owner with the append-only trigger off, then turns it back on. */
async function tamper(...statements: [string, unknown[]?][]) {
  await t.engine.asOwner(async (o) => {
    await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
    try {
      for (const [text, params] of statements) await o.query(text, params ?? []);
    } finally {
      await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
    }
  });
}

const verify = (tenantId: string | null) => verifyAuditChain(t.db, tenantId, { keys });

async function newChain(count = 10) {
  const tenantId = randomUUID();
  const ids = await writeEvents(tenantId, count);
  return { tenantId, ids };
}

describe('an untouched chain', () => {
  it('verifies, for a tenant and for the platform, with checkpoints', async () => {
    const { tenantId } = await newChain(12);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).not.toBeNull();
    await writeEvents(tenantId, 3);
    await writeEvents(null, 4);
    await createCheckpoint(t.db, signer, clock, null);
    const report = await verify(tenantId);
    expect(report).toMatchObject({ events: 15, headSeq: 15, checkpoints: 1, broken: null });
    expect((await verify(null)).broken).toBeNull();
  });

  it('a second checkpoint of an unchanged head is not written', async () => {
    const { tenantId } = await newChain(2);
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).not.toBeNull();
    expect(await createCheckpoint(t.db, signer, clock, tenantId)).toBeNull();
  });

  it('concurrent writers of one tenant never fork the chain', async () => {
    const tenantId = randomUUID();
    await Promise.all(Array.from({ length: 40 }, () => writeEvents(tenantId, 1)));
    const rows = await t.engine.asOwner((o) =>
      o.query<{ seq: string }>(
        'SELECT chain_seq::text AS seq FROM audit_events WHERE tenant_id = $1 ORDER BY 1',
        [tenantId],
      ),
    );
    expect(rows.map((r) => Number(r.seq)).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 40 }, (_, i) => i + 1),
    );
    expect(await verify(tenantId)).toMatchObject({ events: 40, broken: null });
  });

  // The one-statement append starts from the head this process last wrote; these pin down that a
  // wrong guess (a rolled-back append, an address PostgreSQL prints differently) never breaks the chain.
  it('an append after a rolled-back append links to the committed head, not the guessed one', async () => {
    const { tenantId } = await newChain(3);
    const event = { action: 'tenancy.tenant.suspended' as const, outcome: 'success' as const, tenantId };
    const rolledBack = t.db.withTenant(asTenantId(tenantId), async (tx) => {
      await recordAuditEvent(tx, clock, ctx, event);
      await recordAuditEvent(tx, clock, ctx, event);
      throw new Error('the change failed');
    });
    await expect(rolledBack).rejects.toThrow('the change failed');
    await writeEvents(tenantId, 2);
    expect(await verify(tenantId)).toMatchObject({ events: 5, headSeq: 5, broken: null });
  });

  it('IPv6 and unusual IPv4 addresses are hashed as PostgreSQL prints them', async () => {
    const tenantId = randomUUID();
    const ips = ['2001:DB8:0:0::7', '2001:db8::7', '::ffff:203.0.113.9', '203.0.113.9', null];
    for (const ip of ips) {
      await t.db.withTenant(asTenantId(tenantId), (tx) =>
        recordAuditEvent(
          tx,
          clock,
          { ...ctx, ip },
          { action: 'tenancy.tenant.suspended', outcome: 'success', tenantId },
        ),
      );
    }
    expect(await verify(tenantId)).toMatchObject({ events: 5, broken: null });
    // Stored as the request's address (a host: /32, /128), not as some other network.
    const stored = await t.engine.asOwner(async (o) => {
      const rows = await o.query<{ ip: string | null }>(
        'SELECT ip::text AS ip FROM audit_events WHERE tenant_id = $1 ORDER BY chain_seq',
        [tenantId],
      );
      const given = [];
      for (const ip of ips) {
        given.push((await o.query<{ ip: string | null }>('SELECT $1::inet::text AS ip', [ip]))[0]?.ip);
      }
      return { rows: rows.map((r) => r.ip), given };
    });
    expect(stored.rows).toEqual(stored.given);
  });
});

describe('tampering as the table owner', () => {
  it('modifying a field names the modified event', async () => {
    const { tenantId, ids } = await newChain();
    await tamper([`UPDATE audit_events SET outcome = 'failure' WHERE id = $1`, [ids[4]]]);
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'modified', seq: 5, eventId: ids[4] });
  });

  it('modifying the details names the modified event', async () => {
    const { tenantId, ids } = await newChain();
    await tamper([`UPDATE audit_events SET details = '{"n": 3, "note": "nothing"}' WHERE id = $1`, [ids[2]]]);
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'modified', seq: 3, eventId: ids[2] });
  });

  it('deleting an event names its position', async () => {
    const { tenantId, ids } = await newChain();
    await tamper([`DELETE FROM audit_events WHERE id = $1`, [ids[4]]]);
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'deleted', seq: 5, eventId: null });
  });

  it('deleting the newest events is noticed from the head', async () => {
    const { tenantId, ids } = await newChain();
    await tamper([`DELETE FROM audit_events WHERE id = ANY($1)`, [ids.slice(8)]]);
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'deleted', seq: 9 });
  });

  it('inserting a well-linked event in the middle (later events renumbered) names it', async () => {
    const { tenantId, ids } = await newChain();
    const [prev] = await t.engine.asOwner((o) =>
      o.query<{ hash: Uint8Array }>('SELECT hash FROM audit_events WHERE id = $1', [ids[3]]),
    );
    const forged = {
      id: randomUUID(),
      tenantId,
      occurredAt: new Date('2026-01-01T00:00:04.500Z'),
      actorType: 'operator',
      actorId: 'op-1',
      actorElevationId: null,
      action: 'tenancy.tenant.suspended',
      targetType: 'tenant',
      targetId: 't-x',
      outcome: 'success',
      ip: '203.0.113.7',
      userAgent: 'vitest',
      requestId: 'req-audit-chain',
      details: {},
    };
    const hash = chainHash(Buffer.from(prev?.hash ?? []), forged);
    await tamper(
      [
        'UPDATE audit_events SET chain_seq = chain_seq + 1000000 WHERE tenant_id = $1 AND chain_seq >= 5',
        [tenantId],
      ],
      [
        'UPDATE audit_events SET chain_seq = chain_seq - 999999 WHERE tenant_id = $1 AND chain_seq > 1000000',
        [tenantId],
      ],
      [
        `INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, actor_id, action, target_type, target_id,
           outcome, ip, user_agent, request_id, details, chain_seq, prev_hash, hash)
         VALUES ($1, $2, $3, 'operator', 'op-1', 'tenancy.tenant.suspended', 'tenant', 't-x', 'success',
           '203.0.113.7', 'vitest', 'req-audit-chain', '{}', 5, $4, $5)`,
        [forged.id, tenantId, forged.occurredAt, prev?.hash, hash],
      ],
      ['UPDATE audit_chain_heads SET seq = seq + 1 WHERE chain = $1', [tenantId]],
    );
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'inserted', seq: 5, eventId: forged.id });
  });

  it('inserting an event outside the chain names it', async () => {
    const { tenantId } = await newChain(3);
    const id = randomUUID();
    // The CHECK constraint refuses an unchained row; an owner drops it first.
    await tamper(
      ['ALTER TABLE audit_events DROP CONSTRAINT audit_events_chained'],
      [
        `INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, action, outcome)
         VALUES ($1, $2, now(), 'system', 'tenancy.tenant.suspended', 'success')`,
        [id, tenantId],
      ],
      [
        `ALTER TABLE audit_events ADD CONSTRAINT audit_events_chained CHECK (chain_seq IS NOT NULL AND chain_seq > 0
           AND octet_length(prev_hash) = 32 AND octet_length(hash) = 32) NOT VALID`,
      ],
    );
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'inserted', eventId: id });
  });

  it('swapping two events names the first one out of place', async () => {
    const { tenantId, ids } = await newChain();
    await tamper(
      ['UPDATE audit_events SET chain_seq = 1000000 WHERE id = $1', [ids[4]]],
      ['UPDATE audit_events SET chain_seq = 5 WHERE id = $1', [ids[5]]],
      ['UPDATE audit_events SET chain_seq = 6 WHERE id = $1', [ids[4]]],
    );
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'reordered', seq: 5, eventId: ids[5] });
  });

  it('rewriting the chain with recomputed hashes is caught by the signed checkpoint', async () => {
    const { tenantId, ids } = await newChain(6);
    await createCheckpoint(t.db, signer, clock, tenantId);
    const rows = await t.engine.asOwner((o) =>
      o.query<Record<string, unknown>>(
        `SELECT id, tenant_id, occurred_at, actor_type, actor_id, actor_elevation_id, action, target_type, target_id,
           outcome, ip::text AS ip, user_agent, request_id, details FROM audit_events
         WHERE tenant_id = $1 ORDER BY chain_seq`,
        [tenantId],
      ),
    );
    let prev: Buffer = Buffer.alloc(32);
    const statements: [string, unknown[]][] = [];
    for (const r of rows) {
      const details = r.id === ids[1] ? { n: 2, note: 'rewritten' } : (r.details as Record<string, unknown>);
      const hash = chainHash(prev, {
        id: r.id as string,
        tenantId,
        occurredAt: r.occurred_at as Date,
        actorType: r.actor_type as string,
        actorId: r.actor_id as string,
        actorElevationId: null,
        action: r.action as string,
        targetType: r.target_type as string,
        targetId: r.target_id as string,
        outcome: r.outcome as string,
        ip: r.ip as string,
        userAgent: r.user_agent as string,
        requestId: r.request_id as string,
        details,
      });
      statements.push([
        'UPDATE audit_events SET details = $2, prev_hash = $3, hash = $4 WHERE id = $1',
        [r.id, JSON.stringify(details), prev, hash],
      ]);
      prev = hash;
    }
    statements.push(['UPDATE audit_chain_heads SET head_hash = $2 WHERE chain = $1', [tenantId, prev]]);
    await tamper(...statements);
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'modified', seq: 6, eventId: ids[5] });
  });

  it('a checkpoint signed by another key is refused', async () => {
    const { tenantId } = await newChain(2);
    const forger = checkpointSigner(Buffer.from('someone-else-entirely-0123456789'));
    await createCheckpoint(t.db, forger, clock, tenantId);
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'checkpoint', seq: 2 });
    const withBoth = await verifyAuditChain(t.db, tenantId, {
      keys: trustedKeys([signer.publicKey, forger.publicKey]),
    });
    expect(withBoth.broken).toBeNull();
  });
});
