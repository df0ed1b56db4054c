import { randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import { type ActionContext, type Clock, systemContext } from '../platform/context.ts';
import type { SecretBox } from '../platform/crypto/keys.ts';
import type { Database, SystemTx } from '../platform/db/index.ts';
import type { CheckpointMessage } from './checkpoint-messages.ts';
import { auditError } from './errors.ts';
import { recordAuditEvent } from './record.ts';
import {
  formatSyslog,
  formatSyslogCheckpoint,
  parseSyslogUrl,
  type SendSyslog,
  type SyslogEvent,
  sdIdFor,
} from './syslog.ts';
import type { AuditTables } from './tables.ts';

/** One outbound HTTP request. Injected, so the egress guard (src/protect/outbound/) can carry it. */
export interface OutboundRequest {
  url: string;
  method: 'POST';
  headers: Record<string, string>;
  body: string;
}
export type SendHttp = (request: OutboundRequest) => Promise<{ status: number }>;

const loopback = new Set(['127.0.0.1', 'localhost', '[::1]']);

export type SinkKind = 'webhook' | 'syslog';

function checkSyslogSink(raw: string, caPem: string | undefined): string {
  const parsed = parseSyslogUrl(raw);
  if (typeof parsed === 'string') throw auditError('bad_sink', parsed);
  if (caPem !== undefined) {
    if (!parsed.tls) throw auditError('bad_sink', 'A CA applies only to syslog+tls:// sinks.');
    try {
      new X509Certificate(caPem);
    } catch {
      throw auditError('bad_sink', 'caPem is not a PEM certificate.');
    }
  }
  const host = parsed.host.includes(':') ? `[${parsed.host}]` : parsed.host;
  return `syslog+${parsed.tls ? 'tls' : 'tcp'}://${host.toLowerCase()}:${parsed.port}`;
}

/** A webhook URL events or alerts may be sent to; `code` is the error the caller reports. */
export function checkSinkUrl(raw: string, code: 'bad_sink' | 'bad_alert_settings' = 'bad_sink'): string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw auditError(code, 'The webhook URL is not a URL.');
  }
  // Events are sent over TLS; plain HTTP only to this machine (a local collector, tests).
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && loopback.has(url.hostname))) {
    throw auditError(code, 'A webhook URL must be an https:// URL (http:// only on loopback).');
  }
  if (url.username || url.password) throw auditError(code, 'Put no credentials in the webhook URL.');
  return url.toString();
}

type Tx = SystemTx<AuditTables>;

/** What an operator asks for when adding a sink: all of it is shown to the approving operator. */
export interface SinkInput {
  kind: SinkKind;
  url: string;
  caPem?: string;
}

/** The platform approval a sink is added under (access's four-eyes; audit cannot import access). */
export interface SinkApproval {
  /** The approval's re-check (the approver is still an active operator), run first in the insert's transaction. */
  guard: (tx: Tx) => Promise<void>;
  approvalId: string;
  approvedBy: string | null;
}

/** The sink's URL as it will be stored, or a 400 `bad_sink`: refused before anything is asked for. */
export function checkSinkInput(input: SinkInput): string {
  if (input.kind === 'webhook' && input.caPem !== undefined) {
    throw auditError('bad_sink', 'caPem applies only to syslog sinks.');
  }
  return input.kind === 'syslog' ? checkSyslogSink(input.url, input.caPem) : checkSinkUrl(input.url);
}

/** A sink's lifecycle: receiving events, draining its backlog after being disabled, stopped. */
export type SinkState = 'active' | 'draining' | 'stopped';

/** Backlog a sink may hold unless configured (AUDIT_SINK_MAX_BACKLOG). */
export const DEFAULT_MAX_BACKLOG = 1_000_000;

export interface SinkStatus {
  id: string;
  kind: SinkKind;
  url: string;
  state: Exclude<SinkState, 'stopped'>;
  createdAt: string;
  /** Undelivered events, counted up to the maximum backlog + 1 (a bounded count). */
  pending: number;
  oldestPendingAt: string | null;
  /** Consecutive failed deliveries (0 when healthy); while above 0, one probe delivery at a time. */
  failures: number;
  nextAttemptAt: string | null;
  lastErrorClass: string | null;
  lastFailureAt: string | null;
  /** Since when the backlog is at its maximum and its oldest events are being dropped, else null. */
  overflowingSince: string | null;
  /** Events dropped from this sink's backlog since it was added (overflow). */
  dropped: number;
}

/**
 * Every sink still delivering (active or draining), with its backlog: each count stops at `cap` rows
 * (the maximum backlog + 1) so that reading it stays bounded however far a sink is behind.
 */
export async function sinkStatuses(tx: Tx, cap: number): Promise<SinkStatus[]> {
  const { rows } = await sql<{
    id: string;
    kind: SinkKind;
    url: string;
    disabled_at: Date | null;
    created_at: Date;
    pending: number;
    oldest: Date | null;
    failures: number;
    next_attempt_at: Date | null;
    last_error_class: string | null;
    last_failure_at: Date | null;
    overflowed_at: Date | null;
    dropped_total: string;
  }>`
    SELECT s.id, s.kind, s.url, s.disabled_at, s.created_at, s.failures, s.next_attempt_at,
      s.last_error_class, s.last_failure_at, s.overflowed_at, s.dropped_total::text AS dropped_total,
      (SELECT count(*)::int FROM (SELECT 1 FROM audit_outbox o WHERE o.sink_id = s.id LIMIT ${cap}) b) AS pending,
      (SELECT o.enqueued_at FROM audit_outbox o WHERE o.sink_id = s.id
        ORDER BY o.enqueued_at, o.event_id LIMIT 1) AS oldest
    FROM audit_sinks s WHERE s.stopped_at IS NULL ORDER BY s.created_at, s.id`.execute(tx);
  return rows.map((r) => ({
    id: r.id,
    kind: r.kind,
    url: r.url,
    state: r.disabled_at === null ? 'active' : 'draining',
    createdAt: r.created_at.toISOString(),
    pending: r.pending,
    oldestPendingAt: r.oldest?.toISOString() ?? null,
    failures: r.failures,
    nextAttemptAt: r.next_attempt_at?.toISOString() ?? null,
    lastErrorClass: r.last_error_class,
    lastFailureAt: r.last_failure_at?.toISOString() ?? null,
    overflowingSince: r.overflowed_at?.toISOString() ?? null,
    dropped: Number(r.dropped_total),
  }));
}

/** Operators' management of the platform's SIEM sinks. */
export function createSinkService({
  db,
  clock,
  box,
  maxBacklog = DEFAULT_MAX_BACKLOG,
}: {
  db: Database;
  clock: Clock;
  box: SecretBox;
  maxBacklog?: number;
}) {
  return {
    check: checkSinkInput,

    /**
     * Adds a sink. Only as an approved platform action (four-eyes between two operators, src/access/
     * platform-approvals.ts): `approval.guard` re-checks the approval first in this transaction, and the
     * approval is named in `audit.sink.created`. The webhook signing secret is made here, so it is never
     * part of the request that was approved nor seen by the approver; only the requester gets it, once.
     */
    async create(ctx: ActionContext, input: SinkInput, approval: SinkApproval) {
      const { kind } = input;
      const url = checkSinkInput(input);
      const id = randomUUID();
      // Webhooks are signed (Standard Webhooks); syslog relies on TLS and carries no secret.
      const secret = kind === 'webhook' ? `whsec_${randomBytes(32).toString('base64')}` : null;
      await db.withSystem(async (tx: Tx) => {
        await approval.guard(tx);
        await sql`INSERT INTO audit_sinks (id, kind, url, secret_sealed, tls_ca, created_at)
          VALUES (${id}, ${kind}, ${url}, ${secret === null ? null : box.seal(secret, `audit-sink:${id}`)},
            ${input.caPem ?? null}, ${clock.now()})`.execute(tx);
        await recordAuditEvent<AuditTables>(tx, clock, ctx, {
          tenantId: null,
          action: 'audit.sink.created',
          outcome: 'success',
          target: { type: 'audit_sink', id },
          details: {
            kind,
            url,
            privateCa: input.caPem !== undefined,
            approval: approval.approvalId,
            approvedBy: approval.approvedBy,
          },
        });
      });
      // The signing secret is shown once; only its sealed form is kept.
      return secret === null ? { id, kind, url } : { id, kind, url, secret };
    },

    /** Sinks still delivering (active and draining), with their backlog and delivery state. */
    list: () => db.withSystem((tx: Tx) => sinkStatuses(tx, maxBacklog + 1)),

    /**
     * Disables a sink. An active sink receives `audit.sink.disabled` like every other sink (the event
     * is queued while it is still active), then gets no new events and drains: it stops once its
     * backlog, that notice last, is delivered. `now` on a draining sink stops it at once and drops what
     * it still holds, audited with the count (the remaining sinks receive that).
     */
    disable: (ctx: ActionContext, id: string, options: { now?: boolean } = {}) =>
      db.withSystem(async (tx: Tx): Promise<{ state: 'draining' | 'stopped'; dropped: number }> => {
        const { rows } = await sql<{ disabled_at: Date | null }>`SELECT disabled_at FROM audit_sinks
          WHERE id = ${id} AND stopped_at IS NULL FOR NO KEY UPDATE`.execute(tx);
        const sink = rows[0];
        if (!sink) throw auditError('sink_not_found', 'No active or draining sink has that id.');
        if (sink.disabled_at === null) {
          // Recorded first, while the sink is still active: it is queued for this sink too.
          await recordAuditEvent<AuditTables>(tx, clock, ctx, {
            tenantId: null,
            action: 'audit.sink.disabled',
            outcome: 'success',
            target: { type: 'audit_sink', id },
            details: { immediate: options.now === true },
          });
          await sql`UPDATE audit_sinks SET disabled_at = ${clock.now()} WHERE id = ${id}`.execute(tx);
          if (!options.now) return { state: 'draining', dropped: 0 };
        } else if (!options.now) {
          throw auditError(
            'sink_draining',
            'The sink is already draining its backlog; add ?now=true to stop it at once and drop what it holds.',
          );
        }
        const dropped = await stopSink(tx, clock, ctx, id, false);
        return { state: 'stopped', dropped };
      }),
  };
}

export type SinkService = ReturnType<typeof createSinkService>;

/** Stops a disabled sink: deletes what it still holds and records `audit.sink.stopped` (to the others). */
async function stopSink(tx: Tx, clock: Clock, ctx: ActionContext, id: string, drained: boolean) {
  const deleted = await sql`DELETE FROM audit_outbox WHERE sink_id = ${id}`.execute(tx);
  const dropped = Number(deleted.numAffectedRows ?? 0n);
  await sql`UPDATE audit_sinks SET stopped_at = ${clock.now()}, next_attempt_at = NULL,
    dropped_total = dropped_total + ${dropped} WHERE id = ${id}`.execute(tx);
  await recordAuditEvent<AuditTables>(tx, clock, ctx, {
    tenantId: null,
    action: 'audit.sink.stopped',
    outcome: 'success',
    target: { type: 'audit_sink', id },
    details: { drained, dropped },
  });
  return dropped;
}

interface Claimed {
  sink_id: string;
  event_id: string;
  payload: string;
  attempts: number;
  kind: SinkKind;
  url: string;
  secret_sealed: string | null;
  tls_ca: string | null;
  enqueued_at: Date;
  /** What the row carries: an event, or a signed checkpoint (checkpoint-messages.ts). */
  message: 'audit.event' | 'audit.checkpoint';
}

/** A sink due for delivery, leased to this pass. */
interface DueSink {
  id: string;
  kind: SinkKind;
  url: string;
  secret_sealed: string | null;
  tls_ca: string | null;
  failures: number;
  overflowed_at: Date | null;
  overflow_dropped: string;
}

/**
 * What kind of failure a delivery met, for operators (stored on the sink and listed): a short class,
 * never the message, which may carry a receiver's text or an address.
 */
export function errorClass(error: string): string {
  const http = /^HTTP (\d)\d\d$/.exec(error);
  if (http) return http[1] === '4' ? 'http_4xx' : http[1] === '5' ? 'http_5xx' : 'http_other';
  const text = error.toLowerCase();
  if (text.includes('not configured')) return 'not_configured';
  if (text.includes('refused:') || text.includes('outbound request to')) return 'egress_refused';
  if (/timed? ?out|timeout|etimedout/.test(text)) return 'timeout';
  if (/econnrefused|connection refused/.test(text)) return 'connection_refused';
  if (/enotfound|eai_again|getaddrinfo|has no address/.test(text)) return 'dns';
  if (/cert|tls|ssl|self.signed|handshake/.test(text)) return 'tls';
  if (/econnreset|epipe|socket|closed|hang up|other side/.test(text)) return 'connection';
  return 'other';
}

/** Seconds before attempt n+1 after n failures: 5 s doubling, at most an hour; never given up. */
export const backoffSeconds = (failures: number) => Math.min(5 * 2 ** Math.max(0, failures - 1), 3600);

export interface ForwarderDeps {
  db: Database;
  clock: Clock;
  box: SecretBox;
  send: SendHttp;
  /** Delivery to syslog sinks (syslog.ts); without it, syslog rows wait (and are retried). */
  sendSyslog?: SendSyslog;
  /** IANA private enterprise number of the syslog SD-ID (default: RFC 5612's documentation number). */
  syslogEnterpriseNumber?: number;
  /** Rows claimed per pass over all due sinks; each sink gets an equal share of it (its quota). */
  batch?: number;
  /** How long a claimed sink and its rows are reserved for this node before another may retry them. */
  leaseMs?: number;
  /** Undelivered events a sink may hold (AUDIT_SINK_MAX_BACKLOG); beyond it the oldest are dropped. */
  maxBacklog?: number;
  onDelivered?: (lagMs: number) => void;
}

/** The platform job whose events (a sink stopped, overflowed, recovered) the forwarder records. */
const forwarding = systemContext('audit-forwarding');

/**
 * Delivers queued events, sink by sink. A pass leases every due sink that has due rows (a sink is due
 * unless it is backing off after a failure, or another node holds it), gives each an equal share of the
 * batch, and runs the sinks side by side: each claims its own rows oldest first, sends them and records
 * its own outcome, so a slow or dead sink delays the others at most until the end of the pass. A sink
 * that failed is backed off as a whole (5 s doubling to an hour, forever) and then probed with one
 * event; when the probe is acknowledged its backlog flows again in the same pass. Claims commit at once
 * (no transaction is open during network calls) and a node that dies mid-way only delays delivery.
 * Each event is one Standard Webhooks message whose `webhook-id` is the event id: a receiver that sees
 * an id twice (a retry after a lost acknowledgement) can drop the copy.
 */
export function createForwarder(deps: ForwarderDeps) {
  const batch = deps.batch ?? 100;
  const leaseMs = deps.leaseMs ?? 60_000;
  const maxBacklog = deps.maxBacklog ?? DEFAULT_MAX_BACKLOG;
  const sdId = deps.syslogEnterpriseNumber === undefined ? undefined : sdIdFor(deps.syslogEnterpriseNumber);
  const signers = new Map<string, Webhook>();
  const signerFor = (row: Claimed) => {
    let signer = signers.get(row.sink_id);
    if (!signer) {
      signer = new Webhook(deps.box.open(row.secret_sealed ?? '', `audit-sink:${row.sink_id}`));
      signers.set(row.sink_id, signer);
    }
    return signer;
  };

  /** Leases the sinks that are due and have due rows (one node at a time per sink). */
  async function claimSinks(now: Date): Promise<DueSink[]> {
    return deps.db.withSystem(async (tx: Tx) => {
      const { rows } = await sql<DueSink>`
        WITH due AS MATERIALIZED (
          SELECT d.id FROM audit_sinks d
          WHERE d.stopped_at IS NULL AND (d.next_attempt_at IS NULL OR d.next_attempt_at <= ${now})
            AND EXISTS (SELECT 1 FROM audit_outbox o WHERE o.sink_id = d.id AND o.next_attempt_at <= ${now})
          FOR NO KEY UPDATE SKIP LOCKED)
        UPDATE audit_sinks s SET next_attempt_at = ${new Date(now.getTime() + leaseMs)}
        FROM due WHERE s.id = due.id
        RETURNING s.id, s.kind, s.url, s.secret_sealed, s.tls_ca, s.failures, s.overflowed_at,
          s.overflow_dropped::text AS overflow_dropped`.execute(tx);
      return rows;
    });
  }

  /** Claims up to `limit` of a sink's due rows, oldest first. */
  async function claim(sink: DueSink, limit: number, now: Date): Promise<Claimed[]> {
    const rows = await deps.db.withSystem(async (tx: Tx) => {
      const { rows } = await sql<
        Pick<Claimed, 'event_id' | 'payload' | 'attempts' | 'enqueued_at' | 'message'>
      >`
        WITH due AS MATERIALIZED (
          SELECT event_id FROM audit_outbox WHERE sink_id = ${sink.id} AND next_attempt_at <= ${now}
          ORDER BY enqueued_at, event_id LIMIT ${limit} FOR UPDATE SKIP LOCKED)
        UPDATE audit_outbox o SET next_attempt_at = ${new Date(now.getTime() + leaseMs)}, attempts = o.attempts + 1
        FROM due WHERE o.sink_id = ${sink.id} AND o.event_id = due.event_id
        RETURNING o.event_id, o.payload::text AS payload, o.attempts, o.enqueued_at, o.message`.execute(tx);
      return rows;
    });
    const oldestFirst = (a: Claimed, b: Claimed) =>
      a.enqueued_at.getTime() - b.enqueued_at.getTime() || (a.event_id < b.event_id ? -1 : 1);
    return rows
      .map((row) => ({
        ...row,
        sink_id: sink.id,
        kind: sink.kind,
        url: sink.url,
        secret_sealed: sink.secret_sealed,
        tls_ca: sink.tls_ca,
      }))
      .sort(oldestFirst);
  }

  async function deliver(row: Claimed, now: Date): Promise<string | null> {
    const body = `{"type":${JSON.stringify(row.message)},"timestamp":${JSON.stringify(now.toISOString())},"data":${row.payload}}`;
    try {
      const signature = signerFor(row).sign(row.event_id, now, body);
      const res = await deps.send({
        url: row.url,
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'webhook-id': row.event_id,
          'webhook-timestamp': String(Math.floor(now.getTime() / 1000)),
          'webhook-signature': signature,
        },
        body,
      });
      return res.status >= 200 && res.status < 300 ? null : `HTTP ${res.status}`;
    } catch (error) {
      return (error as Error).message.slice(0, 300) || 'send failed';
    }
  }

  /** Syslog rows: one connection per sink, the batch received entirely or failed entirely. */
  async function deliverSyslog(rows: Claimed[]): Promise<{ row: Claimed; error: string | null }[]> {
    const bySink = new Map<string, Claimed[]>();
    for (const row of rows) bySink.set(row.sink_id, [...(bySink.get(row.sink_id) ?? []), row]);
    const results = await Promise.all(
      [...bySink.values()].map(async (batch) => {
        const first = batch[0] as Claimed;
        let error: string | null = null;
        try {
          if (!deps.sendSyslog) throw new Error('syslog delivery is not configured');
          const messages = batch.map((row) =>
            row.message === 'audit.checkpoint'
              ? formatSyslogCheckpoint(
                  JSON.parse(row.payload) as CheckpointMessage,
                  row.payload,
                  undefined,
                  sdId,
                )
              : formatSyslog(JSON.parse(row.payload) as SyslogEvent, row.payload, undefined, sdId),
          );
          await deps.sendSyslog({ url: first.url, ca: first.tls_ca }, messages);
        } catch (e) {
          error = (e as Error).message.slice(0, 300) || 'send failed';
        }
        return batch.map((row) => ({ row, error }));
      }),
    );
    return results.flat();
  }

  /** Sends one sink's claimed rows: webhooks one message each, syslog one connection for all. */
  async function send(sink: DueSink, rows: Claimed[], now: Date) {
    if (sink.kind === 'syslog') return deliverSyslog(rows);
    return Promise.all(rows.map(async (row) => ({ row, error: await deliver(row, now) })));
  }

  /**
   * Records a sink's outcome: acknowledged rows deleted; on any failure the sink backs off as a whole
   * (its failed rows due again as soon as the sink is) and keeps the class of the error.
   */
  async function record(sink: DueSink, outcomes: { row: Claimed; error: string | null }[], now: Date) {
    const failed = outcomes.filter((o) => o.error !== null);
    await deps.db.withSystem(async (tx: Tx) => {
      for (const { row, error } of outcomes) {
        if (error === null) {
          await sql`DELETE FROM audit_outbox WHERE sink_id = ${row.sink_id} AND event_id = ${row.event_id}`.execute(
            tx,
          );
          deps.onDelivered?.(now.getTime() - row.enqueued_at.getTime());
        } else {
          await sql`UPDATE audit_outbox SET next_attempt_at = ${now}, last_error = ${error}
            WHERE sink_id = ${row.sink_id} AND event_id = ${row.event_id}`.execute(tx);
        }
      }
      const { rows } = await sql<{ failures: number; overflowed_at: Date | null; overflow_dropped: string }>`
        SELECT failures, overflowed_at, overflow_dropped::text AS overflow_dropped FROM audit_sinks
        WHERE id = ${sink.id} FOR NO KEY UPDATE`.execute(tx);
      const state = rows[0];
      if (!state) return;
      const first = failed[0];
      if (first) {
        const failures = state.failures + 1;
        await sql`UPDATE audit_sinks SET failures = ${failures}, last_failure_at = ${now},
          last_error_class = ${errorClass(first.error ?? '')},
          next_attempt_at = ${new Date(now.getTime() + backoffSeconds(failures) * 1000)}
          WHERE id = ${sink.id}`.execute(tx);
        return;
      }
      await sql`UPDATE audit_sinks SET failures = 0, next_attempt_at = NULL, last_error_class = NULL,
        overflowed_at = NULL, overflow_dropped = 0 WHERE id = ${sink.id}`.execute(tx);
      if (state.overflowed_at !== null) {
        // It receives again: say how many events it lost while overflowing (it receives this too).
        await recordAuditEvent<AuditTables>(tx, deps.clock, forwarding, {
          tenantId: null,
          action: 'audit.sink.recovered',
          outcome: 'success',
          target: { type: 'audit_sink', id: sink.id },
          details: {
            dropped: Number(state.overflow_dropped),
            overflowingSince: state.overflowed_at.toISOString(),
          },
        });
      }
    });
    return failed.length;
  }

  /** One sink's share of a pass; a probe that succeeds lets the backlog flow at once. */
  async function sinkPass(sink: DueSink, quota: number, now: Date) {
    let delivered = 0;
    let failed = 0;
    let probe = sink.failures > 0;
    for (;;) {
      const limit = probe ? 1 : quota;
      const rows = await claim(sink, limit, now);
      if (rows.length === 0) {
        // Nothing (more) due, or another node took it: give the sink back (still backing off if it was).
        await deps.db.withSystem((tx: Tx) =>
          sql`UPDATE audit_sinks SET next_attempt_at = CASE WHEN failures = 0 THEN NULL ELSE ${now}::timestamptz END
            WHERE id = ${sink.id}`.execute(tx),
        );
        return { delivered, failed, full: false };
      }
      const outcomes = await send(sink, rows, now);
      const failedNow = (await record(sink, outcomes, now)) ?? 0;
      delivered += rows.length - failedNow;
      failed += failedNow;
      if (probe && failedNow === 0) {
        probe = false;
        continue;
      }
      return { delivered, failed, full: failedNow === 0 && rows.length === limit };
    }
  }

  /** Disabled sinks whose backlog is delivered stop, audited (the other sinks receive that). */
  async function stopDrained() {
    await deps.db.withSystem(async (tx: Tx) => {
      const { rows } = await sql<{ id: string }>`SELECT id FROM audit_sinks s
        WHERE disabled_at IS NOT NULL AND stopped_at IS NULL
          AND NOT EXISTS (SELECT 1 FROM audit_outbox o WHERE o.sink_id = s.id)
        FOR NO KEY UPDATE SKIP LOCKED`.execute(tx);
      for (const { id } of rows) await stopSink(tx, deps.clock, forwarding, id, true);
    });
  }

  return {
    /**
     * One pass: lease the due sinks, deliver each one's share side by side, record each outcome, stop
     * sinks that finished draining. `more`: some sink used its whole share (a backlog to go on with).
     */
    async deliverDue(): Promise<{ delivered: number; failed: number; more: boolean }> {
      const now = deps.clock.now();
      const sinks = await claimSinks(now);
      const quota = Math.max(1, Math.ceil(batch / Math.max(1, sinks.length)));
      const settled = await Promise.allSettled(sinks.map((sink) => sinkPass(sink, quota, now)));
      await stopDrained();
      let delivered = 0;
      let failed = 0;
      let more = false;
      for (const result of settled) {
        if (result.status === 'rejected') throw result.reason;
        delivered += result.value.delivered;
        failed += result.value.failed;
        more ||= result.value.full;
      }
      return { delivered, failed, more };
    },

    /**
     * Keeps each sink's backlog at most `maxBacklog`: beyond it the oldest rows are dropped and counted,
     * and a sink that starts overflowing is audited (`audit.sink.overflowed`; the `protect.incident`
     * rule raises a platform alert from it). Counting stops at the maximum, so the check stays bounded.
     * Also removes rows queued by a transaction that raced a sink's stop.
     */
    async enforceBacklog(): Promise<{ sink: string; dropped: number }[]> {
      const overflowed: { sink: string; dropped: number }[] = [];
      const sinks = await deps.db.withSystem(async (tx: Tx) => {
        // Only a transaction open while a sink stopped can have queued such a row: look a day back,
        // one sink at a time (its rows by index), never over the whole queue.
        const since = new Date(deps.clock.now().getTime() - 86_400_000);
        const { rows: stopped } = await sql<{ id: string }>`SELECT id FROM audit_sinks
          WHERE stopped_at > ${since}`.execute(tx);
        for (const { id } of stopped) await sql`DELETE FROM audit_outbox WHERE sink_id = ${id}`.execute(tx);
        const { rows } = await sql<{ id: string }>`SELECT id FROM audit_sinks
          WHERE stopped_at IS NULL`.execute(tx);
        return rows;
      });
      for (const { id } of sinks) {
        const dropped = await deps.db.withSystem(async (tx: Tx) => {
          const { rows } = await sql<{ enqueued_at: Date; event_id: string }>`
            SELECT enqueued_at, event_id FROM audit_outbox WHERE sink_id = ${id}
            ORDER BY enqueued_at DESC, event_id DESC OFFSET ${maxBacklog} LIMIT 1`.execute(tx);
          const boundary = rows[0];
          if (!boundary) return 0;
          const deleted = await sql`DELETE FROM audit_outbox WHERE sink_id = ${id}
            AND (enqueued_at, event_id) <= (${boundary.enqueued_at}, ${boundary.event_id}::uuid)`.execute(tx);
          const dropped = Number(deleted.numAffectedRows ?? 0n);
          const { rows: before } = await sql<{ overflowed_at: Date | null }>`
            SELECT overflowed_at FROM audit_sinks WHERE id = ${id} FOR NO KEY UPDATE`.execute(tx);
          await sql`UPDATE audit_sinks SET overflowed_at = coalesce(overflowed_at, ${deps.clock.now()}),
            overflow_dropped = overflow_dropped + ${dropped}, dropped_total = dropped_total + ${dropped}
            WHERE id = ${id}`.execute(tx);
          if (before[0]?.overflowed_at === null) {
            // Once per episode; later drops are counted on the sink and reported when it recovers.
            await recordAuditEvent<AuditTables>(tx, deps.clock, forwarding, {
              tenantId: null,
              action: 'audit.sink.overflowed',
              outcome: 'failure',
              target: { type: 'audit_sink', id },
              details: { dropped, maxBacklog, droppedThrough: boundary.enqueued_at.toISOString() },
            });
          }
          return dropped;
        });
        if (dropped > 0) overflowed.push({ sink: id, dropped });
      }
      return overflowed;
    },

    /** Sinks still delivering, with their bounded backlog (metrics). */
    statuses: () => deps.db.withSystem((tx: Tx) => sinkStatuses(tx, maxBacklog + 1)),
  };
}

export type Forwarder = ReturnType<typeof createForwarder>;
