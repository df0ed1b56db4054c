#!/usr/bin/env node
import { runCli } from '../dist/cli/main.js';

const code = await runCli(process.argv.slice(2), {
  out: process.stdout,
  err: process.stderr,
  env: process.env,
});
if (code !== 0) process.exit(code);
