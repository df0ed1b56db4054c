/**
 * Verification reads every hashed field as text that PostgreSQL writes (src/audit/check.ts): the time
 * through to_char, the position, hashes, ids and address packed into one comma-separated column. These
 * tests pin down that this text is what the writer hashed, on both engines, for any content, and that
 * a time moved to another era is still caught.
 */
import { randomUUID } from 'node:crypto';
import fc from 'fast-check';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isoTime } from '../src/audit/check.ts';
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
