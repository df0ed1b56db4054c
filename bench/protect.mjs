// Protect: what the rate limiter costs per request (the same app with and without it, same run), and
// how fast the IP block lists answer with 100,000 ranges loaded.
import ipaddr from 'ipaddr.js';
import { buildApp } from '../dist/app.js';
import { loadConfig } from '../dist/platform/config/index.js';
import { logDestination, loggerOptions } from '../dist/platform/log.js';
import { buildCidrSet } from '../dist/protect/reputation/cidr-set.js';
import { openBreachedScreen } from '../dist/runtime.js';
import { openBenchDatabase } from './lib/db.mjs';
import { benchRateLimits } from './lib/limits.mjs';
import { measureRps } from './lib/load.mjs';
import { interleaveAll, metric } from './lib/measure.mjs';

export const name = 'protect';

export const goals = {
  'rate limiter/memory': { ratioAtLeast: 0.9 },
};

/** The app as `rampart start` builds it, listening on loopback; limits raised so nothing is refused. */
async function serve(db, env) {
  const logger = loggerOptions('info', logDestination('/dev/null'));
  const config = loadConfig({ DATA_DIR: 'memory://', RATE_LIMITS: benchRateLimits, ...env });
  const app = await buildApp({ config, db, logger, breached: await openBreachedScreen(config) });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  return { app, url };
}

/**
 * Requests/s of one limited route (the pages' stylesheet: class `public`, no database work, so the
 * limiter's share is as large as it gets) with the limiter on each store against the limiter off.
 */
async function limiterCost(db, { quick, skip }) {
  const servers = {
    off: await serve(db, { RATE_LIMIT_ENABLED: 'false' }),
    memory: await serve(db, { RATE_LIMIT_STORE: 'memory' }),
  };
  if (process.env.REDIS_URL)
    servers.redis = await serve(db, { RATE_LIMIT_STORE: 'redis', REDIS_URL: process.env.REDIS_URL });
  else skip('rate limiter/redis (REDIS_URL is not set)');
  try {
    const load = { seconds: quick ? 1 : 2, connections: 10 };
    const path = '/assets/rampart.css';
    for (const { url } of Object.values(servers)) await measureRps(`${url}${path}`, { seconds: 0.5 });
    const r = await interleaveAll(
      quick ? 1 : 3,
      Object.fromEntries(
        Object.entries(servers).map(([key, { url }]) => [key, () => measureRps(`${url}${path}`, load)]),
      ),
    );
    const results = [metric(name, 'rate limiter/memory', r.memory, 'req/s', r.off)];
    if (r.redis) results.push(metric(name, 'rate limiter/redis', r.redis, 'req/s', r.off));
    return results;
  } finally {
    for (const { app } of Object.values(servers)) await app.close();
  }
}

/** A deterministic generator, so every run looks up the same addresses in the same ranges. */
function random(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state;
  };
}

const v4 = (n) => `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;

/**
 * Lookups/s in 100,000 ranges (90% IPv4 /16-/32, 10% IPv6 /32-/64), against the fastest thing a lookup
 * could be: a JavaScript Set of address strings (exact match only) holding the same number of entries.
 */
function listLookups({ quick, log }) {
  const next = random(42);
  const cidrs = [];
  for (let i = 0; i < 100_000; i++) {
    if (i % 10 === 0) {
      const parts = [0x2001, next() & 0xffff, next() & 0xffff, next() & 0xffff, 0, 0, 0, 0];
      cidrs.push([ipaddr.IPv6.parse(parts.map((p) => p.toString(16)).join(':')), 32 + (next() % 33)]);
    } else cidrs.push([ipaddr.IPv4.parse(v4(next())), 16 + (next() % 17)]);
  }
  const built = performance.now();
  const set = buildCidrSet(cidrs);
  log(
    `   100,000 ranges merged to ${set.size.v4} IPv4 + ${set.size.v6} IPv6 intervals in ${(performance.now() - built).toFixed(0)} ms`,
  );
  const probes = Array.from({ length: 100_000 }, (_, i) =>
    i % 10 === 0 ? `2001:${(next() & 0xffff).toString(16)}::${(next() & 0xffff).toString(16)}` : v4(next()),
  );
  const exact = new Set(cidrs.map(([address]) => address.toString()));
  const rate = (fn) => {
    const rounds = quick ? 2 : 5;
    const started = performance.now();
    let hits = 0;
    for (let round = 0; round < rounds; round++) for (const probe of probes) if (fn(probe)) hits += 1;
    return { perSecond: (rounds * probes.length) / ((performance.now() - started) / 1000), hits };
  };
  rate((p) => set.has(p)); // warm-up
  const baseline = rate((p) => exact.has(p));
  const subject = rate((p) => set.has(p));
  return [metric(name, 'IP lookups/100k ranges', subject.perSecond, 'lookups/s', baseline.perSecond)];
}

export async function run({ quick, log, skip }) {
  const { db, close } = await openBenchDatabase('pglite');
  try {
    return [...(await limiterCost(db, { quick, skip })), ...listLookups({ quick, log })];
  } finally {
    await close();
  }
}
