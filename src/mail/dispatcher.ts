import type { Mailer, OutboundMail, OutboxEntry } from './outbox.ts';

/** Where the dispatcher reports what it could not deliver: the subject and the error, never the body. */
export interface DispatchLog {
  warn(details: Record<string, unknown>, message: string): void;
  error(details: Record<string, unknown>, message: string): void;
}

export interface DispatchOptions {
  /** How mail leaves: SMTP, or the development outbox. */
  transport: Mailer;
  log: DispatchLog;
  /** Mail waiting or being sent; one more is dropped (and logged), never waited for. */
  maxQueued?: number;
  /** Tries per mail, the first included. */
  attempts?: number;
  /** Wait before the second try; each further wait is four times longer (1 s, 4 s by default). */
  backoffMs?: number;
  /** Sends at once; a slow SMTP server holds at most this many connections. */
  concurrency?: number;
  /** Injected so tests run retries without waiting. */
  sleep?: (ms: number) => Promise<void>;
}

/** What the dispatcher did so far, for the metrics endpoint. */
export interface DispatchCounts {
  sent: number;
  retried: number;
  failed: number;
  dropped: number;
}

export interface MailDispatcher extends Mailer {
  /**
   * Queues mail for delivery in the background and returns at once; never throws and never waits for
   * the transport, so no answer depends on whether (or how fast) mail went out. False when dropped.
   */
  dispatch(mail: OutboundMail): boolean;
  /** Resolves once every mail queued before the call is delivered or given up (never rejects). */
  settled(): Promise<void>;
  /** Waits for the queue (retries without their waits); later mail is still attempted. */
  close(): Promise<void>;
  counts(): DispatchCounts;
  /** Mail waiting or being sent. */
  queued(): number;
}

const realSleep = (ms: number) =>
  new Promise<void>((resolve) => {
    setTimeout(resolve, ms).unref();
  });

/**
 * What went wrong, without the server's text: an SMTP reply often quotes the recipient ("550 <alice@…>
 * rejected"), and neither addresses nor the mail itself belong in the logs. The error's class, code
 * (nodemailer's EAUTH, ESOCKET, …), the SMTP reply code and the command it answered say enough; an
 * error with no SMTP reply (the connection: "connect ECONNREFUSED 10.0.0.5:587") keeps its message.
 */
const describe = (error: unknown) => {
  const e = error as { name?: unknown; code?: unknown; responseCode?: unknown; command?: unknown };
  const responseCode = typeof e?.responseCode === 'number' ? e.responseCode : null;
  return {
    type: typeof e?.name === 'string' ? e.name : typeof error,
    code: typeof e?.code === 'string' ? e.code : null,
    responseCode,
    command: typeof e?.command === 'string' ? e.command.split(' ')[0] : null,
    message:
      responseCode === null ? String((error as { message?: unknown })?.message ?? error).slice(0, 200) : null,
  };
};

/**
 * A small in-process queue between "the transaction committed" and "the mail left": requests hand
 * their mail over and answer, whatever the mail server does. Mail is not durable here: a crash loses
 * what was queued (the links in it can be asked for again), see docs/decisions/0015-mail-dispatch.md.
 */
export function createMailDispatcher(options: DispatchOptions): MailDispatcher {
  const {
    transport,
    log,
    maxQueued = 1000,
    attempts = 3,
    backoffMs = 1000,
    concurrency = 2,
    sleep = realSleep,
  } = options;
  const counts: DispatchCounts = { sent: 0, retried: 0, failed: 0, dropped: 0 };
  const waiting: Array<{ mail: OutboundMail; done: () => void }> = [];
  const pending = new Set<Promise<void>>();
  let running = 0;
  let closing = false;
  let wake = () => {};
  // Resolves when close() starts: a retry waiting out its backoff runs at once instead.
  const closed = new Promise<void>((resolve) => {
    wake = resolve;
  });

  async function deliver(mail: OutboundMail) {
    for (let attempt = 1; ; attempt += 1) {
      try {
        await transport.send(mail);
        counts.sent += 1;
        return;
      } catch (error) {
        if (attempt >= attempts) {
          counts.failed += 1;
          log.error({ subject: mail.subject, attempts: attempt, err: describe(error) }, 'mail not delivered');
          return;
        }
        counts.retried += 1;
        log.warn({ subject: mail.subject, attempt, err: describe(error) }, 'mail delivery failed; retrying');
        // Closing: no more waiting, the remaining tries run at once.
        if (!closing) await Promise.race([sleep(backoffMs * 4 ** (attempt - 1)), closed]);
      }
    }
  }

  function pump() {
    while (running < concurrency && waiting.length > 0) {
      const next = waiting.shift();
      if (!next) return;
      running += 1;
      void deliver(next.mail)
        // deliver catches the transport's errors; this only guards a throwing logger.
        .catch(() => {})
        .finally(() => {
          running -= 1;
          next.done();
          pump();
        });
    }
  }

  const settled = async () => {
    await Promise.all([...pending]);
  };

  return {
    dispatch(mail) {
      if (pending.size >= maxQueued) {
        counts.dropped += 1;
        log.error({ subject: mail.subject, queued: pending.size }, 'mail queue full; mail dropped');
        return false;
      }
      let done = () => {};
      const finished = new Promise<void>((resolve) => {
        done = resolve;
      });
      pending.add(finished);
      void finished.then(() => pending.delete(finished));
      waiting.push({ mail, done });
      pump();
      return true;
    },
    settled,
    async close() {
      closing = true;
      wake();
      await settled();
    },
    counts: () => ({ ...counts }),
    queued: () => pending.size,
    /** Direct delivery, for callers that keep their own durable retry (alert delivery) and need the error. */
    send: (mail) => transport.send(mail),
    /** Waits for mail queued before the call first: a listing right after a request shows its mail. */
    async outbox(limit): Promise<OutboxEntry[]> {
      await settled();
      return transport.outbox(limit);
    },
  };
}
