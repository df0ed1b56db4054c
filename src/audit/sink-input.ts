import { X509Certificate } from 'node:crypto';
import type { SystemTx } from '../platform/db/index.ts';
import { auditError } from './errors.ts';
import { parseSyslogUrl } from './syslog.ts';
import type { AuditTables } from './tables.ts';

export type SinkKind = 'webhook' | 'syslog';

/** What an operator asks for when adding a sink: all of it is shown to the approving operator. */
export interface SinkInput {
  kind: SinkKind;
  url: string;
  caPem?: string;
}

/** The platform approval a sink is added under (access's four-eyes; audit cannot import access). */
export interface SinkApproval {
  /** The approval's re-check (the approver is still an active operator), run first in the insert's transaction. */
  guard: (tx: SystemTx<AuditTables>) => Promise<void>;
  approvalId: string;
  approvedBy: string | null;
}

const loopback = new Set(['127.0.0.1', 'localhost', '[::1]']);

const onePem = /^\s*-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----\s*$/;

/**
 * The private CA as stored and trusted: exactly one certificate, re-encoded. TLS trusts every certificate
 * of a PEM, while X509Certificate (and the approver's summary) reads only the first: a second one would
 * be trusted unseen by the approving operator.
 */
export function oneCertificatePem(caPem: string): string {
  const body = onePem.exec(caPem)?.[1]?.replaceAll(/\s/g, '');
  try {
    // Rebuilt from its base64 alone: OpenSSL reads no indented or CRLF-split header lines.
    const lines = body?.match(/.{1,64}/g)?.join('\n');
    if (lines)
      return new X509Certificate(
        `-----BEGIN CERTIFICATE-----\n${lines}\n-----END CERTIFICATE-----\n`,
      ).toString();
  } catch {
    // Refused below, as text that is not one certificate.
  }
  throw auditError(
    'bad_sink',
    'caPem must be exactly one PEM certificate (one -----BEGIN CERTIFICATE----- ... -----END CERTIFICATE----- ' +
      "block and nothing else): send only the CA certificate that signs the receiver's certificate, " +
      'not a bundle or chain.',
  );
}

function checkSyslogSink(raw: string, caPem: string | undefined): string {
  const parsed = parseSyslogUrl(raw);
  if (typeof parsed === 'string') throw auditError('bad_sink', parsed);
  if (caPem !== undefined) {
    if (!parsed.tls) throw auditError('bad_sink', 'A CA applies only to syslog+tls:// sinks.');
    oneCertificatePem(caPem);
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

/** The sink's URL as it will be stored, or a 400 `bad_sink`: refused before anything is asked for. */
export function checkSinkInput(input: SinkInput): string {
  if (input.kind === 'webhook' && input.caPem !== undefined) {
    throw auditError('bad_sink', 'caPem applies only to syslog sinks.');
  }
  return input.kind === 'syslog' ? checkSyslogSink(input.url, input.caPem) : checkSinkUrl(input.url);
}
