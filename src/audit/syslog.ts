import { once } from 'node:events';
import net, { isIP, type LookupFunction } from 'node:net';
import { hostname as osHostname } from 'node:os';
import tls from 'node:tls';

/**
 * Syslog sinks: each audit event as one RFC 5424 message, framed by octet counting (RFC 6587 3.4.1, the
 * framing RFC 5425 prescribes for TLS), over TLS (`syslog+tls://host:6514`) or, on loopback only, plain
 * TCP (`syslog+tcp://127.0.0.1:514`). Decision 0031 says why this is not a library.
 */

/** facility 13, "log audit" (RFC 5424 table 1). */
const FACILITY_LOG_AUDIT = 13;
const severity = { success: 6, failure: 5, denied: 4 } as Record<string, number>;
/**
 * SD-ID of our structured data: `rampart@<IANA private enterprise number>` (RFC 5424 7.2.2). The default,
 * 32473, is the number RFC 5612 reserves for documentation; operators set theirs (SYSLOG_ENTERPRISE_NUMBER).
 */
export const DOCUMENTATION_ENTERPRISE_NUMBER = 32473;
export const sdIdFor = (enterpriseNumber: number) => `rampart@${enterpriseNumber}`;

/** PRINTUSASCII (33-126) only, at most `max` characters, `-` when empty (RFC 5424 6.2 NILVALUE). */
function headerField(value: string | null | undefined, max: number): string {
  const clean = (value ?? '').replace(/[^\x21-\x7e]/g, '').slice(0, max);
  return clean === '' ? '-' : clean;
}

/** PARAM-VALUE escaping (RFC 5424 6.3.3): `"`, `\` and `]` are escaped with a backslash. */
const paramValue = (value: string) => value.replace(/["\\\]]/g, (c) => `\\${c}`);

export interface SyslogEvent {
  id: string;
  seq: number;
  occurredAt: string;
  action: string;
  outcome: string;
  tenantId: string | null;
}

/**
 * One RFC 5424 message: header, structured data carrying what a receiver de-duplicates and filters by
 * (event id, chain, seq, action, outcome), and the event JSON as MSG. The JSON is sent without a BOM:
 * RFC 8259 8.1 forbids one in JSON, and receivers that parse MSG as JSON would choke on it.
 */
export function formatSyslog(
  event: SyslogEvent,
  json: string,
  host = osHostname(),
  sdId = sdIdFor(DOCUMENTATION_ENTERPRISE_NUMBER),
): string {
  const pri = FACILITY_LOG_AUDIT * 8 + (severity[event.outcome] ?? 5);
  const sd = [
    ['eventId', event.id],
    ['chain', event.tenantId ?? 'platform'],
    ['seq', String(event.seq)],
    ['action', event.action],
    ['outcome', event.outcome],
  ]
    .map(([name, value]) => `${name}="${paramValue(value ?? '')}"`)
    .join(' ');
  const header = `<${pri}>1 ${event.occurredAt} ${headerField(host, 255)} rampart - audit`;
  return `${header} [${sdId} ${sd}] ${json}`;
}

/**
 * A signed checkpoint (`audit.checkpoint`) as one RFC 5424 message: MSGID `checkpoint`, structured data
 * with what a receiver keeps as the chain's high-water mark (chain, seq, head hash, key id) and the
 * message id to drop copies by; MSG is the checkpoint JSON with its signature (checkpoint-messages.ts).
 */
export function formatSyslogCheckpoint(
  checkpoint: { id: string; chain: string; seq: number; head: string; at: string; keyId: string },
  json: string,
  host = osHostname(),
  sdId = sdIdFor(DOCUMENTATION_ENTERPRISE_NUMBER),
): string {
  const pri = FACILITY_LOG_AUDIT * 8 + 6;
  const sd = [
    ['checkpointId', checkpoint.id],
    ['chain', checkpoint.chain],
    ['seq', String(checkpoint.seq)],
    ['head', checkpoint.head],
    ['keyId', checkpoint.keyId],
  ]
    .map(([name, value]) => `${name}="${paramValue(value ?? '')}"`)
    .join(' ');
  return `<${pri}>1 ${checkpoint.at} ${headerField(host, 255)} rampart - checkpoint [${sdId} ${sd}] ${json}`;
}

/** Octet-counting frame: the message's length in bytes, a space, the message. */
export const frame = (message: string) => `${Buffer.byteLength(message, 'utf8')} ${message}`;

export interface SyslogTarget {
  url: string;
  /** PEM of the CA(s) that sign the receiver's certificate (a private CA); else the system's roots. */
  ca: string | null;
}

export type SendSyslog = (target: SyslogTarget, messages: string[]) => Promise<void>;

export interface SyslogTransportDeps {
  /** The egress guard (Protect's outbound client): refuses the host now, vets resolved addresses. */
  guard(host: string): { lookup: LookupFunction };
  timeoutMs: number;
}

const loopback = new Set(['127.0.0.1', 'localhost', '::1']);

/** Parses and checks a syslog sink URL; returns a message saying what is wrong, or the parts. */
export function parseSyslogUrl(raw: string): { tls: boolean; host: string; port: number } | string {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return 'The sink URL is not a URL.';
  }
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (url.protocol !== 'syslog+tls:' && url.protocol !== 'syslog+tcp:') {
    return 'A syslog sink is syslog+tls://host:port (syslog+tcp:// only on loopback).';
  }
  const useTls = url.protocol === 'syslog+tls:';
  // Events are sent over TLS; plain TCP only to this machine (a local relay, tests).
  if (!useTls && !loopback.has(host))
    return 'Plain TCP syslog is allowed only on loopback; use syslog+tls://.';
  if (url.username || url.password) return 'Put no credentials in the sink URL.';
  if ((url.pathname && url.pathname !== '/') || url.search || url.hash) return 'A syslog URL has no path.';
  if (!host) return 'The sink URL has no host.';
  return { tls: useTls, host, port: url.port ? Number(url.port) : useTls ? 6514 : 514 };
}

/**
 * Sends messages over one connection and counts them received only when the receiver, having read
 * our end of the stream, closes its own: syslog has no acknowledgement, and a write the kernel took is
 * not a message the receiver read. Anything short of that fails the whole batch, which is then sent
 * again; receivers de-duplicate by the event id in the structured data.
 */
export function createSyslogTransport(deps: SyslogTransportDeps): SendSyslog {
  return async (target, messages) => {
    const parsed = parseSyslogUrl(target.url);
    if (typeof parsed === 'string') throw new Error(parsed);
    const { lookup } = deps.guard(parsed.host);
    const socket = parsed.tls
      ? tls.connect({
          host: parsed.host,
          port: parsed.port,
          lookup,
          ...(isIP(parsed.host) ? {} : { servername: parsed.host }),
          ...(target.ca ? { ca: target.ca } : {}),
          minVersion: 'TLSv1.2',
          rejectUnauthorized: true,
        })
      : net.connect({ host: parsed.host, port: parsed.port, lookup });
    // A bound on the whole exchange, not on idleness: a receiver that trickles bytes back (each resets an
    // idle timer) or never closes must not hold the forwarder's pass, which waits for its slowest sink.
    const deadline = setTimeout(() => socket.destroy(new Error('syslog receiver timed out')), deps.timeoutMs);
    // events.once rejects on 'error' too: each is observed here, so none becomes an unhandled rejection.
    const quiet = <T>(p: Promise<T>) => {
      p.catch(() => {});
      return p;
    };
    const closed = quiet(once(socket, 'close'));
    const failed = quiet(new Promise<never>((_, reject) => socket.once('error', reject)));
    const connected = quiet(once(socket, parsed.tls ? 'secureConnect' : 'connect'));
    try {
      await Promise.race([connected, failed]);
      for (const message of messages) {
        if (!socket.write(frame(message))) await Promise.race([once(socket, 'drain'), failed]);
      }
      socket.end();
      await Promise.race([closed, failed]);
    } finally {
      clearTimeout(deadline);
      socket.destroy();
    }
  };
}
