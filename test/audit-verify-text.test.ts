/**
 * Verification reads every hashed field as text that PostgreSQL writes (src/audit/check.ts): the time
 * through to_char, and either the position, hashes, ids and address packed into one comma-separated
 * column (PostgreSQL) or every field in one JSON array per event, a page's arrays in one JSON text
 * (PGlite). These tests pin down that this text is what the writer hashed, on both engines, for any
 * content, that both forms check every event alike, and that a time moved to another era is caught.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkedEvents, isoTime, type ReadForm } from '../src/audit/check.ts';
import { checkpointSigner, recordAuditEvents, trustedKeys, verifyAuditChain } from '../src/audit/index.ts';
import type { ActionContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { createTestDatabase, fakeClock, type TestDatabase } from './helpers.ts';

let t: TestDatabase;
const clock = fakeClock();
const keys = trustedKeys([checkpointSigner(Buffer.from('audit-verify-text-root-key-0123456')).publicKey]);

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

// Any text PostgreSQL can store (no NUL): commas (the packed column's separator), quotes, backslashes,
// controls, astral characters, lone surrogates (made well-formed by the writer).
const text = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 10 }).map((s) => s.replaceAll('\u0000', '')),
  fc.string({ unit: 'grapheme', maxLength: 10 }),
  fc.constantFrom(',', ',,', '"', '\\', '\u2028', '\u007f', '\u001f', '\ud800', '\ud83d\ude00', 'é', ''),
);
const detailValue = fc.oneof(text, fc.double({ noNaN: true, noDefaultInfinity: true }), fc.boolean());

describe('the text verification reads', () => {
  it('is what the writer hashed, for events with any content', async () => {
    const tenantId = randomUUID();
    const samples = fc.sample(
      fc.record({
        actorId: fc.option(text, { nil: null }),
        userAgent: fc.option(text, { nil: null }),
        requestId: fc.option(text, { nil: null }),
        ip: fc.constantFrom(null, '192.0.2.1', '2001:db8::1', '::ffff:192.0.2.9'),
        target: fc.option(fc.record({ type: text, id: text }), { nil: undefined }),
        details: fc.dictionary(fc.constantFrom('a', 'b', 'note', 'n', 'zz'), detailValue, { maxKeys: 4 }),
      }),
      { numRuns: 40, seed: 20261126 },
    );
    for (const s of samples) {
      clock.advance(1);
      const ctx: ActionContext = {
        actor: { type: 'user', id: s.actorId },
        ip: s.ip,
        userAgent: s.userAgent,
        requestId: s.requestId,
      } as ActionContext;
      const event = {
        tenantId,
        action: 'tenancy.tenant.suspended' as const,
        outcome: 'success' as const,
        details: s.details,
        ...(s.target ? { target: s.target } : {}),
      };
      await t.db.withTenant(asTenantId(tenantId), (tx) => recordAuditEvents(tx, clock, ctx, [event]));
    }
    const report = await verifyAuditChain(t.db, tenantId, { keys });
    expect(report.broken).toBeNull();
    expect(report.events).toBe(samples.length);
  });

  // The two read forms (check.ts) must agree on every event, tampered ones included: a difference in
  // how one of them decodes a field would make it pass or fail events the other does not.
  it('reads the same checked events in both forms, tampered rows included', async () => {
    const tenantId = randomUUID();
    const samples = fc.sample(
      fc.record({
        actorId: fc.option(text, { nil: null }),
        userAgent: fc.option(text, { nil: null }),
        details: fc.dictionary(fc.constantFrom('a', 'b', 'note', 'n', 'zz'), detailValue, { maxKeys: 4 }),
      }),
      { numRuns: 30, seed: 20261127 },
    );
    for (const s of samples) {
      clock.advance(1);
      const ctx = {
        actor: { type: 'user', id: s.actorId },
        ip: '2001:db8::7',
        userAgent: s.userAgent,
        requestId: null,
      };
      const event = { tenantId, action: 'tenancy.tenant.suspended' as const, outcome: 'success' as const };
      await t.db.withTenant(asTenantId(tenantId), (tx) =>
        recordAuditEvents(tx, clock, ctx as ActionContext, [{ ...event, details: s.details }]),
      );
    }
    // Each as [SET clause, its $3 if it has one], on every third event from seq 2.
    const nested =
      '{"z": {"b": [1, 2.50, "\u00e9", {"y": true}], "a": null}, "\u20ac": 1e300, "": -0.0, "é": 1E-7, "n": 12345678901234567890}';
    const tamper: [string, string?][] = [
      ['details = $3::jsonb', nested],
      ['details = $3::jsonb', JSON.stringify({ k: 'x,y"\\\n\u{1f600}\u2028' })],
      ['mac = NULL'],
      ['actor_id = $3, user_agent = NULL', ',,"\\\t'],
      ["occurred_at = occurred_at - interval '3000 years'"],
      ["occurred_at = 'infinity'"],
      ['prev_hash = hash'],
      ["ip = '10.1.2.3/8'"],
    ];
    await t.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
      try {
        for (const [i, [set, value]] of tamper.entries()) {
          const where = [tenantId, 3 * i + 2];
          await o.query(
            `UPDATE audit_events SET ${set} WHERE tenant_id = $1 AND chain_seq = $2`,
            value === undefined ? where : [...where, value],
          );
        }
      } finally {
        await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
      }
    });
    const read = async (form: ReadForm) => {
      const events = [];
      const followed: number[] = [];
      // Read from a head behind the real one: the rows beyond it come through the statement that reads
      // the head again.
      for await (const page of checkedEvents(t.db, tenantId, 0, 10, (h) => followed.push(h.seq), form)) {
        events.push(...page);
      }
      return { events, followed };
    };
    const json = await read('json');
    expect(json.followed).toEqual([samples.length]);
    expect(json.events).toHaveLength(samples.length);
    expect(json.events.filter((e) => !e.intact).map((e) => e.seq)).toEqual([2, 5, 11, 14, 17, 20, 23]);
    expect(await read('columns')).toEqual(json);
  });

  it('writes any time as Date.toISOString() does, eras and five-digit years included', async () => {
    const ms = fc.oneof(
      fc.integer({ min: -62_135_596_800_000, max: 253_402_300_799_999 }), // years 1-9999
      fc.integer({ min: -200_000_000_000_000, max: 8_000_000_000_000_000 }), // 4370 BC to year 200,000+
    );
    const times = [
      0,
      -62_135_596_800_000,
      -62_135_596_800_001,
      253_402_300_799_999,
      253_402_300_800_000,
      ...fc.sample(ms, { numRuns: 200, seed: 7 }),
    ];
    await t.db.withSystem(async (tx) => {
      for (const time of times) {
        // Whole days and the milliseconds within the day: exact arithmetic, whatever the year.
        const days = Math.floor(time / 86_400_000);
        const { rows } = await sql<{ at: string }>`SELECT pg_catalog.to_char(
            ((timestamp '1970-01-01' + ${days}::float8 * interval '1 day'
              + ${time - days * 86_400_000}::float8 * interval '1 millisecond') AT TIME ZONE 'UTC')
              AT TIME ZONE 'UTC',
            'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"AD') AS at`.execute(tx);
        expect(isoTime(rows[0]?.at ?? null), String(time)).toBe(new Date(time).toISOString());
      }
    });
  });

  // The time's text leaves out the era for years 1-9999 AD: without the era check, a time moved to
  // the same date BC would read as the original and pass.
  it('a time moved to the same date BC is a modification', async () => {
    const tenantId = randomUUID();
    const ctx: ActionContext = {
      actor: { type: 'system', id: 'verify-text' },
      ip: null,
      userAgent: null,
      requestId: null,
    };
    const event = { tenantId, action: 'tenancy.tenant.suspended' as const, outcome: 'success' as const };
    const [first, second] = await t.db.withTenant(asTenantId(tenantId), (tx) =>
      recordAuditEvents(tx, clock, ctx, [event, event]),
    );
    await t.engine.asOwner(async (o) => {
      await o.exec('ALTER TABLE audit_events DISABLE TRIGGER audit_events_append_only');
      try {
        await o.query(
          `UPDATE audit_events SET occurred_at = ((to_char(occurred_at AT TIME ZONE 'UTC',
             'YYYY-MM-DD HH24:MI:SS.MS') || ' BC')::timestamp AT TIME ZONE 'UTC') WHERE id = $1`,
          [second],
        );
      } finally {
        await o.exec('ALTER TABLE audit_events ENABLE TRIGGER audit_events_append_only');
      }
    });
    const report = await verifyAuditChain(t.db, tenantId, { keys });
    expect(first).toBeDefined();
    expect(report.broken).toMatchObject({ kind: 'modified', seq: 2, eventId: second });
  });
});
