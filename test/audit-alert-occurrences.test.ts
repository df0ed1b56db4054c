/**
 * An alert's `occurrences` saturates. It is an integer column and was incremented unchecked: once an
 * alert that keeps absorbing matches (an open `protect.incident` for a host refused all day, every day)
 * reached 2^31 - 1, the next match overflowed, the chain's evaluation rolled back, and it failed again
 * on every run after: no rule of that chain raised anything any more. Now the count stops at its maximum.
 */
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_OCCURRENCES } from '../src/audit/alert-engine.ts';
import { createAlertEngine, recordAuditEvent } from '../src/audit/index.ts';
import { inChain } from '../src/audit/store.ts';
import { systemContext } from '../src/platform/context.ts';
import { createTestDatabase, engineUnderTest, fakeClock, type TestDatabase } from './helpers.ts';

const clock = fakeClock(new Date('2026-06-01T10:00:00Z'));
let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

const refused = (tenantId: string, host: string) =>
  inChain(t.db, tenantId, (tx) =>
    recordAuditEvent(tx, clock, systemContext('protect'), {
      tenantId,
      action: 'protect.outbound.refused',
      outcome: 'failure',
      details: { purpose: 'alerts', host, reason: 'address_private' },
    }),
  );

const alertsOf = (tenantId: string) =>
  t.engine.asOwner((o) =>
    o.query<{ id: string; occurrences: number; keys: string[] }>(
      'SELECT id, occurrences, keys FROM audit_alerts WHERE tenant_id = $1 ORDER BY raised_at, id',
      [tenantId],
    ),
  );

describe(`alert occurrences (${engineUnderTest})`, () => {
  it('stop at the maximum instead of failing the chain’s evaluation on every run', async () => {
    const tenantId = randomUUID();
    const engine = createAlertEngine({ db: t.db, clock, isStaff: async () => false });
    await refused(tenantId, 'inside.example.test');
    const [raised] = await engine.evaluateChain(tenantId);
    expect(raised?.occurrences).toBe(1);
    await t.engine.asOwner((o) =>
      o.query('UPDATE audit_alerts SET occurrences = $1 WHERE id = $2', [MAX_OCCURRENCES - 1, raised?.id]),
    );

    // Two more matches of the same alert: the first reaches the maximum, the second stays there.
    for (const _ of [1, 2]) {
      clock.advance(1000);
      await refused(tenantId, 'inside.example.test');
      expect(await engine.evaluateChain(tenantId)).toEqual([]);
      expect((await alertsOf(tenantId)).map((a) => a.occurrences)).toEqual([MAX_OCCURRENCES]);
    }
    // The chain's rules still run: another incident raises its own alert.
    await refused(tenantId, 'elsewhere.example.test');
    expect((await engine.evaluateChain(tenantId)).map((a) => a.keys)).toEqual([
      ['outbound:alerts:elsewhere.example.test'],
    ]);
  });
});
