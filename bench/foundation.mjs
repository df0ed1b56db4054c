// Foundation: the cost of Rampart's request pipeline and of row-level security, and what the embedded
// default costs to start and to keep idle. Each subject is measured beside its baseline.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { sql } from 'kysely';
import { buildApp } from '../dist/app.js';
import { envNames, loadConfig } from '../dist/platform/config/index.js';
import { logDestination, loggerOptions } from '../dist/platform/log.js';
import { openBreachedScreen } from '../dist/runtime.js';
import { startBareServer } from './lib/bare-server.mjs';
import { startAndMeasure } from './lib/cold-start.mjs';
import { openBenchDatabase } from './lib/db.mjs';
import { benchRateLimits } from './lib/limits.mjs';
import { measureRps } from './lib/load.mjs';
import { interleaveAll, median, metric, opsPerSecond } from './lib/measure.mjs';

export const name = 'foundation';

// The brief's targets. Its 60% is for an authenticated request; /readyz is the pipeline that exists so far.
export const goals = {
  'readyz/pglite': { ratioAtLeast: 0.6 },
  'readyz/postgres': { ratioAtLeast: 0.6 },
  'cold start/restart': { below: 1500 },
  'idle RSS/first run': { below: 200 },
  'idle RSS/restart': { below: 200 },
};

/**
 * (a) Requests/s of Rampart's whole app against a bare Fastify route: /readyz (one query per request)
 * and /healthz (the same pipeline without the database), so the two costs can be told apart.
 */
async function readyzVsBare(engine, db, { quick }) {
  const bare = await startBareServer();
  // Production logs every request: the lines go to /dev/null so their cost is counted, not printed.
  const logger = loggerOptions('info', logDestination('/dev/null'));
  // Limits raised, not switched off: the limiter's work per request is part of the measurement.
  const config = loadConfig({ DATA_DIR: 'memory://', RATE_LIMITS: benchRateLimits });
  // Wired as server.ts wires it, so the app is the one `rampart start` serves.
  const app = await buildApp({ config, db, logger, breached: await openBreachedScreen(config) });
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const load = { seconds: quick ? 1 : 1.5, connections: 10 };
    const targets = { bare: bare.url, readyz: `${base}/readyz` };
    // /healthz never touches the database: measuring it on one engine is enough.
    if (engine === 'pglite') targets.healthz = `${base}/healthz`;
    // Warm-up, so no side is measured while the JIT still compiles its hot path.
    for (const url of Object.values(targets)) await measureRps(url, { seconds: 0.5 });
    const measurements = Object.fromEntries(
      Object.entries(targets).map(([key, url]) => [key, () => measureRps(url, load)]),
    );
    const r = await interleaveAll(quick ? 1 : 3, measurements);
    const results = [metric(name, `readyz/${engine}`, r.readyz, 'req/s', r.bare)];
    if (r.healthz) results.push(metric(name, 'healthz (no database)', r.healthz, 'req/s', r.bare));
    return results;
  } finally {
    await app.close();
    await bare.close();
  }
}

const ROWS_PER_TENANT = 1000;
const itemsTable = (table) => `
  CREATE TABLE ${table} (tenant_id uuid NOT NULL REFERENCES tenants (id), id int NOT NULL,
    name text NOT NULL, PRIMARY KEY (tenant_id, id));
  GRANT SELECT ON ${table} TO rampart_app;`;

/** Two tenants with the same rows in a table under RLS and in a plain copy without it. */
async function seedItems(db) {
  return db.engine.asOwner(async (owner) => {
    await owner.exec(`${itemsTable('bench_items')}
      SELECT rampart_enable_tenant_rls('bench_items');
      ${itemsTable('bench_items_plain')}`);
    const tenants = await owner.query(`INSERT INTO tenants (slug, display_name, region)
      VALUES ('bench-a', 'A', 'eu-de'), ('bench-b', 'B', 'eu-de') RETURNING id`);
    await owner.exec(`
      INSERT INTO bench_items SELECT t.id, g, 'item ' || g FROM tenants t, generate_series(1, ${ROWS_PER_TENANT}) g;
      INSERT INTO bench_items_plain SELECT * FROM bench_items;
      ANALYZE bench_items; ANALYZE bench_items_plain;`);
    return tenants.map((t) => t.id);
  });
}

/**
 * (b) A point read by key through withTenant (SET LOCAL + RLS policy) against the same read in the same
 * kind of transaction, as the same app role, on a table without RLS and filtered by tenant_id by hand.
 */
async function tenantRead(engine, db, { quick }) {
  const tenants = await seedItems(db);
  const pick = (i) => ({ tenant: tenants[i % 2], id: ((i * 7919) % ROWS_PER_TENANT) + 1 });
  // Every read must find its one row: a policy that hid everything would otherwise look fast.
  const one = ({ rows }) => {
    if (rows.length !== 1) throw new Error(`expected 1 row, got ${rows.length}`);
  };
  const withRls = (i) => {
    const { tenant, id } = pick(i);
    return db.withTenant(tenant, async (tx) =>
      one(await sql`SELECT id, name FROM bench_items WHERE id = ${id}`.execute(tx)),
    );
  };
  const withoutRls = (i) => {
    const { tenant, id } = pick(i);
    const read = sql`SELECT id, name FROM bench_items_plain WHERE tenant_id = ${tenant} AND id = ${id}`;
    return db.withSystem(async (tx) => one(await read.execute(tx)));
  };
  const load = { seconds: quick ? 0.5 : 1, concurrency: 4 };
  await opsPerSecond(withoutRls, { seconds: 0.3, concurrency: 4 });
  await opsPerSecond(withRls, { seconds: 0.3, concurrency: 4 });
  const r = await interleaveAll(quick ? 1 : 3, {
    withoutRls: () => opsPerSecond(withoutRls, load),
    withRls: () => opsPerSecond(withRls, load),
  });
  return metric(name, `tenant read/${engine}`, r.withRls, 'reads/s', r.withoutRls);
}

/** The embedded default: no Rampart setting from this shell leaks in (DATABASE_URL above all). */
function embeddedEnv(dataDir) {
  const env = { ...process.env };
  for (const { env: key } of Object.values(envNames)) delete env[key];
  delete env.RAMPART_CONFIG;
  return { ...env, DATA_DIR: dataDir, PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info' };
}

/**
 * (c) Spawn to first 200 from /readyz, and RSS after idling, for `rampart start` on a fresh data directory
 * (first run: initdb and every migration) and on the existing one (restart), against a bare Fastify process.
 */
async function coldStart({ quick }) {
  const dataDir = mkdtempSync(join(tmpdir(), 'rampart-bench-'));
  const idleMs = quick ? 1000 : 2000;
  const rampart = (idle) =>
    // The same V8 flag as the rampart shebang and `npm start` (a small young generation).
    startAndMeasure(
      ['--max-semi-space-size=1', fileURLToPath(new URL('../bin/rampart.js', import.meta.url)), 'start'],
      {
        env: embeddedEnv(dataDir),
        readyMsg: 'rampart ready',
        readyPath: '/readyz',
        idleMs: idle,
      },
    );
  const bare = (idle) =>
    startAndMeasure([fileURLToPath(new URL('./lib/bare-server.mjs', import.meta.url))], {
      env: embeddedEnv(dataDir),
      readyMsg: 'bare ready',
      readyPath: '/',
      idleMs: idle,
    });
  try {
    const first = await rampart(idleMs);
    // Restarts vary with the page cache and the scheduler: take the median of a few; idle only on the last.
    const restarts = [];
    const bares = [];
    const count = quick ? 1 : 3;
    for (let i = 0; i < count; i++) {
      const idle = i === count - 1 ? idleMs : 0;
      bares.push(await bare(idle));
      restarts.push(await rampart(idle));
    }
    const bareMs = median(bares.map((b) => b.startMs));
    const bareRss = bares.at(-1).rssMiB;
    return [
      metric(name, 'cold start/first run', first.startMs, 'ms', bareMs),
      metric(name, 'cold start/restart', median(restarts.map((r) => r.startMs)), 'ms', bareMs),
      metric(name, 'idle RSS/first run', first.rssMiB, 'MiB', bareRss),
      metric(name, 'idle RSS/restart', restarts.at(-1).rssMiB, 'MiB', bareRss),
    ];
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

export async function run(ctx) {
  const results = [];
  for (const engine of ctx.pgUrl ? ['pglite', 'postgres'] : ['pglite']) {
    // One migrated database per engine serves (a) and (b): an in-memory PGlite costs an initdb each time.
    const { db, close } = await openBenchDatabase(engine, ctx.pgUrl);
    try {
      ctx.log?.(`foundation: /readyz and /healthz vs bare Fastify on ${engine}`);
      results.push(...(await readyzVsBare(engine, db, ctx)));
      ctx.log?.(`foundation: tenant read with and without RLS on ${engine}`);
      results.push(await tenantRead(engine, db, ctx));
    } finally {
      await close();
    }
  }
  if (!ctx.pgUrl) ctx.skip?.('readyz and tenant read on postgres: set BENCH_DATABASE_URL to run them');
  ctx.log?.('foundation: cold start and idle RSS of the embedded default');
  results.push(...(await coldStart(ctx)));
  return results;
}
