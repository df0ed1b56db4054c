// Identity: what a sign-in costs beyond the argon2id verification it must do, and what session
// validation costs a request. Each subject is measured beside its baseline in the same run.
import argon2 from 'argon2';
import { buildApp } from '../dist/app.js';
import { toTenantRef } from '../dist/identity/index.js';
import { loadConfig } from '../dist/platform/config/index.js';
import { logDestination, loggerOptions } from '../dist/platform/log.js';
import { openBreachedScreen } from '../dist/runtime.js';
import { startBareServer } from './lib/bare-server.mjs';
import { openBenchDatabase } from './lib/db.mjs';
import { benchRateLimits } from './lib/limits.mjs';
import { measureRps } from './lib/load.mjs';
import { interleaveAll, median, metric, opsPerSecond } from './lib/measure.mjs';

export const name = 'identity';

export const goals = {
  'sign-in vs argon2id/m=19MiB t=2': { ratioAtLeast: 0.9 },
  'sign-in vs argon2id/m=7MiB t=5': { ratioAtLeast: 0.9 },
  'sign-in vs argon2id/postgres/m=19MiB t=2': { ratioAtLeast: 0.9 },
  'sign-in vs argon2id/postgres/m=7MiB t=5': { ratioAtLeast: 0.9 },
  'session-validated request/pglite': { ratioAtLeast: 0.6 },
  'session-validated request/postgres': { ratioAtLeast: 0.6 },
  // 'session + one read (GET /me/sessions)/<engine>' is reported beside it without a goal: the same
  // check plus the handler's own database transaction (docs/identity.md, "Performance").
};

const PASSWORD = 'Quiet-Harbour-Lantern-2026';
const ctx = { actor: { type: 'system', id: 'bench' }, ip: null, userAgent: null, requestId: null };

/** An app on a fresh database with one tenant and one member whose password is PASSWORD. */
async function benchApp(engine, pgUrl, env) {
  const database = await openBenchDatabase(engine, pgUrl);
  // Limits raised, not switched off: the limiter's work per request is part of the measurement.
  const config = loadConfig({ DATA_DIR: 'memory://', RATE_LIMITS: benchRateLimits, ...env });
  const logger = loggerOptions('info', logDestination('/dev/null'));
  const app = await buildApp({ config, db: database.db, logger, breached: await openBreachedScreen(config) });
  const { tenancy, identity, mailer } = app.services;
  const tenant = toTenantRef(
    await tenancy.create(ctx, { slug: 'bench-co', displayName: 'Bench', region: 'eu-de' }),
  );
  await identity.accounts.invite(tenant, ctx, {
    email: 'user@bench.test',
    displayName: 'Bench User',
    role: 'member',
  });
  const [mail] = await mailer.outbox(1);
  const token = new URL(/https?:\/\/\S+/.exec(mail.text)[0]).searchParams.get('token');
  await identity.accounts.acceptInvite(tenant, ctx, token, PASSWORD);
  const base = await app.listen({ host: '127.0.0.1', port: 0 });
  const close = async () => {
    await app.close();
    await database.close();
  };
  return { app, base, tenant, close };
}

/**
 * Sign-ins/s over HTTP against raw argon2id verifications/s at the same parameters and concurrency.
 * The sign-in does the same one verification plus the lockout reservation, a session and an audit event.
 */
async function signInVsHash(params, engine, pgUrl, { quick }) {
  const env = {
    ARGON2_MEMORY_KIB: String(params.m),
    ARGON2_ITERATIONS: String(params.t),
    ARGON2_PARALLELISM: '1',
  };
  const bench = await benchApp(engine, pgUrl, env);
  const hash = await argon2.hash(PASSWORD, {
    type: argon2.argon2id,
    memoryCost: params.m,
    timeCost: params.t,
    parallelism: 1,
  });
  const connections = 4;
  const seconds = quick ? 1.5 : 3;
  try {
    const body = JSON.stringify({ email: 'user@bench.test', password: PASSWORD });
    const url = `${bench.base}/api/v1/t/bench-co/auth/signin`;
    const load = {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
      connections,
      seconds,
    };
    // CPU (all threads of this process: argon2 workers, the app, and the load generator's worker thread,
    // its start included) per operation, so the rate ratio can be read against where the time went: a
    // shared or busy machine moves rates more than it moves CPU per operation.
    const cpuPerOp = { raw: [], signIn: [] };
    const withCpu = (key, measure) => async () => {
      const before = process.cpuUsage();
      const rate = await measure();
      const used = process.cpuUsage(before);
      const ops = rate * seconds;
      cpuPerOp[key].push((used.user + used.system) / 1000 / ops);
      return rate;
    };
    const r = await interleaveAll(quick ? 1 : 2, {
      raw: withCpu('raw', () =>
        opsPerSecond(() => argon2.verify(hash, PASSWORD), { seconds, concurrency: connections }),
      ),
      signIn: withCpu('signIn', () => measureRps(url, load)),
    });
    // PGlite's rows keep their names of before PostgreSQL was measured too.
    const label = `${engine === 'pglite' ? '' : `${engine}/`}m=${Math.round(params.m / 1024)}MiB t=${params.t}`;
    return [
      metric(name, `sign-in vs argon2id/${label}`, r.signIn, 'sign-ins/s', r.raw),
      // value: CPU ms of one bare verification; baseline: CPU ms of one sign-in; ratio: argon2's share.
      metric(
        name,
        `argon2id share of sign-in CPU/${label}`,
        median(cpuPerOp.raw),
        'ms CPU',
        median(cpuPerOp.signIn),
      ),
    ];
  } finally {
    await bench.close();
  }
}

/**
 * Session-validated requests against a bare route: GET /me/session (tenant resolution, session
 * validation, access rule, response schema; the handler reads nothing more) and GET /me/sessions (the
 * same plus one tenant-scoped transaction listing the user's sessions).
 */
async function sessionVsBare(engine, pgUrl, { quick }) {
  const bench = await benchApp(engine, pgUrl, { ARGON2_MEMORY_KIB: '1024', ARGON2_ITERATIONS: '1' });
  const bare = await startBareServer();
  try {
    const signIn = await bench.app.services.identity.signIn(
      bench.tenant,
      'user@bench.test',
      PASSWORD,
      'bearer',
      ctx,
    );
    const headers = { authorization: `Bearer ${signIn.token}` };
    const check = `${bench.base}/api/v1/t/bench-co/me/session`;
    const list = `${bench.base}/api/v1/t/bench-co/me/sessions`;
    const load = { seconds: quick ? 1 : 1.5, connections: 10 };
    const floor = `${bench.base}/healthz`;
    for (const url of [bare.url, floor, check, list])
      await measureRps(url, { ...load, seconds: 0.5, headers });
    const r = await interleaveAll(quick ? 1 : 3, {
      bare: () => measureRps(bare.url, load),
      floor: () => measureRps(floor, load),
      session: () => measureRps(check, { ...load, headers }),
      list: () => measureRps(list, { ...load, headers }),
    });
    // The second row separates what the session check costs from what every Rampart request costs
    // (headers, CORS, the access line, metrics; probes are not rate-limited): the same app's /healthz.
    return [
      metric(name, `session-validated request/${engine}`, r.session, 'req/s', r.bare),
      metric(name, `session-validated request vs /healthz/${engine}`, r.session, 'req/s', r.floor),
      metric(name, `session + one read (GET /me/sessions)/${engine}`, r.list, 'req/s', r.bare),
    ];
  } finally {
    await bare.close();
    await bench.close();
  }
}

export async function run({ quick = false, pgUrl = null } = {}) {
  const results = [];
  results.push(...(await signInVsHash({ m: 19456, t: 2 }, 'pglite', null, { quick })));
  results.push(...(await signInVsHash({ m: 7168, t: 5 }, 'pglite', null, { quick })));
  if (pgUrl) {
    // The database on its own processes: what a sign-in costs the server beyond argon2id without the
    // embedded engine's statements on the event loop.
    results.push(...(await signInVsHash({ m: 19456, t: 2 }, 'postgres', pgUrl, { quick })));
    results.push(...(await signInVsHash({ m: 7168, t: 5 }, 'postgres', pgUrl, { quick })));
  }
  results.push(...(await sessionVsBare('pglite', null, { quick })));
  if (pgUrl) results.push(...(await sessionVsBare('postgres', pgUrl, { quick })));
  return results;
}
