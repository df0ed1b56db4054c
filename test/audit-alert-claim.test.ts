/**
 * One delivery pass claims at most its batch. The claim used to be `UPDATE … FROM (SELECT … LIMIT n
 * FOR UPDATE SKIP LOCKED)`: the planner may evaluate such a subquery again for the join, and on PGlite it
 * was seen leasing 32 rows with a batch of 5 (every lease bumps `attempts`, so rows were tried, and
 * counted towards giving up, more often than the batch allows). The claim now takes its rows in a
 * MATERIALIZED CTE, evaluated once, as the SIEM forwarder's claims do.
 */
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertSecretPurpose, createAlertDelivery } from '../src/audit/alert-delivery.ts';
import { inChain } from '../src/audit/store.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { setAlertChannels } from './alert-helpers.ts';
import { createTestDatabase, engineUnderTest, fakeClock, type TestDatabase } from './helpers.ts';

const box = createSecretBox(deriveKey(Buffer.from('audit-alert-claim-test-root-key'), 'audit-alerts'));
let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

/** An alert with a webhook and a mail delivery, both due at `at`. */
async function raise(tenantId: string, at: Date) {
  const id = randomUUID();
  const url = `https://hooks.example.test/${id}`;
  const alert = {
    id,
    tenantId,
    rule: 'signin.failures',
    severity: 'medium',
    summary: 'test',
    keys: ['chain'],
  };
  await inChain(t.db, tenantId, async (tx) => {
    await sql`INSERT INTO audit_alerts (id, tenant_id, rule, severity, keys, summary, status, occurrences,
        first_event_id, last_event_id, raised_at, last_seen_at)
      VALUES (${id}, ${tenantId}, 'signin.failures', 'medium', ARRAY['chain'], 'test', 'open', 1,
        ${randomUUID()}, ${randomUUID()}, ${at}, ${at})`.execute(tx);
    await sql`INSERT INTO audit_alert_deliveries (alert_id, channel, destination, tenant_id, payload,
        enqueued_at, next_attempt_at)
      VALUES (${id}, 'webhook', ${url}, ${tenantId}, ${JSON.stringify(alert)}::jsonb, ${at}, ${at}),
        (${id}, 'email', 'soc@example.test', ${tenantId}, ${JSON.stringify(alert)}::jsonb, ${at}, ${at})`.execute(
      tx,
    );
  });
  // Deliveries go to the chain's channels as set when they are sent: these are.
  await setAlertChannels(t.db, tenantId, {
    emails: ['soc@example.test'],
    webhookUrl: url,
    secretSealed: box.seal('whsec_dGVzdC1zZWNyZXQtMDEyMzQ1Njc4OQ==', alertSecretPurpose(tenantId)),
  });
}

const attempts = () =>
  t.engine.asOwner(async (o) =>
    (await o.query<{ attempts: number }>('SELECT attempts FROM audit_alert_deliveries')).map(
      (r) => r.attempts,
    ),
  );

describe(`alert delivery claims (${engineUnderTest})`, () => {
  it('lease at most the batch size in one pass, however many deliveries are due', async () => {
    const clock = fakeClock(new Date('2026-04-01T08:00:00Z'));
    const tenantId = randomUUID();
    for (let i = 0; i < 20; i++) await raise(tenantId, new Date(clock.now().getTime() - (20 - i) * 1000));
    let tries = 0;
    const delivery = createAlertDelivery({
      db: t.db,
      clock,
      box,
      batch: 5,
      // Down, so every claimed row stays (retried later) and its attempts show how often it was leased.
      send: async () => {
        tries += 1;
        return { status: 503 };
      },
      sendMail: async () => {
        tries += 1;
        throw new Error('mailbox unavailable');
      },
    });
    for (let pass = 1; pass <= 3; pass++) {
      const result = await delivery.deliverDue();
      expect(result).toEqual({ delivered: 0, failed: 5, gaveUp: 0, dropped: 0 });
      expect(tries).toBe(5 * pass);
      const leased = await attempts();
      expect(leased).toHaveLength(40);
      expect(leased.reduce((a, b) => a + b, 0)).toBe(5 * pass);
      expect(Math.max(...leased)).toBe(1);
    }
  });
});
