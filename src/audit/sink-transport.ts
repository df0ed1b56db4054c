import { Webhook } from 'standardwebhooks';
import type { SecretBox } from '../platform/crypto/keys.ts';
import type { CheckpointMessage } from './checkpoint-messages.ts';
import type { Claimed, DueSink, Outcome } from './outbox.ts';
import {
  formatSyslog,
  formatSyslogCheckpoint,
  type SendSyslog,
  type SyslogEvent,
  sdIdFor,
} from './syslog.ts';

/** One outbound HTTP request. Injected, so the egress guard (src/protect/outbound/) can carry it. */
export interface OutboundRequest {
  url: string;
  method: 'POST';
  headers: Record<string, string>;
  body: string;
  /**
   * A webhook delivery: the guard follows no redirect (a 3xx is a failed delivery: a 301/302 would turn
   * the POST into a GET whose 2xx deleted the row unreceived) and reads no more of the answer than it must.
   */
  mode: 'deliver';
  /** Who chose the URL: a tenant's destination may not reach what OUTBOUND_ALLOW_PRIVATE opens to operators. */
  chosenBy: 'operator' | 'tenant';
  /** The tenant whose settings chose the URL (an alert webhook): the egress guard reports refusals per tenant. */
  tenantId?: string;
}
export type SendHttp = (request: OutboundRequest) => Promise<{ status: number }>;

export interface SinkTransportDeps {
  box: SecretBox;
  send: SendHttp;
  /** Delivery to syslog sinks (syslog.ts); without it, syslog rows wait (and are retried). */
  sendSyslog?: SendSyslog | undefined;
  /** IANA private enterprise number of the syslog SD-ID (default: RFC 5612's documentation number). */
  syslogEnterpriseNumber?: number | undefined;
}

/** A failed send's text as stored on the row: bounded, never empty. */
const failureText = (error: unknown) => (error as Error).message.slice(0, 300) || 'send failed';

/**
 * Sends claimed rows to their sink: a webhook gets one Standard Webhooks message per event, whose
 * `webhook-id` is the event id (a receiver that sees an id twice, a retry after a lost acknowledgement,
 * can drop the copy); a syslog sink gets one connection for the whole batch.
 */
export function createSinkTransport(deps: SinkTransportDeps) {
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

  async function deliverWebhook(row: Claimed, now: Date): Promise<string | null> {
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
        mode: 'deliver',
        // Sinks are added by operators (four-eyes); their private destinations are OUTBOUND_ALLOW_PRIVATE's.
        chosenBy: 'operator',
      });
      return res.status >= 200 && res.status < 300 ? null : `HTTP ${res.status}`;
    } catch (error) {
      return failureText(error);
    }
  }

  const syslogMessage = (row: Claimed) =>
    row.message === 'audit.checkpoint'
      ? formatSyslogCheckpoint(JSON.parse(row.payload) as CheckpointMessage, row.payload, undefined, sdId)
      : formatSyslog(JSON.parse(row.payload) as SyslogEvent, row.payload, undefined, sdId);

  /** Syslog rows: one connection per sink, the batch received entirely or failed entirely. */
  async function deliverSyslog(rows: Claimed[]): Promise<Outcome[]> {
    const bySink = new Map<string, Claimed[]>();
    for (const row of rows) bySink.set(row.sink_id, [...(bySink.get(row.sink_id) ?? []), row]);
    const results = await Promise.all(
      [...bySink.values()].map(async (batch) => {
        const first = batch[0] as Claimed;
        let error: string | null = null;
        try {
          if (!deps.sendSyslog) throw new Error('syslog delivery is not configured');
          const messages = batch.map(syslogMessage);
          await deps.sendSyslog({ url: first.url, ca: first.tls_ca }, messages);
        } catch (e) {
          error = failureText(e);
        }
        return batch.map((row) => ({ row, error }));
      }),
    );
    return results.flat();
  }

  return {
    /** Sends one sink's claimed rows: webhooks one message each, syslog one connection for all. */
    async send(sink: DueSink, rows: Claimed[], now: Date): Promise<Outcome[]> {
      if (sink.kind === 'syslog') return deliverSyslog(rows);
      return Promise.all(rows.map(async (row) => ({ row, error: await deliverWebhook(row, now) })));
    },
  };
}

export type SinkTransport = ReturnType<typeof createSinkTransport>;
