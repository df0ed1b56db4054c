/**
 * Alert deliveries give up. They used to be retried forever: a dead webhook or mailbox kept its rows (and
 * its alerts, which retention cannot prune while a delivery is pending) for good. Now a delivery still
 * failing AUDIT_ALERT_DELIVERY_MAX_HOURS (72 by default) after it was first due gets its last try at that
 * deadline and is then marked failed, never tried again, audited in its alert's chain and counted. SIEM
 * forwarding is not affected: a sink that is down still loses nothing, however long. Time is a fake clock.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { sql } from 'kysely';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { alertSecretPurpose, createAlertDelivery } from '../src/audit/alert-delivery.ts';
import { createForwarder, createSinkService, recordAuditEvent } from '../src/audit/index.ts';
import { inChain } from '../src/audit/store.ts';
import { createSmtpMailer } from '../src/mail/index.ts';
import { systemContext } from '../src/platform/context.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { setAlertChannels } from './alert-helpers.ts';
import {
  buildTestApp,
  createTestDatabase,
  engineUnderTest,
  fakeClock,
  type TestDatabase,
} from './helpers.ts';
import { approvedForTest } from './sink-helpers.ts';

const HOUR = 3_600_000;
const box = createSecretBox(deriveKey(Buffer.from('audit-alert-give-up-test-root-key'), 'audit-alerts'));
let t: TestDatabase;

beforeAll(async () => {
  t = await createTestDatabase();
});
afterAll(async () => {
  await t?.close();
});

/** An alert in the chain with a webhook and a mail delivery, first due now. */
async function raise(tenantId: string | null, now: Date): Promise<{ id: string; url: string }> {
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
        ${randomUUID()}, ${randomUUID()}, ${now}, ${now})`.execute(tx);
    await sql`INSERT INTO audit_alert_deliveries (alert_id, channel, destination, tenant_id, payload,
        enqueued_at, next_attempt_at)
      VALUES (${id}, 'webhook', ${url}, ${tenantId}, ${JSON.stringify(alert)}::jsonb, ${now}, ${now}),
        (${id}, 'email', 'soc@example.test', ${tenantId}, ${JSON.stringify(alert)}::jsonb, ${now}, ${now})`.execute(
      tx,
    );
  });
  // Deliveries go to the chain's channels as set when they are sent: these are.
  await setAlertChannels(t.db, tenantId, {
    emails: ['soc@example.test'],
    webhookUrl: url,
    secretSealed: box.seal('whsec_dGVzdC1zZWNyZXQtMDEyMzQ1Njc4OQ==', alertSecretPurpose(tenantId)),
  });
  return { id, url };
}

interface DeliveryRow {
  channel: string;
  attempts: number;
  next_attempt_at: Date;
  failed_at: Date | null;
  last_error: string | null;
}
const deliveries = (alertId: string) =>
  t.engine.asOwner((o) =>
    o.query<DeliveryRow>(
      `SELECT channel, attempts, next_attempt_at, failed_at, last_error FROM audit_alert_deliveries
       WHERE alert_id = $1 ORDER BY channel`,
      [alertId],
    ),
  );
const failedEvents = (alertId: string) =>
  t.engine.asOwner((o) =>
    o.query<{
      tenant_id: string | null;
      actor_id: string;
      outcome: string;
      details: Record<string, unknown>;
    }>(
      `SELECT tenant_id, actor_id, outcome, details FROM audit_events
       WHERE action = 'audit.alert.delivery_failed' AND target_id = $1 ORDER BY details->>'channel'`,
      [alertId],
    ),
  );

/** Channels that are down (or up, from `upAt` on), recording when each was tried. */
function channels(clock: { now(): Date }, upAt = Number.POSITIVE_INFINITY) {
  const tries: { channel: string; at: number }[] = [];
  const up = () => clock.now().getTime() >= upAt;
  return {
    tries,
    send: async () => {
      tries.push({ channel: 'webhook', at: clock.now().getTime() });
      return { status: up() ? 204 : 503 };
    },
    sendMail: async () => {
      tries.push({ channel: 'email', at: clock.now().getTime() });
      if (!up()) throw new Error('mailbox unavailable');
    },
  };
}

/** Runs the delivery job each time the next delivery falls due, until none is pending. */
async function runUntilSettled(
  delivery: ReturnType<typeof createAlertDelivery>,
  clock: ReturnType<typeof fakeClock>,
  alertId: string,
) {
  for (let round = 0; round < 500; round++) {
    await delivery.deliverDue();
    const pending = (await deliveries(alertId)).filter((d) => d.failed_at === null);
    if (pending.length === 0) return;
    const next = Math.min(...pending.map((d) => new Date(d.next_attempt_at).getTime()));
    clock.advance(Math.max(0, next - clock.now().getTime()));
  }
  throw new Error('deliveries still pending after 500 rounds');
}

describe(`alert deliveries give up (${engineUnderTest})`, () => {
  it('retry with backoff up to 72 hours after first due, try last at that deadline, then are failed, audited and left alone', async () => {
    const clock = fakeClock(new Date('2026-03-02T08:00:00Z'));
    const start = clock.now().getTime();
    const tenantId = randomUUID();
    const { id, url } = await raise(tenantId, clock.now());
    const down = channels(clock);
    const delivery = createAlertDelivery({ db: t.db, clock, box, ...down });
    await runUntilSettled(delivery, clock, id);

    for (const channel of ['webhook', 'email']) {
      const at = down.tries.filter((x) => x.channel === channel).map((x) => x.at - start);
      // The forwarder's backoff: 5 s, 10 s, 20 s, ... at most an hour apart.
      expect(at.slice(0, 4)).toEqual([0, 5_000, 15_000, 35_000]);
      const gaps = at.slice(1).map((v, i) => v - (at[i] as number));
      expect(Math.max(...gaps)).toBe(HOUR);
      expect(at.at(-1)).toBe(72 * HOUR);
    }
    const rows = await deliveries(id);
    const deadline = new Date(start + 72 * HOUR);
    expect(rows).toMatchObject([
      { channel: 'email', failed_at: deadline, last_error: 'mailbox unavailable' },
      { channel: 'webhook', failed_at: deadline, last_error: 'HTTP 503' },
    ]);
    const attempts = down.tries.filter((x) => x.channel === 'webhook').length;
    expect(rows.map((r) => r.attempts)).toEqual([attempts, attempts]);

    const events = await failedEvents(id);
    expect(events).toEqual([
      {
        tenant_id: tenantId,
        actor_id: 'audit-alerts',
        outcome: 'failure',
        details: {
          channel: 'email',
          webhookUrl: null,
          attempts,
          firstDueAt: new Date(start).toISOString(),
          lastError: 'mailbox unavailable',
        },
      },
      {
        tenant_id: tenantId,
        actor_id: 'audit-alerts',
        outcome: 'failure',
        details: {
          channel: 'webhook',
          webhookUrl: url,
          attempts,
          firstDueAt: new Date(start).toISOString(),
          lastError: 'HTTP 503',
        },
      },
    ]);

    // Never tried again, however long one waits; nothing more is recorded.
    const tried = down.tries.length;
    for (const days of [1, 30]) {
      clock.advance(days * 24 * HOUR);
      expect(await delivery.deliverDue()).toEqual({ delivered: 0, failed: 0, gaveUp: 0, dropped: 0 });
    }
    expect(down.tries).toHaveLength(tried);
    expect(await failedEvents(id)).toHaveLength(2);
  });

  it('honour a configured maximum age, deliver what gets through before it, and audit platform alerts in the platform chain', async () => {
    const clock = fakeClock(new Date('2026-03-10T00:00:00Z'));
    const start = clock.now().getTime();
    // Back after 90 minutes: within a 2-hour maximum, so delivered; nothing is marked failed.
    const late = await raise(null, clock.now());
    const delivery = createAlertDelivery({
      db: t.db,
      clock,
      box,
      ...channels(clock, start + 90 * 60_000),
      maxAgeMs: 2 * HOUR,
    });
    await runUntilSettled(delivery, clock, late.id);
    expect(await deliveries(late.id)).toEqual([]);
    expect(await failedEvents(late.id)).toEqual([]);

    // Never back: failed at 2 hours, audited in the platform chain.
    const lost = await raise(null, clock.now());
    const lostAt = clock.now().getTime();
    const never = createAlertDelivery({ db: t.db, clock, box, ...channels(clock), maxAgeMs: 2 * HOUR });
    await runUntilSettled(never, clock, lost.id);
    const rows = await deliveries(lost.id);
    expect(rows.map((r) => new Date(r.failed_at as Date).getTime())).toEqual([
      lostAt + 2 * HOUR,
      lostAt + 2 * HOUR,
    ]);
    expect((await failedEvents(lost.id)).map((e) => e.tenant_id)).toEqual([null, null]);
  });

  it('give a delivery first run after its deadline (every node was down) one last try', async () => {
    const clock = fakeClock(new Date('2026-03-20T00:00:00Z'));
    const { id } = await raise(randomUUID(), clock.now());
    clock.advance(100 * HOUR);
    const up = channels(clock, 0);
    const delivery = createAlertDelivery({ db: t.db, clock, box, ...up });
    expect(await delivery.deliverDue()).toMatchObject({ delivered: 2, gaveUp: 0 });
    expect(await deliveries(id)).toEqual([]);

    const other = await raise(randomUUID(), clock.now());
    clock.advance(100 * HOUR);
    const down = channels(clock);
    const failing = createAlertDelivery({ db: t.db, clock, box, ...down });
    expect(await failing.deliverDue()).toMatchObject({ delivered: 0, failed: 2, gaveUp: 2 });
    expect(down.tries).toHaveLength(2);
    expect((await deliveries(other.id)).every((r) => r.failed_at !== null)).toBe(true);
  });
});

describe(`a mail server's refusal (${engineUnderTest})`, () => {
  // Regression: the SMTP reply's text was audited as `lastError` ("… rejected: 550 <soc@example.test> …"),
  // putting the alert mailbox into the tenant's chain and every SIEM, which the docs promise never happens.
  it('is audited by its code and command, never its text quoting the address', async () => {
    const smtp = new SMTPServer({
      authOptional: true,
      disabledCommands: ['STARTTLS', 'AUTH'],
      logger: false,
      onRcptTo(address, _session, done) {
        done(Object.assign(new Error(`<${address.address}> no such mailbox`), { responseCode: 550 }));
      },
    });
    await new Promise<void>((resolve) => smtp.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = smtp.server.address() as AddressInfo;
      const mailer = createSmtpMailer(`smtp://127.0.0.1:${port}?requireTLS=false`, 'rampart@example.test');
      const clock = fakeClock(new Date('2026-03-25T00:00:00Z'));
      const { id } = await raise(randomUUID(), clock.now());
      const delivery = createAlertDelivery({
        db: t.db,
        clock,
        box,
        send: async () => ({ status: 204 }),
        sendMail: (mail) => mailer.send(mail),
        maxAgeMs: 60_000,
      });
      await runUntilSettled(delivery, clock, id);
      const [failed] = await failedEvents(id);
      expect(failed?.details).toMatchObject({ channel: 'email', lastError: 'SMTP 550 to RCPT (EENVELOPE)' });
      expect(JSON.stringify(failed?.details)).not.toContain('soc@example.test');
      expect((await deliveries(id))[0]?.last_error).not.toContain('soc@example.test');
    } finally {
      await new Promise<void>((resolve) => smtp.close(() => resolve()));
    }
  });
});

describe(`SIEM forwarding (${engineUnderTest})`, () => {
  it('still never gives up: a sink down for longer than the alert maximum loses nothing', async () => {
    const clock = fakeClock(new Date('2026-04-01T00:00:00Z'));
    const sinkBox = createSecretBox(
      deriveKey(Buffer.from('audit-alert-give-up-test-root-key'), 'audit-sinks'),
    );
    await createSinkService({ db: t.db, clock, box: sinkBox }).create(
      systemContext('test'),
      {
        kind: 'webhook',
        url: 'http://127.0.0.1:9/siem',
      },
      approvedForTest,
    );
    const event = randomUUID();
    await t.db.withSystem((tx) =>
      recordAuditEvent(tx, clock, systemContext('test'), {
        tenantId: null,
        action: 'audit.trail.exported',
        outcome: 'success',
        target: { type: 'audit_chain', id: event },
      }),
    );
    const start = clock.now().getTime();
    let up = false;
    const tries: number[] = [];
    const forwarder = createForwarder({
      db: t.db,
      clock,
      box: sinkBox,
      send: async () => {
        tries.push(clock.now().getTime() - start);
        return { status: up ? 200 : 503 };
      },
    });
    const outbox = () =>
      t.engine.asOwner((o) => o.query<{ n: number }>('SELECT count(*)::int AS n FROM audit_outbox'));
    while (clock.now().getTime() - start < 100 * HOUR) {
      await forwarder.deliverDue();
      clock.advance(HOUR);
    }
    expect(Math.max(...tries)).toBeGreaterThan(72 * HOUR);
    expect((await outbox())[0]?.n).toBeGreaterThan(0);
    up = true;
    clock.advance(HOUR);
    await forwarder.deliverDue();
    expect((await outbox())[0]?.n).toBe(0);
  });
});

describe('metrics', () => {
  it('count pending and failed alert deliveries apart', async () => {
    const app = await buildTestApp();
    try {
      const tenantId = randomUUID();
      const alert = randomUUID();
      const far = new Date(Date.now() + 24 * HOUR);
      await app.db.withTenant(asTenantId(tenantId), async (tx) => {
        await sql`INSERT INTO audit_alerts (id, tenant_id, rule, severity, keys, summary, status, occurrences,
              first_event_id, last_event_id, raised_at, last_seen_at)
            VALUES (${alert}, ${tenantId}, 'signin.failures', 'medium', ARRAY['chain'], 'test', 'open', 1,
              ${randomUUID()}, ${randomUUID()}, now(), now())`.execute(tx);
        // Not due for a day: the app's own delivery job leaves it alone.
        await sql`INSERT INTO audit_alert_deliveries (alert_id, channel, destination, tenant_id, payload,
              enqueued_at, next_attempt_at) VALUES
              (${alert}, 'email', 'a@example.test', ${tenantId}, '{}'::jsonb, now(), ${far}),
              (${alert}, 'email', 'b@example.test', ${tenantId}, '{}'::jsonb, now(), ${far})`.execute(tx);
      });
      await app.database.engine.asOwner((o) =>
        o.query(`UPDATE audit_alert_deliveries SET failed_at = now() WHERE destination = 'b@example.test'`),
      );
      const text = (await app.app.inject({ url: '/metrics' })).body;
      expect(text).toMatch(/^rampart_audit_alert_deliveries_pending 1$/m);
      expect(text).toMatch(/^rampart_audit_alert_deliveries_failed 1$/m);
    } finally {
      await app.close();
    }
  });
});
