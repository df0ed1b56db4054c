/**
 * The mail dispatcher (src/mail/dispatcher.ts), with a mailer double. Regression for the security review:
 * mail was sent inside the request (awaited after the commit), so with SMTP configured forgot-password and
 * sign-up answered slower, or 500, only for existing accounts: an enumeration oracle.
 */
import { describe, expect, it } from 'vitest';
import { createMailDispatcher, type Mailer, type OutboundMail } from '../src/mail/index.ts';

const mail = (n: number): OutboundMail => ({
  to: `user${n}@example.test`,
  subject: `Reset your password (acme) #${n}`,
  text: `https://x.test/t/acme/reset?token=rmp_l_secret${n}`,
});

/** A transport whose sends wait for release() and then fail `failures` times before succeeding. */
function transportDouble(failures = 0) {
  const sent: OutboundMail[] = [];
  const tries: string[] = [];
  let gate: Promise<void> = Promise.resolve();
  let open = () => {};
  let left = failures;
  const transport: Mailer = {
    async send(m) {
      tries.push(m.subject);
      await gate;
      if (left > 0) {
        left -= 1;
        throw Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ESOCKET' });
      }
      sent.push(m);
    },
    outbox: async () => sent.map((m, i) => ({ id: String(i), ...m, createdAt: '' })),
  };
  return {
    transport,
    sent,
    tries,
    hold() {
      gate = new Promise<void>((resolve) => {
        open = resolve;
      });
    },
    release: () => open(),
  };
}

function logDouble() {
  const lines: string[] = [];
  const record = (details: Record<string, unknown>, message: string) =>
    lines.push(`${message} ${JSON.stringify(details)}`);
  return { lines, log: { warn: record, error: record } };
}

describe('mail dispatcher', () => {
  it('returns at once while the transport is still sending; outbox() waits for what was queued', async () => {
    const t = transportDouble();
    t.hold();
    const d = createMailDispatcher({ transport: t.transport, log: logDouble().log });
    expect(d.dispatch(mail(1))).toBe(true);
    expect(t.sent).toEqual([]);
    const listing = d.outbox(10);
    t.release();
    expect((await listing).map((m) => m.to)).toEqual(['user1@example.test']);
    expect(d.counts()).toMatchObject({ sent: 1, failed: 0 });
  });

  it('retries with growing waits, gives up after the last try, and never logs the body', async () => {
    const t = transportDouble(5);
    const waits: number[] = [];
    const { lines, log } = logDouble();
    const d = createMailDispatcher({
      transport: t.transport,
      log,
      attempts: 3,
      backoffMs: 1000,
      sleep: async (ms) => {
        waits.push(ms);
      },
    });
    d.dispatch(mail(1));
    await d.settled();
    expect(t.tries).toHaveLength(3);
    expect(waits).toEqual([1000, 4000]);
    expect(d.counts()).toMatchObject({ sent: 0, retried: 2, failed: 1 });
    expect(lines).toHaveLength(3);
    expect(lines.at(-1)).toContain('mail not delivered');
    expect(lines.join('\n')).toContain('ECONNREFUSED');
    expect(lines.join('\n')).not.toContain('rmp_l_secret');
    expect(lines.join('\n')).not.toContain('user1@example.test');
  });

  it("logs an SMTP refusal by its codes, never the server's text (it quotes the recipient)", async () => {
    const { lines, log } = logDouble();
    const refusing = {
      async send(m: OutboundMail) {
        throw Object.assign(
          new Error(`Can't send mail - all recipients were rejected: 550 <${m.to}> rejected`),
          {
            code: 'EENVELOPE',
            responseCode: 550,
            command: 'RCPT TO',
          },
        );
      },
      outbox: async () => [],
    };
    const d = createMailDispatcher({ transport: refusing, log, attempts: 1, sleep: async () => {} });
    d.dispatch(mail(1));
    await d.settled();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('"code":"EENVELOPE"');
    expect(lines[0]).toContain('"responseCode":550');
    expect(lines[0]).not.toContain('user1@example.test');
  });

  it('delivers on a later try', async () => {
    const t = transportDouble(1);
    const d = createMailDispatcher({ transport: t.transport, log: logDouble().log, sleep: async () => {} });
    d.dispatch(mail(1));
    await d.settled();
    expect(t.sent.map((m) => m.to)).toEqual(['user1@example.test']);
    expect(d.counts()).toMatchObject({ sent: 1, retried: 1, failed: 0 });
  });

  it('drops (and logs) mail beyond its bound instead of making the request wait', async () => {
    const t = transportDouble();
    t.hold();
    const { lines, log } = logDouble();
    const d = createMailDispatcher({ transport: t.transport, log, maxQueued: 2, concurrency: 1 });
    expect([d.dispatch(mail(1)), d.dispatch(mail(2)), d.dispatch(mail(3))]).toEqual([true, true, false]);
    expect(d.queued()).toBe(2);
    expect(d.counts().dropped).toBe(1);
    expect(lines.join('\n')).toContain('mail queue full');
    expect(lines.join('\n')).not.toContain('rmp_l_secret');
    t.release();
    await d.settled();
    expect(t.sent.map((m) => m.to)).toEqual(['user1@example.test', 'user2@example.test']);
  });

  it('drains on close without waiting out the backoff', async () => {
    const t = transportDouble(1);
    let sleeping = () => {};
    const asleep = new Promise<void>((resolve) => {
      sleeping = resolve;
    });
    const d = createMailDispatcher({
      transport: t.transport,
      log: logDouble().log,
      // A wait that would never end on its own: only close() moves the retry on.
      sleep: () => {
        sleeping();
        return new Promise<void>(() => {});
      },
    });
    d.dispatch(mail(1));
    await asleep;
    await d.close();
    expect(t.sent.map((m) => m.to)).toEqual(['user1@example.test']);
  });
});
