#!/usr/bin/env node
import { availableParallelism } from 'node:os';

// argon2 runs on libuv's threadpool (4 threads by default); size it before first use so password
// hashing cannot starve file and DNS work (docs/decisions/0012-password-hashing.md).
process.env.UV_THREADPOOL_SIZE ??= String(Math.max(4, availableParallelism() + 2));

const { runCli } = await import('../dist/cli/main.js');
const code = await runCli(process.argv.slice(2), {
  out: process.stdout,
  err: process.stderr,
  env: process.env,
});
if (code !== 0) process.exit(code);
