// Search latency on one tenant with 1,000,000 events. The rows are generated in SQL (INSERT ... SELECT
// over generate_series, as the schema owner) so that a run takes seconds, not the minutes that a
// million chained appends would: their chain links are random bytes, which search never reads (verify
// is measured on real chains in bench/audit.mjs). ANALYZE runs before measuring, as autovacuum would
// on a server that had been running. The secondary indexes are dropped for the load and rebuilt.
import { randomUUID } from 'node:crypto';
import { sql } from 'kysely';
import { createAuditService } from '../../dist/audit/index.js';
import { asTenantId } from '../../dist/platform/db/index.js';
import { metric } from './measure.mjs';

export const SEARCH_EVENTS = 1_000_000;

// Event n (1 = newest) happened n * 2 s before `newest`, so 1M events span about 23 days (inside the
// default 30-day search range). 5,000 actors and targets; 20,000 addresses in 79 /24 blocks; one
// event in 7 a failure; eight actions, one of them rare (one event in 1,000).
const generate = `
INSERT INTO audit_events (id, tenant_id, occurred_at, actor_type, actor_id, action, target_type, target_id,
  outcome, ip, user_agent, request_id, details, chain_seq, prev_hash, hash)
SELECT md5($1::text || n)::uuid, $1::uuid, $2::timestamptz - n * interval '2 seconds',
  (ARRAY['user', 'user', 'user', 'operator', 'system', 'api_client'])[1 + n % 6],
  'user-' || (n * 7919 % 5000),
  CASE WHEN n % 1000 = 0 THEN 'audit.trail.exported'
    ELSE (ARRAY['identity.signin.password', 'identity.session.revoked', 'access.role.granted',
      'tenancy.tenant.suspended', 'identity.mfa.enrolled', 'access.elevation.approved',
      'identity.signin.second_factor'])[1 + n % 7] END,
  'user', 'user-' || (n * 104729 % 5000),
  (ARRAY['success', 'success', 'success', 'success', 'success', 'failure', 'denied'])[1 + n % 7],
  ('10.1.0.0'::inet + (n % 20000)),
  'Mozilla/5.0 (X11; Linux x86_64) bench', 'req-' || n,
  jsonb_build_object('attempt', n, 'factor', 'password'),
  $3::bigint - n + 1, sha256(('p' || n)::bytea), sha256(('h' || n)::bytea)
FROM generate_series(1::bigint, $3::bigint) AS n`;

export async function searchLatency(kind, db, { quick, log }) {
  const tenantId = randomUUID();
  const newest = new Date(Date.now() - 60_000);
  log(`   ${kind}: generating ${SEARCH_EVENTS.toLocaleString('en-US')} events for search (SQL)`);
  const started = performance.now();
  await db.engine.asOwner(async (owner) => {
    // Building the secondary indexes once after the load is several times faster than a million
    // index insertions each (a throw-away bench database; the definitions are put back as they were).
    const indexes = await owner.query(
      `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'audit_events' AND indexname <> 'audit_events_pkey'`,
    );
    for (const { indexname } of indexes) await owner.exec(`DROP INDEX ${indexname}`);
    await owner.query(generate, [tenantId, newest.toISOString(), SEARCH_EVENTS]);
    for (const { indexdef } of indexes) await owner.exec(indexdef);
    await owner.exec('ANALYZE audit_events');
  });
  log(`   ${kind}: generated and analysed in ${((performance.now() - started) / 1000).toFixed(1)} s`);

  const audit = createAuditService({ db, clock: { now: () => new Date() } });
  const runs = quick ? 15 : 40;
  const timeOf = async (fn) => {
    await fn(); // warm: the first page of a filter reads its index pages from disk
    const samples = [];
    for (let i = 0; i < runs; i++) {
      const start = performance.now();
      await fn();
      samples.push(performance.now() - start);
    }
    samples.sort((a, b) => a - b);
    const at = (q) => samples[Math.min(samples.length - 1, Math.floor(q * samples.length))];
    return { p50: at(0.5), p95: at(0.95) };
  };
  // The baseline: the plainest page there is, the newest 100 rows by the chain's own index.
  const plain = await timeOf(() =>
    db.withTenant(asTenantId(tenantId), (tx) =>
      sql`SELECT * FROM audit_events WHERE tenant_id = ${tenantId} AND chain_seq IS NOT NULL
          ORDER BY chain_seq DESC LIMIT 100`.execute(tx),
    ),
  );
  const ago = (seconds) => new Date(newest.getTime() - seconds * 1000).toISOString();
  const cases = {
    newest: {},
    'second page': { cursor: (await audit.search(tenantId, { limit: 100 })).nextCursor ?? undefined },
    'actor (1 in 5000)': { actor: 'user-77' },
    'action exact (1 in 7)': { action: 'access.role.granted' },
    'action prefix (2 in 7)': { action: 'access.' },
    'action rare (1 in 1000)': { action: 'audit.trail.exported' },
    'ip address (1 in 20000)': { ip: '10.1.3.7' },
    'ip /24 (1 in 79)': { ip: '10.1.3.0/24' },
    'failures of one target': { outcome: 'failure', targetType: 'user', targetId: 'user-4242' },
    'time window 1 h, 10 days back': { from: ago(10 * 86400 + 3600), to: ago(10 * 86400) },
    'old events (20 days back)': { to: ago(20 * 86400) },
  };
  const rows = [];
  for (const [label, query] of Object.entries(cases)) {
    const page = await audit.search(tenantId, { limit: 100, ...query });
    if (page.items.length === 0) throw new Error(`search bench: "${label}" found nothing`);
    const { p50, p95 } = await timeOf(() => audit.search(tenantId, { limit: 100, ...query }));
    const at = `(1M events)/${kind}`;
    rows.push(metric('audit', `search p50 ${label} ${at}`, p50, 'ms', plain.p50));
    rows.push(metric('audit', `search p95 ${label} ${at}`, p95, 'ms', plain.p95));
  }
  return rows;
}
