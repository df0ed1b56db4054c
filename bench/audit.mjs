// Audit: durable hash-chained appends against plain batched INSERTs of the same rows into the same
// table (same indexes and triggers, chain columns filled with fixed values and no head lock), chain
// verification speed against reading the same rows, on PGlite (on disk) and PostgreSQL.
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { verifyBundle, writeBundle } from '../dist/audit/bundle.js';
import { uncheckedPages } from '../dist/audit/check.js';
import {
  checkpointSigner,
  createCheckpoint,
  recordAuditEvents,
  trustedKeys,
  verifyAuditChain,
} from '../dist/audit/index.js';
import { allMigrations } from '../dist/migrations.js';
import { asTenantId, openDatabase, openPgliteEngine } from '../dist/platform/db/index.js';
import { searchLatency } from './lib/audit-search.mjs';
import { openBenchDatabase } from './lib/db.mjs';
import { interleave, metric } from './lib/measure.mjs';

export const name = 'audit';

export const goals = {
  'hash-chained appends (batches of 100)/pglite': { ratioAtLeast: 0.8 },
  'hash-chained appends (batches of 100)/postgres': { ratioAtLeast: 0.8 },
  'verify/pglite': { atLeast: 500_000 },
  'verify/postgres': { atLeast: 500_000 },
};

const clock = { now: () => new Date() };
const ctx = {
  actor: { type: 'user', id: 'bench-user' },
  ip: '198.51.100.23',
  userAgent: 'Mozilla/5.0 (X11; Linux x86_64) bench',
  requestId: 'bench-request-0001',
};
const actions = [
  'identity.signin.password',
  'identity.session.revoked',
  'access.role.granted',
  'tenancy.tenant.suspended',
];
const event = (tenantId, i) => ({
  tenantId,
  action: actions[i % actions.length],
  outcome: i % 7 === 0 ? 'failure' : 'success',
  target: { type: 'user', id: `user-${i % 5000}` },
  details: { email: `user${i % 5000}@bench.test`, factor: 'password', attempt: i },
});

export async function openEngine(kind, pgUrl, dir) {
  if (kind === 'postgres') return openBenchDatabase('postgres', pgUrl);
  // On disk, so a commit is a write like on PostgreSQL, not a memory copy.
  const engine = await openPgliteEngine({ dataDir: join(dir, 'pglite') });
  const db = await openDatabase(engine, { migrations: allMigrations, migrate: true });
  return { db, close: () => db.close() };
}

/** The chained path: recordAuditEvents in a tenant transaction (head lock, hashing, one INSERT). */
function chainedAppender(db, tenants, batch) {
  let n = 0;
  return async (worker) => {
    const tenantId = tenants[worker % tenants.length];
    const events = Array.from({ length: batch }, () => event(tenantId, n++));
    await db.withTenant(asTenantId(tenantId), (tx) => recordAuditEvents(tx, clock, ctx, events));
  };
}

/**
 * The baseline: the same rows inserted with a JS-side sequence and fixed hash and MAC bytes, no chain
 * work. Every column the chained path writes is written here too (the MAC's 40 bytes included), so the
 * ratio is what the chain costs, not what a narrower row saves.
 */
function plainAppender(db, tenants, batch) {
  const seq = new Map(tenants.map((t) => [t, 0]));
  const zero = Buffer.alloc(32);
  const zeroMac = Buffer.alloc(40);
  let n = 0;
  return async (worker) => {
    const tenantId = tenants[worker % tenants.length];
    const rows = Array.from({ length: batch }, () => {
      const e = event(tenantId, n++);
      const s = seq.get(tenantId) + 1;
      seq.set(tenantId, s);
      return {
        id: randomUUID(),
        tenant_id: tenantId,
        occurred_at: clock.now(),
        actor_type: ctx.actor.type,
        actor_id: ctx.actor.id,
        actor_elevation_id: null,
        action: e.action,
        target_type: e.target.type,
        target_id: e.target.id,
        outcome: e.outcome,
        ip: ctx.ip,
        user_agent: ctx.userAgent,
        request_id: ctx.requestId,
        details: JSON.stringify(e.details),
        chain_seq: String(s),
        prev_hash: zero,
        hash: zero,
        mac: zeroMac,
      };
    });
    await db.withTenant(asTenantId(tenantId), (tx) => tx.insertInto('audit_events').values(rows).execute());
  };
}

async function rate(fn, { seconds, concurrency, perCall }) {
  const end = performance.now() + seconds * 1000;
  const start = performance.now();
  let calls = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, worker) => {
      while (performance.now() < end) {
        await fn(worker);
        calls += 1;
      }
    }),
  );
  return (calls * perCall) / ((performance.now() - start) / 1000);
}

export async function appends(kind, db, { quick }) {
  const results = [];
  const seconds = quick ? 1.5 : 4;
  const rounds = quick ? 3 : 5;
  // Batched: four writers, each on its own tenant (chain), 100 events per transaction.
  const chained = chainedAppender(db, [randomUUID(), randomUUID(), randomUUID(), randomUUID()], 100);
  const plain = plainAppender(db, [randomUUID(), randomUUID(), randomUUID(), randomUUID()], 100);
  const batched = await interleave(
    rounds,
    () => rate(plain, { seconds, concurrency: 4, perCall: 100 }),
    () => rate(chained, { seconds, concurrency: 4, perCall: 100 }),
  );
  results.push(
    metric(
      name,
      `hash-chained appends (batches of 100)/${kind}`,
      batched.subject,
      'events/s',
      batched.baseline,
    ),
  );
  // One event per transaction, eight writers on ONE tenant: what the head lock costs a busy tenant.
  const oneTenant = [randomUUID()];
  const single = await interleave(
    rounds,
    () => rate(plainAppender(db, [randomUUID()], 1), { seconds, concurrency: 8, perCall: 1 }),
    () => rate(chainedAppender(db, oneTenant, 1), { seconds, concurrency: 8, perCall: 1 }),
  );
  results.push(
    metric(
      name,
      `hash-chained appends (1 per tx, 8 writers, 1 tenant)/${kind}`,
      single.subject,
      'events/s',
      single.baseline,
    ),
  );
  return results;
}

export async function verification(kind, db, { quick, log }) {
  const tenantId = randomUUID();
  const total = quick ? 100_000 : 1_000_000;
  log(`   ${kind}: writing ${total.toLocaleString('en-US')} chained events`);
  for (let i = 0; i < total; i += 1000) {
    const events = Array.from({ length: 1000 }, (_, j) => event(tenantId, i + j));
    await db.withTenant(asTenantId(tenantId), (tx) => recordAuditEvents(tx, clock, ctx, events));
  }
  const signer = checkpointSigner(Buffer.from('bench-root-key-0123456789abcdef'));
  const keys = trustedKeys([signer.publicKey]);
  // Signed up to its head, as the checkpoint job leaves a chain: verify-file refuses an unsigned tail.
  await createCheckpoint(db, signer, clock, tenantId);
  const timed = await interleave(
    quick ? 1 : 3,
    async () => {
      const start = performance.now();
      let n = 0;
      for await (const rows of uncheckedPages(db, tenantId, 0, total)) n += rows.length;
      return n / ((performance.now() - start) / 1000);
    },
    async () => {
      const start = performance.now();
      const report = await verifyAuditChain(db, tenantId, { keys });
      if (report.broken || report.events !== total)
        throw new Error(`verification failed: ${JSON.stringify(report)}`);
      return total / ((performance.now() - start) / 1000);
    },
  );
  return [
    metric(name, `verify/${kind}`, timed.subject, 'events/s', timed.baseline),
    await verifyFile(kind, db, tenantId, total, keys, quick),
  ];
}

/**
 * `rampart audit verify-file`: the chain exported as a bundle, verified with no database, against
 * reading and parsing the same file's lines alone.
 */
async function verifyFile(kind, db, tenantId, total, keys, quick) {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-bench-bundle-'));
  const path = join(dir, 'chain.jsonl');
  try {
    const out = createWriteStream(path);
    await writeBundle(db, tenantId, keys, (line) => {
      out.write(`${line}\n`);
    });
    await new Promise((resolve, reject) => out.end((error) => (error ? reject(error) : resolve())));
    const timed = await interleave(
      quick ? 1 : 3,
      async () => {
        const start = performance.now();
        let n = 0;
        for await (const line of createInterface({ input: createReadStream(path), crlfDelay: Infinity })) {
          if (JSON.parse(line).type === 'event') n += 1;
        }
        return n / ((performance.now() - start) / 1000);
      },
      async () => {
        const start = performance.now();
        const result = await verifyBundle(path, keys);
        if (result.broken || result.events !== total)
          throw new Error(`verify-file: ${JSON.stringify(result)}`);
        return total / ((performance.now() - start) / 1000);
      },
    );
    return metric(name, `verify-file (offline bundle)/${kind}`, timed.subject, 'events/s', timed.baseline);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function run({ quick, pgUrl, log, skip }) {
  const results = [];
  for (const kind of ['pglite', 'postgres']) {
    if (kind === 'postgres' && !pgUrl) {
      skip('postgres (set BENCH_DATABASE_URL)');
      continue;
    }
    const dir = mkdtempSync(join(tmpdir(), 'rampart-bench-audit-'));
    const database = await openEngine(kind, pgUrl, dir);
    try {
      results.push(...(await appends(kind, database.db, { quick })));
      results.push(...(await verification(kind, database.db, { quick, log })));
      results.push(...(await searchLatency(kind, database.db, { quick, log })));
    } finally {
      await database.close();
      rmSync(dir, { recursive: true, force: true });
    }
  }
  return results;
}
