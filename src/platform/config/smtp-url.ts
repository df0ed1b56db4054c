import { parseConnectionUrl } from 'nodemailer/lib/shared';

/**
 * The SMTP_URL query settings production takes. nodemailer copies every query key into its transport
 * options, over ours: beyond the TLS switches that means `service` (another host and port), `secured`
 * (take the plain connection for an encrypted one), `proxy`, `debug` and `logger` (which write the SMTP
 * conversation out), `pool` and more. So production takes these and refuses the rest by name.
 */
const timeouts = ['connectionTimeout', 'greetingTimeout', 'socketTimeout', 'dnsTimeout'];
const allowedKeys = new Set(['requireTLS', 'ignoreTLS', 'name', 'authMethod', ...timeouts]);
// servername only names the certificate to expect; verification stays on.
const allowedTlsKeys = new Set(['rejectUnauthorized', 'servername']);
const allowedNames = [...allowedKeys, ...[...allowedTlsKeys].map((key) => `tls.${key}`)].join(', ');
// The keys parseConnectionUrl fills from the URL itself; a query key of the same name is ignored there.
const fromUrl = new Set(['secure', 'port', 'host', 'auth', 'tls']);

const loopback = new Set(['localhost', '127.0.0.1', '::1']);

type Options = Record<string, unknown>;

/** The query settings that would let mail go out without verified TLS; values as nodemailer reads them. */
function tlsWeakenings(options: Options, smtp: boolean, onLoopback: boolean): string[] {
  const tls = typeof options.tls === 'object' && options.tls !== null ? (options.tls as Options) : {};
  const found: string[] = [];
  // A relay on this machine may go without TLS; certificates are checked wherever TLS is used.
  if (smtp && !onLoopback) {
    if ('requireTLS' in options && !options.requireTLS)
      found.push(
        `requireTLS is read as ${JSON.stringify(options.requireTLS)}, which makes STARTTLS optional`,
      );
    if (options.ignoreTLS) found.push('ignoreTLS is set, which skips STARTTLS');
  }
  if ('rejectUnauthorized' in tls && !tls.rejectUnauthorized)
    found.push('tls.rejectUnauthorized is off, which accepts any certificate');
  return found;
}

/** Query keys outside the allowlists, as nodemailer names them (`tls.x` for its tls options). */
function unknownKeys(options: Options): string[] {
  const { tls, ...rest } = options;
  const keys = Object.keys(rest).filter((key) => !fromUrl.has(key) && !allowedKeys.has(key));
  if (tls === undefined) return keys;
  // `?tls=…` (no dot) replaces the whole object with a string or a number.
  if (typeof tls !== 'object' || tls === null) return [...keys, 'tls'];
  return [
    ...keys,
    ...Object.keys(tls)
      .filter((key) => !allowedTlsKeys.has(key))
      .map((key) => `tls.${key}`),
  ];
}

/**
 * What in SMTP_URL would send mail (and the SMTP password) unprotected off this machine, for the
 * production profile. The URL is read with nodemailer's own parser, so a value means here what it means
 * to the mailer: it turns any number-like text into a number, so `?requireTLS=`, `=00` and `=0.0` are
 * all 0, and STARTTLS optional, as much as `=false` is. Never echoes the URL: it holds the password.
 */
export function smtpUrlProblems(raw: string): string[] {
  let options: Options;
  try {
    options = parseConnectionUrl(raw);
  } catch {
    return ['SMTP_URL: is not a URL the mailer can read (smtp://user:pass@host:587 or smtps://…)'];
  }
  const problems: string[] = [];
  const unknown = unknownKeys(options);
  if (unknown.length > 0)
    problems.push(
      `SMTP_URL: production takes only these query settings: ${allowedNames}; remove ${unknown.join(', ')}`,
    );
  // smtp:// is the one that starts in plain text (secure false); smtps:// is TLS from the first byte.
  const host = typeof options.host === 'string' ? options.host : '';
  const weakened = tlsWeakenings(options, options.secure === false, loopback.has(host));
  if (weakened.length > 0)
    problems.push(
      `SMTP_URL: production sends mail over verified TLS off this machine (only a relay on loopback may go without TLS): ${weakened.join('; ')}`,
    );
  const badTimeouts = timeouts.filter(
    (key) => key in options && !(typeof options[key] === 'number' && options[key] > 0),
  );
  if (badTimeouts.length > 0)
    problems.push(`SMTP_URL: ${badTimeouts.join(', ')} must be a number of milliseconds above 0`);
  return problems;
}
