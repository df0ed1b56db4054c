import { randomBytes, randomUUID, X509Certificate } from 'node:crypto';
import { sql } from 'kysely';
import { Webhook } from 'standardwebhooks';
import type { ActionContext, Clock } from '../platform/context.ts';
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

/** Operators' management of the platform's SIEM sinks. */
export function createSinkService({ db, clock, box }: { db: Database; clock: Clock; box: SecretBox }) {
  return {
    async create(ctx: ActionContext, input: { kind: SinkKind; url: string; caPem?: string }) {
      const { kind } = input;
      if (kind === 'webhook' && input.caPem !== undefined) {
        throw auditError('bad_sink', 'caPem applies only to syslog sinks.');
      }
      const url = kind === 'syslog' ? checkSyslogSink(input.url, input.caPem) : checkSinkUrl(input.url);
      const id = randomUUID();
      // Webhooks are signed (Standard Webhooks); syslog relies on TLS and carries no secret.
      const secret = kind === 'webhook' ? `whsec_${randomBytes(32).toString('base64')}` : null;
      await db.withSystem(async (tx: Tx) => {
        await sql`INSERT INTO audit_sinks (id, kind, url, secret_sealed, tls_ca, created_at)
          VALUES (${id}, ${kind}, ${url}, ${secret === null ? null : box.seal(secret, `audit-sink:${id}`)},
            ${input.caPem ?? null}, ${clock.now()})`.execute(tx);
        await recordAuditEvent<AuditTables>(tx, clock, ctx, {
          tenantId: null,
          action: 'audit.sink.created',
          outcome: 'success',
          target: { type: 'audit_sink', id },
          details: { kind, url, privateCa: input.caPem !== undefined },
        });
      });
      // The signing secret is shown once; only its sealed form is kept.
      return secret === null ? { id, kind, url } : { id, kind, url, secret };
    },

    list: () =>
      db.withSystem(async (tx: Tx) => {
        const { rows } = await sql<{
          id: string;
          kind: SinkKind;
          url: string;
          created_at: Date;
          pending: number;
          oldest: Date | null;
        }>`
          SELECT s.id, s.kind, s.url, s.created_at, count(o.event_id)::int AS pending, min(o.enqueued_at) AS oldest
          FROM audit_sinks s LEFT JOIN audit_outbox o ON o.sink_id = s.id
          WHERE s.disabled_at IS NULL GROUP BY s.id ORDER BY s.created_at`.execute(tx);
        return rows.map((r) => ({
          id: r.id,
          kind: r.kind,
          url: r.url,
          createdAt: r.created_at.toISOString(),
          pending: r.pending,
          oldestPendingAt: r.oldest?.toISOString() ?? null,
        }));
      }),

    disable: (ctx: ActionContext, id: string) =>
      db.withSystem(async (tx: Tx) => {
        const { rows } = await sql`UPDATE audit_sinks SET disabled_at = ${clock.now()}
          WHERE id = ${id} AND disabled_at IS NULL RETURNING id`.execute(tx);
        if (rows.length === 0) throw auditError('sink_not_found', 'No active sink has that id.');
        await sql`DELETE FROM audit_outbox WHERE sink_id = ${id}`.execute(tx);
        await recordAuditEvent<AuditTables>(tx, clock, ctx, {
          tenantId: null,
          action: 'audit.sink.disabled',
          outcome: 'success',
          target: { type: 'audit_sink', id },
        });
      }),
  };
}

export type SinkService = ReturnType<typeof createSinkService>;

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
  batch?: number;
  /** How long a claimed delivery is reserved for this node before another may retry it. */
  leaseMs?: number;
  onDelivered?: (lagMs: number) => void;
}

/**
 * Delivers due outbox rows. A claim moves the rows' next attempt a lease ahead and commits at once, so
 * no transaction stays open during HTTP calls and a node that dies mid-way only delays delivery. Each
 * event is one Standard Webhooks message whose `webhook-id` is the event id: a receiver that sees an id
 * twice (a retry after a lost acknowledgement) can drop the copy.
 */
export function createForwarder(deps: ForwarderDeps) {
  const batch = deps.batch ?? 100;
  const leaseMs = deps.leaseMs ?? 60_000;
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

  async function claim(now: Date): Promise<Claimed[]> {
    return deps.db.withSystem(async (tx: Tx) => {
      const { rows } = await sql<Claimed>`
        UPDATE audit_outbox o SET next_attempt_at = ${new Date(now.getTime() + leaseMs)}, attempts = o.attempts + 1
        FROM (SELECT sink_id, event_id FROM audit_outbox WHERE next_attempt_at <= ${now}
              ORDER BY next_attempt_at LIMIT ${batch} FOR UPDATE SKIP LOCKED) due, audit_sinks s
        WHERE o.sink_id = due.sink_id AND o.event_id = due.event_id AND s.id = o.sink_id
          AND s.disabled_at IS NULL
        RETURNING o.sink_id, o.event_id, o.payload::text AS payload, o.attempts, s.kind, s.url,
          s.secret_sealed, s.tls_ca, o.enqueued_at, o.message`.execute(tx);
      return rows;
    });
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

  return {
    /** One pass: claim a batch, send it, record each outcome. Resolves to what happened. */
    async deliverDue(): Promise<{ delivered: number; failed: number }> {
      const now = deps.clock.now();
      const claimed = await claim(now);
      const webhooks = claimed.filter((row) => row.kind === 'webhook');
      const outcomes = [
        ...(await Promise.all(webhooks.map(async (row) => ({ row, error: await deliver(row, now) })))),
        ...(await deliverSyslog(claimed.filter((row) => row.kind === 'syslog'))),
      ];
      const done = outcomes.filter((o) => o.error === null);
      const failed = outcomes.filter((o) => o.error !== null);
      await deps.db.withSystem(async (tx: Tx) => {
        for (const { row } of done) {
          await sql`DELETE FROM audit_outbox WHERE sink_id = ${row.sink_id} AND event_id = ${row.event_id}`.execute(
            tx,
          );
          deps.onDelivered?.(now.getTime() - row.enqueued_at.getTime());
        }
        for (const { row, error } of failed) {
          const next = new Date(now.getTime() + backoffSeconds(row.attempts) * 1000);
          await sql`UPDATE audit_outbox SET next_attempt_at = ${next}, last_error = ${error}
            WHERE sink_id = ${row.sink_id} AND event_id = ${row.event_id}`.execute(tx);
        }
      });
      return { delivered: done.length, failed: failed.length };
    },
  };
}

export type Forwarder = ReturnType<typeof createForwarder>;
