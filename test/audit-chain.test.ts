/**
 * The hash chain against an attacker with the table owner's rights: direct SQL with the append-only
 * trigger disabled, as such an attacker would do. verify must name the first bad event every time.
 */
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifyBundle, writeBundle } from '../src/audit/bundle.ts';
import {
  chainHash,
  checkpointSigner,
  createCheckpoint,
  recordAuditEvent,
  trustedKeys,
  verifyAuditChain,
} from '../src/audit/index.ts';
import { listChains } from '../src/audit/store.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { asTenantId, type Database } from '../src/platform/db/index.ts';
import { auditCli } from './audit-helpers.ts';
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

  it('details with no canonical form (a number beyond a double) name the modified event, not an error', async () => {
    const { tenantId, ids } = await newChain();
    await tamper([`UPDATE audit_events SET details = '{"n": 1e400}' WHERE id = $1`, [ids[3]]]);
    expect((await verify(tenantId)).broken).toMatchObject({ kind: 'modified', seq: 4, eventId: ids[3] });
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

  it('a checkpoint signed by another key is named and not trusted', async () => {
    const { tenantId } = await newChain(2);
    const forger = checkpointSigner(Buffer.from('someone-else-entirely-0123456789'));
    await createCheckpoint(t.db, forger, clock, tenantId);
    // Named as forged; the chain itself still verifies (it is walked without that row).
    const report = await verify(tenantId);
    expect(report).toMatchObject({ broken: null, checkpoints: 0 });
    expect(report.forged).toEqual([
      {
        kind: 'checkpoint',
        seq: 2,
        eventId: null,
        message: `checkpoint at seq 2 is signed by unknown key ${forger.keyId}`,
      },
    ]);
    const withBoth = await verifyAuditChain(t.db, tenantId, {
      keys: trustedKeys([signer.publicKey, forger.publicKey]),
    });
    expect(withBoth).toMatchObject({ broken: null, forged: [], checkpoints: 1 });
  });
});

describe('a chain appended to while verify runs', () => {
  /** t.db, except that before its `nth` tenant transaction `before` runs (and is awaited). */
  function interleaved(nth: number, before: () => Promise<unknown>): Database {
    let calls = 0;
    return new Proxy(t.db, {
      get(target, prop, receiver) {
        if (prop !== 'withTenant') return Reflect.get(target, prop, receiver);
        return async (...args: Parameters<Database['withTenant']>) => {
          calls += 1;
          if (calls === nth) await before();
          return target.withTenant(...args);
        };
      },
    });
  }

  it('walks the events appended after it read the head, and verifies', async () => {
    const { tenantId } = await newChain(20);
    // Transaction 1 reads the head (20), 2 reads positions 1-20; the append lands before 3, which
    // reads the head again together with the rows beyond it.
    const db = interleaved(3, () => writeEvents(tenantId, 1));
    const progress: [number, number][] = [];
    const report = await verifyAuditChain(db, tenantId, {
      keys,
      onProgress: (done, total) => progress.push([done, total]),
    });
    expect(report).toMatchObject({ events: 21, headSeq: 21, broken: null });
    expect(progress.at(-1)).toEqual([21, 21]);
  });

  it('still names a row beyond the head it read again', async () => {
    const { tenantId } = await newChain(5);
    const stray = randomUUID();
    const db = interleaved(3, async () => {
      await writeEvents(tenantId, 2);
      // A row beyond the head is refused (migration 0084); the table owner turns that trigger off.
      await tamper(
        ['ALTER TABLE audit_events DISABLE TRIGGER audit_events_within_chain'],
        [
          `INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, action, outcome, chain_seq, prev_hash, hash)
           VALUES ($1, $2, now(), 'system', 'tenancy.tenant.suspended', 'success', 9, $3, $3)`,
          [stray, tenantId, Buffer.alloc(32, 1)],
        ],
        ['ALTER TABLE audit_events ENABLE TRIGGER audit_events_within_chain'],
      );
    });
    const report = await verifyAuditChain(db, tenantId, { keys });
    expect(report.headSeq).toBe(7);
    expect(report.broken).toMatchObject({ kind: 'inserted', seq: 9, eventId: stray });
  });
});

describe('offline bundles (verify-file)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-audit-bundle-'));
  type Json = Record<string, unknown>;

  async function bundleOf(tenantId: string | null): Promise<Json[]> {
    const lines: string[] = [];
    await writeBundle(t.db, tenantId, keys, (line) => {
      lines.push(line);
    });
    return lines.map((l) => JSON.parse(l) as Json);
  }

  function check(lines: Json[], options?: { allowUnsignedTail?: boolean }) {
    const file = join(dir, `${randomUUID()}.jsonl`);
    writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n`);
    return verifyBundle(file, keys, options);
  }

  /** A chain of 10 events signed at seq 3 and 10. */
  async function signedChain() {
    const { tenantId, ids } = await newChain(3);
    const first = await createCheckpoint(t.db, signer, clock, tenantId);
    ids.push(...(await writeEvents(tenantId, 7)));
    const last = await createCheckpoint(t.db, signer, clock, tenantId);
    return { tenantId, ids, first, last };
  }

  it('a genuine bundle verifies and says how far it is signed, and when', async () => {
    const { tenantId, last } = await signedChain();
    const result = await check(await bundleOf(tenantId));
    expect(result).toMatchObject({ chain: tenantId, broken: null, events: 10, unsigned: 0 });
    expect(result.lastSigned).toEqual({ seq: 10, at: last?.signedAt });
  });

  it('events after the last signed checkpoint fail, unless allowed (then they are counted)', async () => {
    const { tenantId } = await signedChain();
    await writeEvents(tenantId, 2);
    const lines = await bundleOf(tenantId);
    expect((await check(lines)).broken).toMatchObject({ kind: 'unsigned', seq: 11 });
    const allowed = await check(lines, { allowUnsignedTail: true });
    expect(allowed).toMatchObject({ broken: null, events: 12, unsigned: 2, lastSigned: { seq: 10 } });
  });

  it('a made-up bundle with no checkpoint lines is refused', async () => {
    const tenantId = randomUUID();
    let prev: Buffer = Buffer.alloc(32);
    const events: Json[] = [];
    for (let seq = 1; seq <= 3; seq++) {
      const event = {
        id: randomUUID(),
        tenantId,
        occurredAt: new Date(`2026-01-0${seq}T00:00:00.000Z`),
        actorType: 'system',
        actorId: null,
        actorElevationId: null,
        action: 'tenancy.tenant.suspended',
        targetType: null,
        targetId: null,
        outcome: 'success',
        ip: null,
        userAgent: null,
        requestId: null,
        details: {},
      };
      const hash = chainHash(prev, event);
      events.push({
        type: 'event',
        seq,
        id: event.id,
        tenant: tenantId,
        at: event.occurredAt.toISOString(),
        actor: { type: 'system', id: null, elevation: null },
        action: event.action,
        target: null,
        outcome: 'success',
        ip: null,
        userAgent: null,
        requestId: null,
        details: {},
        prevHash: prev.toString('hex'),
        hash: hash.toString('hex'),
      });
      prev = hash;
    }
    const header = {
      type: 'chain',
      version: 1,
      chain: tenantId,
      start: { seq: 0, hash: '0'.repeat(64) },
      head: { seq: 3, hash: prev.toString('hex') },
    };
    expect((await check([header, ...events])).broken).toMatchObject({ kind: 'unsigned', seq: 1 });
    // Nor may it claim to start somewhere no signed checkpoint vouches for.
    const midway = { ...header, start: { seq: 7, hash: 'ab'.repeat(32) } };
    const renumbered = events.map((e) => ({ ...e, seq: (e.seq as number) + 7 }));
    expect((await check([midway, ...renumbered], { allowUnsignedTail: true })).broken).toMatchObject({
      kind: 'checkpoint',
      seq: 7,
    });
  });

  it('a truncated bundle with its head rewritten is refused', async () => {
    const { tenantId } = await signedChain();
    const lines = await bundleOf(tenantId);
    const kept = lines.filter((l) => l.type !== 'event' || (l.seq as number) <= 6);
    const sixth = kept.at(-1) as Json;
    const header = { ...(kept[0] as Json), head: { seq: 6, hash: sixth.hash } };
    // The checkpoint at 10 gives the cut away, and without it the events after seq 3 are unsigned.
    expect((await check([header, ...kept.slice(1)])).broken).toMatchObject({ kind: 'deleted', seq: 7 });
    const withoutLast = kept.slice(1).filter((l) => l.type !== 'checkpoint' || l.seq !== 10);
    const cut = await check([header, ...withoutLast]);
    expect(cut.broken).toMatchObject({ kind: 'unsigned', seq: 4 });
    expect(cut.lastSigned?.seq).toBe(3);
  });

  it("another tenant's bundle relabelled as this tenant's is refused", async () => {
    const a = await signedChain();
    const b = await signedChain();
    const lines = await bundleOf(b.tenantId);
    const header = { ...(lines[0] as Json), chain: a.tenantId };
    // Only the first line relabelled: the checkpoints name chain b.
    expect((await check([header, ...lines.slice(1)])).broken).toMatchObject({ kind: 'checkpoint' });
    // The checkpoints relabelled too: their signatures no longer hold.
    const relabelled = lines.slice(1).map((l) => (l.type === 'checkpoint' ? { ...l, chain: a.tenantId } : l));
    expect((await check([header, ...relabelled])).broken).toMatchObject({ kind: 'checkpoint' });
    // The checkpoints dropped: the events still name tenant b.
    const bare = lines.slice(1).filter((l) => l.type === 'event');
    expect((await check([header, ...bare], { allowUnsignedTail: true })).broken).toMatchObject({
      kind: 'inserted',
      seq: 1,
      eventId: b.ids[0],
    });
  });
});

describe('rampart audit verify covers every chain', () => {
  it('including a chain whose tenant no longer exists (or never did)', async () => {
    const { tenantId: orphan, ids } = await newChain(3);
    expect(await listChains(t.db)).toContain(orphan);
    // The CLI with no tenants listed: the chain is still verified, and its tampering fails the run.
    const run = auditCli({
      clock,
      withDatabase: (fn) => fn(t.db),
      tenantId: async () => orphan,
      async *tenants() {},
      signer: () => signer,
      retentionDays: async () => 400,
      context: ctx,
    });
    const ok = await run('audit', 'verify');
    expect(ok.out).toMatch(new RegExp(`^chain ${orphan} \\(no tenant\\): ok, 3 events up to seq 3`, 'm'));
    await tamper([`UPDATE audit_events SET outcome = 'denied' WHERE id = $1`, [ids[1]]]);
    const broken = await run('audit', 'verify');
    expect(broken.out).toContain(`chain ${orphan} (no tenant): BROKEN, modified at seq 2`);
    expect(broken.failure?.message).toMatch(/check\(s\) failed verification/);
  });
});
