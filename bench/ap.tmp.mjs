import { appends, openEngine } from './audit.mjs';
const kind = process.argv[2] ?? 'postgres';
const { db, close } = await openEngine(kind, 'postgres://postgres@127.0.0.1:5432/test', '/tmp/benchtmp/pgl' + Date.now());
const r = await appends(kind, db, { quick: process.argv[3] === 'quick' });
for (const m of r) console.log(m.metric, Math.round(m.value), Math.round(m.baseline), m.ratio.toFixed(3));
await close();
