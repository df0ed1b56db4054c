import { PGlite } from '@electric-sql/pglite';

const opts = JSON.parse(process.argv[2] || '{}');
const t = Date.now();
const db = new PGlite(opts);
await db.waitReady;
console.log(
  JSON.stringify(opts).slice(0, 80),
  'ms',
  Date.now() - t,
  'rss',
  Math.round(process.memoryUsage().rss / 1e6),
);
await db.query('select 1');
await db.close();
