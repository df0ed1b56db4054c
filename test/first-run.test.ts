/**
 * Review: the first operator's API token and set-up link went to standard output in every profile; in
 * production that is the log stream (collected and kept), where anyone reading logs could take them.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/platform/config/index.ts';
import { FIRST_OPERATOR_PREFIX, startServer } from '../src/server.ts';

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

/** Starts a server on the embedded database of a new data directory; returns what it printed. */
async function firstRun(env: Record<string, string>) {
  const dataDir = mkdtempSync(join(tmpdir(), 'rampart-first-run-'));
  dirs.push(dataDir);
  let printed = '';
  const out = new Writable({
    write(chunk, _encoding, done) {
      printed += String(chunk);
      done();
    },
  });
  const config = loadConfig({
    DATA_DIR: dataDir,
    HOST: '127.0.0.1',
    PORT: '0',
    LOG_LEVEL: 'silent',
    BREACHED_ONLINE: 'off',
    BOOTSTRAP_OPERATOR_EMAIL: 'first@ops.test',
    ...env,
  });
  const server = await startServer(config, out);
  await server.stop();
  return { dataDir, printed };
}

describe('the first run', () => {
  it('in production, leaves the token in a file only this user reads, not in the log stream', async () => {
    const { dataDir, printed } = await firstRun({
      RAMPART_PROFILE: 'production',
      SECRET_KEY: 'Zq3xV8pL2mN7rT4wY9bC1dF6gH0jK5sA3eU8iO2uQ7v',
      TRUST_PROXY: '127.0.0.1',
      PUBLIC_URL: 'https://rampart.example.test',
      SMTP_URL: 'smtp://127.0.0.1:2525',
      ALLOW_EMBEDDED_IN_PRODUCTION: 'true',
    });
    expect(printed).toContain('created operator first@ops.test');
    expect(printed).not.toMatch(/rmp_op_/);
    expect(printed).not.toMatch(/setup/i);
    const files = readdirSync(dataDir).filter((f) => f.startsWith(FIRST_OPERATOR_PREFIX));
    expect(files).toHaveLength(1);
    const file = join(dataDir, files[0] ?? '');
    expect(printed).toContain(file);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(readFileSync(file, 'utf8')).toMatch(/rmp_op_\S+/);
  });

  it('in development, prints it on the terminal (the quickstart)', async () => {
    const { dataDir, printed } = await firstRun({});
    expect(printed).toMatch(/rmp_op_\S+/);
    expect(readdirSync(dataDir).filter((f) => f.startsWith(FIRST_OPERATOR_PREFIX))).toHaveLength(0);
  });
});
