/**
 * Layer 3: the Pwned Passwords k-anonymity range API. Only the first 5 hex digits of the SHA-1 leave the
 * server; the match against the returned suffixes happens here. `Add-Padding: true` makes every response
 * a similar size so an observer of the encrypted traffic cannot infer the prefix; padding rows have count 0.
 */
import { hash } from 'node:crypto';

/** The subset of `fetch` the client needs; the Protect capability supplies a guarded (egress-allowlisted) one. */
export type FetchLike = (
  url: string,
  init: { method: 'GET'; headers: Record<string, string>; signal: AbortSignal },
) => Promise<{ status: number; text(): Promise<string> }>;

export interface RangeClientOptions {
  /** Required on purpose: outbound calls must go through the caller's guarded client, never a raw global. */
  fetch: FetchLike;
  /** Default `https://api.pwnedpasswords.com/range/`; the prefix is appended. */
  baseUrl?: string;
  /** Default 2000 ms. */
  timeoutMs?: number;
  /**
   * What an unreachable or failing service means: 'open' accepts the password (availability first),
   * 'closed' treats it as breached (screening guaranteed, sign-up blocked while the service is down).
   */
  failMode: 'open' | 'closed';
  /** Suffixes seen fewer times than this do not count (default 1). */
  minCount?: number;
  userAgent?: string;
}

export interface RangeResult {
  breached: boolean;
  /** Times seen in breaches (0 when not found or unavailable). */
  count: number;
  /** True when the answer comes from the fail mode, not from the service. */
  unavailable: boolean;
}

export interface RangeClient {
  check(password: string): Promise<RangeResult>;
  checkSha1(hex: string): Promise<RangeResult>;
}

const DEFAULT_BASE = 'https://api.pwnedpasswords.com/range/';
/** A padded response is ~800-1,000 lines of 40 bytes; anything far larger is not this API. */
const MAX_RESPONSE_CHARS = 1 << 20;

export function createPwnedRangeClient(options: RangeClientOptions): RangeClient {
  const baseUrl = options.baseUrl ?? DEFAULT_BASE;
  const timeoutMs = options.timeoutMs ?? 2000;
  const minCount = options.minCount ?? 1;
  const headers: Record<string, string> = { 'Add-Padding': 'true' };
  if (options.userAgent) headers['User-Agent'] = options.userAgent;

  const fetchRange = async (prefix: string): Promise<string> => {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), timeoutMs);
    try {
      const res = await options.fetch(`${baseUrl}${prefix}`, {
        method: 'GET',
        headers,
        signal: controller.signal,
      });
      if (res.status !== 200) throw new Error(`range API answered ${res.status}`);
      const body = await res.text();
      if (body.length > MAX_RESPONSE_CHARS) throw new Error('range API response too large');
      return body;
    } finally {
      clearTimeout(timer);
    }
  };

  const checkSha1 = async (hex: string): Promise<RangeResult> => {
    const upper = hex.toUpperCase();
    if (!/^[0-9A-F]{40}$/.test(upper)) throw new TypeError('expected a SHA-1 as 40 hexadecimal digits');
    let body: string;
    try {
      body = await fetchRange(upper.slice(0, 5));
    } catch {
      return { breached: options.failMode === 'closed', count: 0, unavailable: true };
    }
    const count = findSuffix(body, upper.slice(5));
    return { breached: count >= Math.max(1, minCount), count, unavailable: false };
  };

  return {
    checkSha1,
    check: (password) => checkSha1(hash('sha1', password, 'hex')),
  };
}

/** Count for `suffix` in a `SUFFIX:COUNT` body (CRLF or LF); 0 if absent. Padding rows (count 0) match nothing. */
export function findSuffix(body: string, suffix: string): number {
  for (const raw of body.split('\n')) {
    const line = raw.trim();
    const colon = line.indexOf(':');
    if (colon !== 35 || line.slice(0, 35).toUpperCase() !== suffix) continue;
    const count = Number.parseInt(line.slice(36), 10);
    return Number.isFinite(count) && count > 0 ? count : 0;
  }
  return 0;
}
