import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP, type LookupFunction } from 'node:net';
import { Agent, request } from 'undici';
import { forbiddenReason, type ParsedCidr, parseCidrs } from './addresses.ts';

export interface OutboundPolicy {
  /** Hosts that may be reached (`*.example.com` matches its subdomains); empty = any public host. */
  allowHosts: string[];
  /** CIDRs of otherwise forbidden addresses that may be reached anyway (an internal SIEM, say). */
  allowPrivate: string[];
  /**
   * The same for destinations a tenant chose (its alert webhook). Kept apart from `allowPrivate`: an
   * operator admitting an internal SIEM must not open the internal network to every tenant admin.
   */
  tenantAllowPrivate: string[];
  timeoutMs: number;
  maxBytes: number;
  maxRedirects: number;
}

export interface ResolvedAddress {
  address: string;
  family: number;
}

export interface OutboundRefusal {
  /** What the request was for: `breached-range`, `siem`, `ip-list`, ... */
  purpose: string;
  host: string;
  reason: string;
  /** The resolved address that was refused, when the reason is the address. */
  address?: string;
  /** The tenant the request was made for (its alert webhook), when it was made for one. */
  tenantId?: string;
}

export interface OutboundDeps {
  /** DNS resolution (tests inject one); default: the system resolver, all addresses. */
  resolve?: (hostname: string) => Promise<ResolvedAddress[]>;
  /** Called once per refused request or socket: the Protect capability audits and counts it. */
  onRefused?: (refusal: OutboundRefusal) => void;
}

export class OutboundRefusedError extends Error {
  constructor(readonly refusal: OutboundRefusal) {
    super(`outbound request to ${refusal.host} refused: ${refusal.reason}`);
    this.name = 'OutboundRefusedError';
  }
}

export interface OutboundRequest {
  method?: 'GET' | 'POST' | 'PUT' | 'HEAD';
  headers?: Record<string, string>;
  body?: string | Buffer;
  signal?: AbortSignal;
  /** `tenant`: a tenant chose this URL, so only `tenantAllowPrivate` admits a private address. */
  chosenBy?: 'operator' | 'tenant';
  /**
   * `deliver`: a webhook delivery. A redirect is answered as it is (its 3xx status, a failure to the
   * caller) instead of followed, and the answer's body is not kept (at most 64 KiB of it is read).
   */
  mode?: 'fetch' | 'deliver';
  /**
   * The tenant whose settings chose this URL (a tenant's alert webhook): carried into the refusal, so
   * refusals are told apart, and de-duplicated, per tenant rather than per host a tenant can vary.
   */
  tenantId?: string;
}

export interface OutboundResponse {
  status: number;
  url: string;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  text(): Promise<string>;
}

export interface OutboundClient {
  request(purpose: string, url: string, init?: OutboundRequest): Promise<OutboundResponse>;
  /** A `fetch`-shaped function for clients written against fetch (the breached-password range client). */
  fetchFor(
    purpose: string,
  ): (url: string, init: OutboundRequest) => Promise<{ status: number; text(): Promise<string> }>;
  /**
   * The same checks for a raw TCP or TLS connection (syslog): host allowlist and address literal now
   * (throws OutboundRefusedError), resolved addresses in the returned `lookup`, which the caller passes
   * to `net.connect`/`tls.connect` so the address checked is the address connected to.
   */
  socketGuard(purpose: string, host: string): { lookup: LookupFunction };
  /**
   * Why a URL would be refused before any DNS lookup (scheme, credentials, host allowlist, an address
   * literal), or null: lets a setting be refused when it is made. Records nothing; names are judged
   * only when a request resolves them.
   */
  precheck(url: string, chosenBy: 'operator' | 'tenant'): string | null;
  close(): Promise<void>;
}

const redirectStatuses = new Set([301, 302, 303, 307, 308]);
/** What is read of a delivery's answer at most (then the connection is dropped): its status is all that counts. */
const DELIVERY_ANSWER_BYTES = 64 * 1024;

const systemResolve = async (hostname: string): Promise<ResolvedAddress[]> =>
  dnsLookup(hostname, { all: true, verbatim: true });

function hostAllowed(host: string, allowHosts: readonly string[]): boolean {
  if (allowHosts.length === 0) return true;
  return allowHosts.some((entry) =>
    entry.startsWith('*.') ? host.endsWith(entry.slice(1)) && host.length > entry.length - 1 : host === entry,
  );
}

/** URL hostnames keep IPv6 brackets; addresses are compared without them. */
const bare = (hostname: string) => hostname.replace(/^\[|\]$/g, '').toLowerCase();

/**
 * The one client for every outbound HTTP request of the server. Before any byte is sent it checks the
 * scheme, the host allowlist and the address: an IP literal directly, a name through a `lookup` hook
 * on the connection itself, so the address checked is the address connected to (a second DNS answer
 * cannot swap in 127.0.0.1: no rebinding window). Redirects are followed by hand, each hop checked
 * again, at most `maxRedirects`; the whole exchange is bounded in time and in response size.
 */
export function createOutboundClient(policy: OutboundPolicy, deps: OutboundDeps = {}): OutboundClient {
  const allowPrivateFor: Record<'operator' | 'tenant', ParsedCidr[]> = {
    operator: parseCidrs(policy.allowPrivate, 'OUTBOUND_ALLOW_PRIVATE'),
    tenant: parseCidrs(policy.tenantAllowPrivate, 'OUTBOUND_TENANT_ALLOW_PRIVATE'),
  };
  const allowHosts = policy.allowHosts.map((h) => h.toLowerCase());
  const resolve = deps.resolve ?? systemResolve;
  const agents = new Map<string, Agent>();

  // A refusal is reported where the request (or socket) is known: guarded() for HTTP, with the tenant it
  // was made for, and socketGuard() for raw connections. The agent's lookup is shared by every request of
  // its purpose, so it only refuses.
  const refuse = (refusal: OutboundRefusal): never => {
    throw new OutboundRefusedError(refusal);
  };

  function lookupFor(purpose: string, allowPrivate: readonly ParsedCidr[]): LookupFunction {
    return (hostname, options, callback) => {
      resolve(hostname).then(
        (addresses) => {
          const first = addresses[0];
          if (!first) return callback(new Error(`${hostname} has no address`), '', 0);
          // Every answer is checked, not only the one used: a name must not mix public and private addresses.
          for (const { address } of addresses) {
            const reason = forbiddenReason(address, allowPrivate);
            if (!reason) continue;
            return callback(new OutboundRefusedError({ purpose, host: hostname, reason, address }), '', 0);
          }
          if (options.all)
            (callback as unknown as (e: null, all: ResolvedAddress[]) => void)(null, addresses);
          else callback(null, first.address, first.family);
        },
        (error: Error) => callback(error, '', 0),
      );
    };
  }

  // One agent per purpose and chooser: its connections' lookup vets addresses against that chooser's list.
  const agentFor = (purpose: string, chosenBy: 'operator' | 'tenant'): Agent => {
    const key = `${chosenBy}:${purpose}`;
    let agent = agents.get(key);
    if (!agent) {
      agent = new Agent({
        connect: { lookup: lookupFor(purpose, allowPrivateFor[chosenBy]), timeout: policy.timeoutMs },
        connections: 4,
      });
      agents.set(key, agent);
    }
    return agent;
  };

  /** What is wrong with a URL before any lookup, or the parsed URL. */
  function judgeUrl(raw: string, allowPrivate: readonly ParsedCidr[]) {
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      return { host: '', reason: 'invalid_url' };
    }
    const host = bare(url.hostname);
    if (url.protocol !== 'https:' && url.protocol !== 'http:') return { host, reason: 'scheme_not_allowed' };
    if (url.username || url.password) return { host, reason: 'credentials_in_url' };
    if (!hostAllowed(host, allowHosts)) return { host, reason: 'host_not_allowed' };
    // An address literal never goes through lookup: judge it here.
    const reason = isIP(host) ? forbiddenReason(host, allowPrivate) : null;
    return reason ? { host, reason, address: host } : url;
  }

  function checkUrl(purpose: string, raw: string, allowPrivate: readonly ParsedCidr[]): URL {
    const judged = judgeUrl(raw, allowPrivate);
    return judged instanceof URL ? judged : refuse({ purpose, ...judged });
  }

  async function readCapped(purpose: string, host: string, body: AsyncIterable<Buffer>) {
    const chunks: Buffer[] = [];
    let total = 0;
    // Throwing out of for-await ends the iterator, which releases the stream.
    for await (const chunk of body) {
      total += chunk.length;
      if (total > policy.maxBytes) refuse({ purpose, host, reason: 'response_too_large' });
      chunks.push(chunk);
    }
    return Buffer.concat(chunks);
  }

  async function send(
    purpose: string,
    rawUrl: string,
    init: OutboundRequest = {},
  ): Promise<OutboundResponse> {
    const signal = init.signal
      ? AbortSignal.any([init.signal, AbortSignal.timeout(policy.timeoutMs)])
      : AbortSignal.timeout(policy.timeoutMs);
    const chosenBy = init.chosenBy ?? 'operator';
    const delivery = init.mode === 'deliver';
    let url = checkUrl(purpose, rawUrl, allowPrivateFor[chosenBy]);
    let method = init.method ?? 'GET';
    let body = init.body;
    let headers = { ...init.headers };
    for (let hop = 0; ; hop++) {
      const res = await request(url, {
        method,
        headers,
        body: body ?? null,
        dispatcher: agentFor(purpose, chosenBy),
        signal,
      });
      const host = bare(url.hostname);
      const location = res.headers.location;
      if (delivery) {
        // A delivery never follows a redirect: a 301/302 would turn the POST into a GET whose 2xx counts
        // as delivered, and a 307/308 would send the signed message to a destination nobody approved.
        await res.body.dump({ limit: DELIVERY_ANSWER_BYTES }).catch(() => {});
        return {
          status: res.statusCode,
          url: url.toString(),
          headers: res.headers,
          body: Buffer.alloc(0),
          text: async () => '',
        };
      }
      if (redirectStatuses.has(res.statusCode) && typeof location === 'string') {
        await res.body.dump({ limit: 64 * 1024 });
        if (hop >= policy.maxRedirects) refuse({ purpose, host, reason: 'too_many_redirects' });
        const next = checkUrl(purpose, new URL(location, url).toString(), allowPrivateFor[chosenBy]);
        // Credentials are for the origin they were given to.
        if (next.origin !== url.origin)
          headers = Object.fromEntries(
            Object.entries(headers).filter(([k]) => k.toLowerCase() !== 'authorization'),
          );
        if (
          res.statusCode === 303 ||
          ((res.statusCode === 301 || res.statusCode === 302) && method === 'POST')
        ) {
          method = 'GET';
          body = undefined;
        }
        url = next;
        continue;
      }
      const declared = Number(res.headers['content-length'] ?? 0);
      if (declared > policy.maxBytes) {
        await res.body.dump({ limit: 0 });
        refuse({ purpose, host, reason: 'response_too_large' });
      }
      const bytes = await readCapped(purpose, host, res.body);
      return {
        status: res.statusCode,
        url: url.toString(),
        headers: res.headers,
        body: bytes,
        text: async () => bytes.toString('utf8'),
      };
    }
  }

  /**
   * undici reports a refused lookup as the connection's error, sometimes wrapped: surface the refusal,
   * and report it once, with the tenant the request was made for.
   */
  async function guarded(purpose: string, url: string, init?: OutboundRequest): Promise<OutboundResponse> {
    try {
      return await send(purpose, url, init);
    } catch (error) {
      let cause: unknown = error;
      for (let depth = 0; cause && depth < 5; depth++) {
        if (cause instanceof OutboundRefusedError) {
          deps.onRefused?.(init?.tenantId ? { ...cause.refusal, tenantId: init.tenantId } : cause.refusal);
          throw cause;
        }
        cause = (cause as { cause?: unknown }).cause;
      }
      throw error;
    }
  }

  /** Reports a refusal of a raw connection (its checks now, or its lookup later) and passes it on. */
  const reported = <R>(check: () => R): R => {
    try {
      return check();
    } catch (error) {
      if (error instanceof OutboundRefusedError) deps.onRefused?.(error.refusal);
      throw error;
    }
  };

  function socketGuard(purpose: string, rawHost: string): { lookup: LookupFunction } {
    const host = bare(rawHost);
    reported(() => {
      if (!hostAllowed(host, allowHosts)) refuse({ purpose, host, reason: 'host_not_allowed' });
      if (isIP(host)) {
        const reason = forbiddenReason(host, allowPrivateFor.operator);
        if (reason) refuse({ purpose, host, reason, address: host });
      }
    });
    const lookup = lookupFor(purpose, allowPrivateFor.operator);
    return {
      lookup: (hostname, options, callback) =>
        lookup(hostname, options, ((error: Error | null, ...rest: unknown[]) => {
          if (error instanceof OutboundRefusedError) deps.onRefused?.(error.refusal);
          (callback as (error: Error | null, ...rest: unknown[]) => void)(error, ...rest);
        }) as typeof callback),
    };
  }

  return {
    request: guarded,
    socketGuard,
    precheck(url, chosenBy) {
      const judged = judgeUrl(url, allowPrivateFor[chosenBy]);
      return judged instanceof URL ? null : judged.reason;
    },
    fetchFor: (purpose) => (url, init) => guarded(purpose, url, init),
    async close() {
      await Promise.all([...agents.values()].map((agent) => agent.close()));
      agents.clear();
    },
  };
}
