// Main-thread busy µs per request (event-loop utilisation), autocannon in a worker.
import autocannon from 'autocannon';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
const mainTicks = () => { const st = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8'); const f = st.slice(st.lastIndexOf(')') + 2).split(' '); return Number(f[11]) + Number(f[12]); };
import { buildApp } from '../dist/app.js';
import { toTenantRef } from '../dist/identity/index.js';
import { loadConfig } from '../dist/platform/config/index.js';
import { logDestination, loggerOptions } from '../dist/platform/log.js';
import { openBreachedScreen } from '../dist/runtime.js';
import { startBareServer } from './lib/bare-server.mjs';
import { openBenchDatabase } from './lib/db.mjs';
import { benchRateLimits } from './lib/limits.mjs';
const PASSWORD = 'Quiet-Harbour-Lantern-2026';
const ctx = { actor: { type: 'system', id: 'bench' }, ip: null, userAgent: null, requestId: null };
const database = await openBenchDatabase('pglite');
const config = loadConfig({ DATA_DIR: 'memory://', RATE_LIMITS: benchRateLimits, ARGON2_MEMORY_KIB: '1024', ARGON2_ITERATIONS: '1' });
const app = await buildApp({ config, db: database.db, logger: loggerOptions('info', logDestination('/dev/null')), breached: await openBreachedScreen(config) });
const { tenancy, identity, mailer } = app.services;
const tenant = toTenantRef(await tenancy.create(ctx, { slug: 'bench-co', displayName: 'Bench', region: 'eu-de' }));
await identity.accounts.invite(tenant, ctx, { email: 'user@bench.test', displayName: 'Bench User', role: 'member' });
const [mail] = await mailer.outbox(1);
const token = new URL(/https?:\/\/\S+/.exec(mail.text)[0]).searchParams.get('token');
await identity.accounts.acceptInvite(tenant, ctx, token, PASSWORD);
const base = await app.listen({ host: '127.0.0.1', port: 0 });
const bare = await startBareServer();
const s = await identity.signIn(tenant, 'user@bench.test', PASSWORD, 'bearer', ctx);
const headers = { authorization: `Bearer ${s.token}` };
const targets = { bare: [bare.url, {}], healthz: [`${base}/healthz`, {}], session: [`${base}/api/v1/t/bench-co/me/session`, headers],
  decision: [`${base}/api/v1/access/decisions`, null] };
const only = process.argv.slice(2);
async function measure(name) {
  const [url, h] = targets[name];
  const e0 = performance.eventLoopUtilization(); const t0 = mainTicks();
  const r = await autocannon({ url, connections: 10, duration: 2, pipelining: 1, workers: 1, headers: h });
  const e = performance.eventLoopUtilization(e0); const ticks = mainTicks() - t0;
  if (r.non2xx + r.errors) throw new Error(`${name} failed ${r.non2xx} ${r.errors}`);
  const n = r.requests.total;
  return { rps: Math.round(n / 2), eluUs: ((e.active) * 1000 / n).toFixed(1), cpuUs: (ticks * 10000 / n).toFixed(1) };
}
for (const n of only.length ? only : ['bare', 'healthz', 'session']) await measure(n);
const prof = process.env.PROF ? new Session() : null;
if (prof) { prof.connect(); await prof.post('Profiler.enable'); await prof.post('Profiler.start'); }
for (let i = 0; i < 2; i++) for (const n of only.length ? only : ['bare', 'healthz', 'session']) console.log(n, JSON.stringify(await measure(n)));
if (prof) { const { profile } = await prof.post('Profiler.stop'); writeFileSync(process.env.PROF, JSON.stringify(profile)); }
await app.close(); await bare.close(); await database.close();
