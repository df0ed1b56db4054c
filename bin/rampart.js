#!/usr/bin/env -S node --max-semi-space-size=1
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// argon2 runs on libuv's threadpool (4 threads by default); size it before first use so password
// hashing cannot starve file and DNS work (docs/decisions/0012-password-hashing.md).
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism() + 2));

// Start-up leaves hundreds of MB of garbage (PGlite sets a new database up in a second, discarded
// engine instance) that an idle server would otherwise keep resident: collect it once when ready.
setFlagsFromString('--expose-gc');
const collectGarbage = runInNewContext('gc');

const { runCli } = await import('../dist/cli/main.js');
const code = await runCli(process.argv.slice(2), {
  out: process.stdout,
  err: process.stderr,
  env: process.env,
});
if (code !== 0) process.exit(code);
collectGarbage();
