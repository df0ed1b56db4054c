import { Counter, type Registry } from 'prom-client';
import { recordAuditEvent, recordAuditEvents } from '../audit/index.ts';
import type { Config } from '../platform/config/index.ts';
import type { Clock } from '../platform/context.ts';
import type { Database } from '../platform/db/index.ts';
import { openRedis, type Redis } from '../platform/redis.ts';
import { createAuditSampler } from './audit-sampler.ts';
import {
  createOutboundClient,
  type OutboundClient,
  type OutboundDeps,
  type OutboundRefusal,
  outboundPolicyFrom,
} from './outbound/index.ts';
import { createRateLimiters, type RateLimiters, type StoreFailure } from './rate-limit/limiters.ts';
import { applyOverrides, defaultLimits } from './rate-limit/policy.ts';
import { limiterFactory, type StoreKind, storeKindFor } from './rate-limit/store.ts';
import { type BlockLists, createBlockLists, listName } from './reputation/lists.ts';

export interface ProtectLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

const quiet: ProtectLog = { info() {}, warn() {}, error() {} };

export interface ProtectionDeps {
  config: Config;
  db: Database;
  clock: Clock;
  /** Until the app's logger is attached (useLogger), nothing is logged: no requests run before that. */
  log?: ProtectLog;
  /** Tests inject a DNS resolver for the outbound guard. */
  resolve?: OutboundDeps['resolve'];
}

const systemContext = {
  actor: { type: 'system' as const, id: 'protect' },
  ip: null,
  userAgent: null,
  requestId: null,
};

export interface Protection {
  store: StoreKind;
  limiters: RateLimiters;
  /** IP_BLOCKLISTS, loaded at start (ready) and refreshed on schedule. */
  blockLists: BlockLists;
  /** Audits a refused request from a listed address (sampled: once per address per 10 minutes, 30 a minute in all). */
  recordBlocked(address: string, list: string): void;
  /** A block an upstream WAF reported (src/protect/waf.ts): counted, and sampled like recordBlocked. */
  recordWafBlocked(source: string, address: string, ruleId: string): void;
  /** Counts a request refused by a rate limit (429); the counts reach the audit trail once a minute. */
  countLimited(routeClass: string, scope: string): void;
  /**
   * Writes the refusals counted since the last flush as one `protect.blocks.counted` event per source
   * (the `protect.blocks` anomaly rule sums them over every node). Runs every minute and at close.
   */
  flushBlockCounts(): Promise<void>;
  /** The guarded client every outbound HTTP request goes through; refusals are audited and counted. */
  outbound: OutboundClient;
  /** Logs through the app's logger from now on. */
  useLogger(log: ProtectLog): void;
  /** Waits (at most a few seconds) for the shared store's first connection; the fail modes cover the rest. */
  ready(): Promise<void>;
  /** Adds the Protect counters to the app's registry (called once the metrics plugin exists). */
  registerMetrics(registry: Registry): void;
  close(): Promise<void>;
}

/** How often one node writes "the counter store is unreachable" to the audit trail per route class. */
const AUDIT_EVERY_MS = 60_000;
/** How often one node samples a refused request from one address into the trail. */
const BLOCKED_EVERY_MS = 600_000;
/** The most sampling keys a node remembers (hosts, addresses): about a megabyte at most. */
const MAX_SAMPLED_KEYS = 10_000;

/**
 * Builds the shared protections from the configuration: the rate limiters on the chosen store (opening
 * its own Redis connection when that store is Redis). Store failures are logged, counted and audited.
 */
export function createProtection({ config, db, clock, resolve, ...deps }: ProtectionDeps): Protection {
  let log = deps.log ?? quiet;
  const limits = defaultLimits();
  const problems = applyOverrides(limits, config.rateLimits);
  if (problems.length > 0) throw new Error(problems.join('\n'));
  const store = storeKindFor(config);
  if (store === 'redis' && !config.redisUrl) throw new Error('RATE_LIMIT_STORE=redis needs REDIS_URL');
  const redis: Redis | undefined =
    store === 'redis' && config.redisUrl ? openRedis(config.redisUrl, 'rampart-rate-limit') : undefined;

  let storeErrors: Counter<'store' | 'class'> | null = null;
  let outboundRefused: Counter<'purpose' | 'reason'> | null = null;
  const sampled = createAuditSampler(clock, { maxKeys: MAX_SAMPLED_KEYS, maxWindowMs: BLOCKED_EVERY_MS });
  /** At most one audit event per key and minute per node: a failing dependency must not flood the trail. */
  const due = (key: string) => sampled.admit(key, AUDIT_EVERY_MS);
  // Events written in the background (a request does not wait for them); the flush and close wait for
  // them first, so the counts land after the samples they include and nothing is cut off at shutdown.
  const writing = new Set<Promise<void>>();
  const auditSystem = (action: `protect.${string}`, details: Record<string, string>) => {
    const write = db
      .withSystem((tx) =>
        recordAuditEvent(tx, clock, systemContext, { tenantId: null, action, outcome: 'failure', details }),
      )
      .then(
        () => {},
        (error: unknown) => log.error({ err: error, action }, 'could not write the audit event'),
      )
      .finally(() => writing.delete(write));
    writing.add(write);
    return write;
  };
  const onStoreFailure = (failure: StoreFailure) => {
    storeErrors?.inc({ store: failure.store, class: failure.routeClass });
    if (!due(`store:${failure.routeClass}`)) return;
    const mode = failure.failClosed ? 'closed' : 'open';
    log.error(
      { err: failure.error, store: failure.store, routeClass: failure.routeClass, mode },
      'rate-limit store unreachable',
    );
    void auditSystem('protect.ratelimit.store_unavailable', {
      store: failure.store,
      routeClass: failure.routeClass,
      mode,
    });
  };

  const onRefused = (refusal: OutboundRefusal) => {
    outboundRefused?.inc({ purpose: refusal.purpose, reason: refusal.reason });
    log.warn(refusal, 'outbound request refused');
    // A request made for a tenant (its alert webhook) is sampled per tenant, not per host: its admin
    // chooses the URL, and a redirect can name a new host on every attempt. One event a minute per
    // tenant, purpose and reason; the rest are logged and counted.
    const about = refusal.tenantId ? `tenant:${refusal.tenantId}` : `host:${refusal.host}`;
    if (!due(`outbound:${refusal.purpose}:${about}:${refusal.reason}`)) return;
    void auditSystem('protect.outbound.refused', {
      purpose: refusal.purpose,
      host: refusal.host,
      reason: refusal.reason,
      ...(refusal.address ? { address: refusal.address } : {}),
      ...(refusal.tenantId ? { tenant: refusal.tenantId } : {}),
    });
  };
  const outbound = createOutboundClient(outboundPolicyFrom(config), {
    onRefused,
    ...(resolve ? { resolve } : {}),
  });
  const blockLists = createBlockLists(config.ipBlocklists, {
    outbound,
    clock,
    log: { info: (obj, msg) => log.info(obj, msg), warn: (obj, msg) => log.warn(obj, msg) },
  });
  const blockCounts = new Map<string, { kind: string; source: string; count: number }>();
  const countBlock = (kind: 'ratelimit' | 'iplist' | 'waf', source: string) => {
    const key = `${kind}:${source}`;
    const entry = blockCounts.get(key);
    if (entry) entry.count += 1;
    else blockCounts.set(key, { kind, source, count: 1 });
  };
  const flushBlockCounts = async () => {
    await Promise.all([...writing]);
    const counts = [...blockCounts.values()];
    blockCounts.clear();
    if (counts.length === 0) return;
    await db
      .withSystem((tx) =>
        recordAuditEvents(
          tx,
          clock,
          systemContext,
          counts.map((c) => ({
            tenantId: null,
            action: 'protect.blocks.counted' as const,
            outcome: 'denied' as const,
            details: { kind: c.kind, source: c.source, count: c.count },
          })),
        ),
      )
      .catch((error: unknown) =>
        log.error({ err: error }, 'could not write the block counts to the audit trail'),
      );
  };
  let flushTimer: NodeJS.Timeout | null = null;

  let blockedWindow = { start: 0, audited: 0 };
  /** Samples a refusal into the trail: once per address per 10 minutes, 30 a minute in all, per node. */
  const sampleBlocked = (address: string, action: `protect.${string}`, details: Record<string, string>) => {
    const now = clock.now().getTime();
    if (now - blockedWindow.start >= 60_000) blockedWindow = { start: now, audited: 0 };
    if (blockedWindow.audited >= 30) return;
    if (!sampled.admit(`blocked:${address}`, BLOCKED_EVERY_MS)) return;
    blockedWindow.audited += 1;
    void auditSystem(action, { address, ...details });
  };
  const recordBlocked = (address: string, list: string) => {
    // A list named by URL is shown without its query string (feeds put access keys there) or credentials.
    const name = listName(list);
    countBlock('iplist', name);
    sampleBlocked(address, 'protect.ip.blocked', { list: name });
  };
  const recordWafBlocked = (source: string, address: string, ruleId: string) => {
    countBlock('waf', source);
    sampleBlocked(address, 'protect.waf.blocked', { source, ruleId });
  };

  const limiters = createRateLimiters({
    limits,
    factory: limiterFactory(store, { ...(redis ? { redis } : {}), db }),
    store,
    failClosed: new Set(config.rateLimitFailClosed),
    onStoreFailure,
  });

  return {
    store,
    limiters,
    outbound,
    blockLists,
    recordBlocked,
    recordWafBlocked,
    countLimited: (routeClass, scope) => countBlock('ratelimit', `${routeClass}.${scope}`),
    flushBlockCounts,
    useLogger(logger) {
      log = logger;
    },
    async ready() {
      flushTimer ??= setInterval(() => void flushBlockCounts(), 60_000);
      flushTimer.unref();
      await blockLists.refresh();
      blockLists.schedule(config.ipBlocklistRefreshSeconds);
      if (!redis || redis.status === 'ready') return;
      await new Promise<void>((resolve) => {
        const done = () => {
          clearTimeout(timer);
          redis.off('ready', done);
          redis.off('error', done);
          resolve();
        };
        const timer = setTimeout(done, 3_000);
        redis.once('ready', done);
        redis.once('error', done);
      });
    },
    registerMetrics(registry) {
      storeErrors = new Counter({
        name: 'rampart_rate_limit_store_errors_total',
        help: 'Rate-limit checks that could not reach the shared counter store',
        labelNames: ['store', 'class'],
        registers: [registry],
      });
      outboundRefused = new Counter({
        name: 'rampart_outbound_refused_total',
        help: 'Outbound requests refused by the egress guard, by purpose and reason',
        labelNames: ['purpose', 'reason'],
        registers: [registry],
      });
    },
    async close() {
      if (flushTimer) clearInterval(flushTimer);
      await flushBlockCounts();
      blockLists.stop();
      await outbound.close();
      redis?.disconnect();
    },
  };
}
