// Access: how fast permission decisions are, in process (cached effective permissions) and over HTTP
// (the decision API: operator token, JSON body, schema validation, batch of one) against a bare
// Fastify route in the same run.
import { buildApp } from '../dist/app.js';
import { createOperatorService, toTenantRef } from '../dist/identity/index.js';
import { loadConfig } from '../dist/platform/config/index.js';
import { logDestination, loggerOptions } from '../dist/platform/log.js';
import { openBreachedScreen } from '../dist/runtime.js';
import { startBareServer } from './lib/bare-server.mjs';
import { openBenchDatabase } from './lib/db.mjs';
import { benchRateLimits } from './lib/limits.mjs';
import { measureRps } from './lib/load.mjs';
import { interleaveAll, metric } from './lib/measure.mjs';

export const name = 'access';

export const goals = {
  'in-process decisions': { atLeast: 1_000_000 },
  'decision endpoint/pglite': { ratioAtLeast: 0.6 },
  'decision endpoint/postgres': { ratioAtLeast: 0.6 },
};

const ctx = { actor: { type: 'system', id: 'bench' }, ip: null, userAgent: null, requestId: null };
const USERS = 16;
const PERMISSIONS = [
  'users:read',
  'users:write',
  'policy:write',
  'roles:read',
  'roles:assign',
  'audit:export',
];

/** An app with one tenant, USERS users (half staff, half tenant-admin) and an operator API token. */
async function benchApp(engine, pgUrl) {
  const database = await openBenchDatabase(engine, pgUrl);
  const config = loadConfig({
    DATA_DIR: 'memory://',
    ARGON2_MEMORY_KIB: '1024',
    ARGON2_ITERATIONS: '1',
    RATE_LIMITS: benchRateLimits,
  });
  const logger = loggerOptions('info', logDestination('/dev/null'));
  const app = await buildApp({ config, db: database.db, logger, breached: await openBreachedScreen(config) });
  const { tenancy, identity, access } = app.services;
  const tenant = toTenantRef(
    await tenancy.create(ctx, { slug: 'bench-co', displayName: 'Bench', region: 'eu-de' }),
  );
  const users = [];
  for (let i = 0; i < USERS; i++) {
    const user = await identity.accounts.invite(tenant, ctx, {
      email: `user${i}@bench.test`,
      displayName: `User ${i}`,
      role: i % 2 ? 'staff' : 'tenant-admin',
    });
    users.push(user.id);
  }
  // Warm the cache the way the first request for each user would.
  for (const user of users) await access.decide(tenant.id, user, 'users:read');
  const operators = createOperatorService({
    db: database.db,
    clock: { now: () => new Date() },
    tokenTtlDays: 1,
    publicUrl: config.publicUrl,
  });
  const { token } = await operators.create(ctx, 'bench-ops@bench.test', 'Bench');
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const close = async () => {
    await app.close();
    await database.close();
  };
  return { app, base, tenant, users, token, close };
}

/** Calls `decide` in a tight loop for `seconds`; returns decisions per second. */
function loopRate(decide, seconds) {
  let done = 0;
  let allowed = 0;
  const start = performance.now();
  const end = start + seconds * 1000;
  while (performance.now() < end) {
    for (let i = 0; i < 10_000; i++, done++)
      if (decide(done % USERS, done % PERMISSIONS.length) === true) allowed++;
  }
  if (allowed === 0) throw new Error('no decision allowed anything: the bench is not measuring decisions');
  return done / ((performance.now() - start) / 1000);
}

/** Decisions/s through access.decide (cache hits) vs the same lookups in a plain Map of Sets. */
async function inProcess(bench, { quick }) {
  const { access } = bench.app.services;
  const tenantId = bench.tenant.id;
  const plain = new Map(
    bench.users.map((u, i) => [u, new Set(i % 2 ? ['users:read', 'roles:read'] : PERMISSIONS)]),
  );
  const seconds = quick ? 0.5 : 1.5;
  const r = await interleaveAll(quick ? 1 : 3, {
    map: async () => loopRate((u, p) => plain.get(bench.users[u]).has(PERMISSIONS[p]), seconds),
    decide: async () => loopRate((u, p) => access.decide(tenantId, bench.users[u], PERMISSIONS[p]), seconds),
  });
  return metric(name, 'in-process decisions', r.decide, 'decisions/s', r.map);
}

/** POST /api/v1/access/decisions (one check) vs GET on a bare Fastify route, and vs the app's /healthz. */
async function endpoint(bench, engine, { quick }) {
  const bare = await startBareServer();
  try {
    const body = JSON.stringify({
      checks: [{ tenantId: bench.tenant.id, userId: bench.users[1], permission: 'users:read' }],
    });
    const headers = { authorization: `Bearer ${bench.token}`, 'content-type': 'application/json' };
    const url = `${bench.base}/api/v1/access/decisions`;
    const load = { seconds: quick ? 1 : 1.5, connections: 10 };
    const probe = await fetch(url, { method: 'POST', body, headers });
    const answer = await probe.json();
    if (JSON.stringify(answer) !== '{"allowed":[true]}')
      throw new Error(`decision endpoint answered ${JSON.stringify(answer)}`);
    await measureRps(url, { ...load, seconds: 0.5, method: 'POST', body, headers });
    const r = await interleaveAll(quick ? 1 : 3, {
      bare: () => measureRps(bare.url, load),
      floor: () => measureRps(`${bench.base}/healthz`, load),
      decision: () => measureRps(url, { ...load, method: 'POST', body, headers }),
    });
    // The second row separates what access costs from what every Rampart request costs (logging,
    // metrics, rate limits, headers): the same app's /healthz, measured in the same rounds.
    return [
      metric(name, `decision endpoint/${engine}`, r.decision, 'req/s', r.bare),
      metric(name, `decision endpoint vs /healthz/${engine}`, r.decision, 'req/s', r.floor),
    ];
  } finally {
    await bare.close();
  }
}

export async function run({ quick = false, pgUrl = null } = {}) {
  const results = [];
  const pglite = await benchApp('pglite', null);
  try {
    results.push(await inProcess(pglite, { quick }));
    results.push(...(await endpoint(pglite, 'pglite', { quick })));
  } finally {
    await pglite.close();
  }
  if (pgUrl) {
    const pg = await benchApp('postgres', pgUrl);
    try {
      results.push(...(await endpoint(pg, 'postgres', { quick })));
    } finally {
      await pg.close();
    }
  }
  return results;
}
