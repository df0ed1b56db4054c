import { type Static, Type } from '@sinclair/typebox';
import { TypeCompiler } from '@sinclair/typebox/compiler';

/** Details are a flat map of short facts: ids, names, counts, flags. Never structures, never secrets. */
export const AuditDetails = Type.Record(
  Type.String({ pattern: '^[a-zA-Z][a-zA-Z0-9_]{0,63}$' }),
  Type.Union([Type.String({ maxLength: 2048 }), Type.Number(), Type.Boolean(), Type.Null()]),
  // Without additionalProperties a key off the pattern would pass unchecked.
  { maxProperties: 32, additionalProperties: false },
);
export type AuditDetailsValue = Static<typeof AuditDetails>;
/** Compiled once: every audited change checks its details, and the compiled check is ~3x Value.Check. */
const detailsCheck = TypeCompiler.Compile(AuditDetails);

const secretKey = /pass|secret|token|hash|seed|key|code|otp|pin|cookie|authori[sz]ation|credential/i;
// Harmless keys that contain a word of the list above.
const allowedKeys = new Set([
  'reason',
  'role',
  'factor',
  'count',
  'keyId',
  'codeCount',
  'zipcode',
  'postcode',
  // A chain hash is public (in every export and bundle): it names an audit event, see publicHashKeys.
  'eventHash',
]);
/**
 * Keys whose value is a chain hash, recorded as is when it has exactly that shape (64 lower-case hex
 * digits): `clean` would take it for a random secret. Any other value under them is cleaned as usual.
 */
const publicHashKeys = new Set(['eventHash']);
const chainHashShape = /^[0-9a-f]{64}$/;

/**
 * Values that have the shape of a credential: password hashes, PEM blocks, JWTs, long random
 * base64/hex runs. Such a value is replaced, not refused: it may come from a client's free text (a
 * suspension reason), and a client's input must never turn into a 500.
 */
const secretValue = new RegExp(
  [
    /\$argon2(id|i|d)\$/,
    /\$2[abxy]\$\d\d\$/,
    /-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----/,
    /eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}/,
    /\b[0-9a-fA-F]{40,}\b/,
  ]
    .map((pattern) => pattern.source)
    .join('|'),
);
const randomRun = /[A-Za-z0-9+/_=-]{32,}/g;
/**
 * Below this length only the hash prefixes (`$argon2…$`, `$2b$10$`) can match: a JWT needs 23
 * characters, a PEM line 27, the runs 32 or more. Most details (emails, names, ids) stop here.
 */
const SHORTEST_OTHER_SECRET = 23;

function looksRandom(run: string): boolean {
  return (
    /[0-9]/.test(run) && /[A-Z]/.test(run) && /[a-z]/.test(run) && !/^[A-Za-z]+(-[A-Za-z0-9]+)+$/.test(run)
  );
}

/**
 * A URL as answered to readers (sink lists, alert settings, approval views): the URL without user info,
 * query or fragment, which may hold an intake's key. Unlike `auditableUrl` it stays a URL.
 */
export function shownUrl(url: string): string {
  try {
    const parsed = new URL(url);
    parsed.username = '';
    parsed.password = '';
    parsed.search = '';
    parsed.hash = '';
    return parsed.toString();
  } catch {
    return '[not a URL]';
  }
}

export const REDACTED = '[redacted: looked like a secret]';

/**
 * A URL as audit details keep it: scheme, host, port and path. The query and fragment are left out, and
 * any user info: they may carry a credential (`?dd-api-key=…`, `user:pass@`) that the secret check above
 * does not recognise, and details go to every SIEM sink.
 */
export function auditableUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return '[not a URL]';
  }
  const left = parsed.search || parsed.hash ? ' (query left out)' : '';
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}${left}`;
}

export function looksLikeSecret(value: string): boolean {
  if (value.length < SHORTEST_OTHER_SECRET && !value.includes('$')) return false;
  if (secretValue.test(value)) return true;
  return (value.match(randomRun) ?? []).some(looksRandom);
}

/**
 * Checks details against the schema. A key that names a secret or a value of the wrong shape is a
 * programming error (thrown); a value that looks like a credential is redacted.
 */
export function checkDetails(details: Record<string, unknown> | undefined): AuditDetailsValue {
  const input = details ?? {};
  for (const key of Object.keys(input)) checkKey(key);
  if (!detailsCheck.Check(input)) {
    const first = detailsCheck.Errors(input).First();
    throw new Error(`audit details do not match the schema at ${first?.path || '/'}: ${first?.message}`);
  }
  const out: AuditDetailsValue = {};
  for (const [key, value] of Object.entries(input as AuditDetailsValue)) {
    if (typeof value !== 'string') out[key] = value;
    else out[key] = publicHashKeys.has(key) && chainHashShape.test(value) ? value : clean(value);
  }
  return out;
}

/** Keys already found harmless: the same few dozen names come back with every event. */
const harmlessKeys = new Set<string>();

/** A guard against a caller recording a credential by accident (thrown: a programming error). */
function checkKey(key: string) {
  if (harmlessKeys.has(key)) return;
  if (secretKey.test(key) && !allowedKeys.has(key)) {
    throw new Error(`audit detail "${key}" looks like a secret; do not record it`);
  }
  if (harmlessKeys.size < 1024) harmlessKeys.add(key);
}

/** Well-formed UTF-16 (a lone surrogate has no canonical JSON) and no credential-shaped text. */
export function clean(value: string): string {
  // String.prototype.toWellFormed is in Node 20 and later; the ES2023 lib does not declare it yet.
  const text = (value as unknown as { toWellFormed(): string }).toWellFormed().replaceAll('\u0000', '\uFFFD');
  return looksLikeSecret(text) ? REDACTED : text;
}
