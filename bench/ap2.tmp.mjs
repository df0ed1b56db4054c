import { readdirSync, readFileSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { openEngine } from './audit.mjs';
import { recordAuditEvents } from '../dist/audit/index.js';
import { asTenantId } from '../dist/platform/db/index.js';
const kind = process.argv[2] ?? 'postgres';
const { db, close } = await openEngine(kind, 'postgres://postgres@127.0.0.1:5432/test', '/tmp/benchtmp/pgl' + Date.now());
function pgTicks() {
  let t = 0;
  for (const p of readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const s = readFileSync(`/proc/${p}/stat`, 'utf8');
      if (!s.includes('(postgres)')) continue;
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      t += Number(f[11]) + Number(f[12]);
    } catch {}
  }
  return t * 10; // ms
}
const clock = { now: () => new Date() };
const ctx = { actor: { type: 'user', id: 'bench-user' }, ip: '198.51.100.23', userAgent: 'Mozilla/5.0 (X11; Linux x86_64) bench', requestId: 'bench-request-0001' };
const actions = ['identity.signin.password','identity.session.revoked','access.role.granted','tenancy.tenant.suspended'];
const event = (tenantId, i) => ({ tenantId, action: actions[i % 4], outcome: i % 7 === 0 ? 'failure' : 'success', target: { type: 'user', id: `user-${i % 5000}` }, details: { email: `user${i % 5000}@bench.test`, factor: 'password', attempt: i } });
const tenants = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
const ptenants = [randomUUID(), randomUUID(), randomUUID(), randomUUID()];
const zero = Buffer.alloc(32); const seq = new Map(ptenants.map((t) => [t, 0]));
let n = 0;
const chained = async (w) => { const t = tenants[w]; const ev = Array.from({ length: 100 }, () => event(t, n++)); await db.withTenant(asTenantId(t), (tx) => recordAuditEvents(tx, clock, ctx, ev)); };
const plain = async (w) => { const t = ptenants[w]; const rows = Array.from({ length: 100 }, () => { const e = event(t, n++); const s = seq.get(t) + 1; seq.set(t, s); return { id: randomUUID(), tenant_id: t, occurred_at: clock.now(), actor_type: 'user', actor_id: 'bench-user', actor_elevation_id: null, action: e.action, target_type: 'user', target_id: e.target.id, outcome: e.outcome, ip: ctx.ip, user_agent: ctx.userAgent, request_id: ctx.requestId, details: JSON.stringify(e.details), chain_seq: String(s), prev_hash: zero, hash: zero }; }); await db.withTenant(asTenantId(t), (tx) => tx.insertInto('audit_events').values(rows).execute()); };
async function run(name, fn) {
  const c0 = process.cpuUsage(); const p0 = pgTicks(); const t0 = performance.now(); let calls = 0;
  const end = t0 + 3000;
  await Promise.all([0,1,2,3].map(async (w) => { while (performance.now() < end) { await fn(w); calls++; } }));
  const el = performance.now() - t0; const c = process.cpuUsage(c0); const p = pgTicks() - p0;
  console.log(name, Math.round(calls*100/(el/1000)), 'ev/s; per txn: wall', (el/calls*4).toFixed(2), 'ms node cpu', ((c.user+c.system)/1000/calls).toFixed(2), 'ms pg cpu', (p/calls).toFixed(2), 'ms');
}
for (let i = 0; i < 3; i++) { await run('plain  ', plain); await run('chained', chained); }
await close();
