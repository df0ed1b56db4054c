import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';
import { adminSession } from './identity-helpers.ts';

// Debian's sqlmap against the listener on 127.0.0.1, in batch mode (about a minute). It runs when asked:
// the CI step "SQL injection scan" sets REQUIRE_SQLMAP=1 (on PostgreSQL), which also turns a missing
// binary into a failure instead of a skip; `npm test` and the general suite runs skip it cleanly.
const run = promisify(execFile);
const available = await run('sqlmap', ['--version']).then(
  () => true,
  () => false,
);
const required = process.env.REQUIRE_SQLMAP === '1';
const HUGE = 1_000_000_000;
// sqlmap sends hundreds of requests from one address: limits raised so it probes the SQL, not the limiter.
const noLimits = ['signin', 'api', 'public', 'token']
  .flatMap((c) =>
    ['ip', 'account', 'tenant']
      .filter((s) => !(c === 'public' && s === 'account'))
      .map((s) => `${c}.${s}=${HUGE}/60`),
  )
  .concat(`failures.ip=${HUGE}/60`)
  .join(',');

interface Scan {
  stdout: string;
  /** sqlmap's per-target log: it lists every injection point it confirmed, and is empty when there is none. */
  findings: string;
}

describe.skipIf(!required)('sqlmap against the sign-in, list and audit search endpoints', () => {
  let t: TestApp;
  let base = '';
  let adminToken = '';
  /** Answers per route and status, from the latency histogram: proof that sqlmap's probes reached the handlers. */
  const reached = async (method: string, route: string, status: number) => {
    const metrics = (await t.app.inject({ url: '/metrics' })).body;
    const line = metrics
      .split('\n')
      .find(
        (l) =>
          l.startsWith('rampart_http_request_duration_seconds_count{') &&
          l.includes(`route="${route}"`) &&
          l.includes(`method="${method}"`) &&
          l.includes(`status="${status}"`),
      );
    return line ? Number(line.split(' ').at(-1)) : 0;
  };
  const scan = async (label: string, args: string[]): Promise<Scan> => {
    const out = mkdtempSync(join(tmpdir(), `rampart-sqlmap-${label}-`));
    const { stdout } = await run(
      'sqlmap',
      [
        '--batch',
        '--flush-session',
        '--disable-coloring',
        '--level=2',
        '--risk=1',
        '--time-sec=2',
        '--threads=4',
        '--ignore-code=400,401,404',
        `--output-dir=${out}`,
        ...args,
      ],
      { timeout: 240_000, maxBuffer: 32 * 1024 * 1024 },
    );
    const log = join(out, '127.0.0.1', 'log');
    return { stdout, findings: existsSync(log) ? readFileSync(log, 'utf8') : '' };
  };

  beforeAll(async () => {
    if (!available)
      throw new Error('REQUIRE_SQLMAP=1 but `sqlmap` is not installed (apt-get install sqlmap)');
    t = await buildTestApp({ env: { RATE_LIMITS: noLimits } });
    await seedTenant(t, 'acme');
    adminToken = (await adminSession(t, 'acme')).headers.authorization;
    base = await t.app.listen({ host: '127.0.0.1', port: 0 });
  }, 60_000);
  afterAll(async () => {
    await t?.close();
  });

  const expectClean = (result: Scan, parameters: string[]) => {
    expect(result.findings).toBe('');
    expect(result.stdout).not.toMatch(/is vulnerable|sqlmap identified the following injection point/);
    // Evidence that each parameter was actually tried, not skipped.
    for (const parameter of parameters) {
      expect(result.stdout).toMatch(
        new RegExp(`parameter '(JSON |URI |GET )?${parameter}' (does not seem to be|is not) injectable`),
      );
    }
  };

  it('finds nothing injectable in the JSON sign-in', async () => {
    const result = await scan('signin', [
      `--url=${base}/api/v1/t/acme/auth/signin`,
      '--method=POST',
      '--headers=Content-Type: application/json',
      '--data={"email":"someone@acme.test","password":"a-password-123"}',
    ]);
    expectClean(result, ['email', 'password']);
    expect(await reached('POST', '/api/v1/t/:tenant/auth/signin', 401)).toBeGreaterThan(50);
    expect(await reached('POST', '/api/v1/t/:tenant/auth/signin', 500)).toBe(0);
  }, 300_000);

  it('finds nothing injectable in the paged user list (limit, cursor)', async () => {
    const cursor = Buffer.from('m@acme.test').toString('base64url');
    const result = await scan('users', [
      `--url=${base}/api/v1/t/acme/users?limit=5&cursor=${cursor}`,
      `--headers=Authorization: ${adminToken.replace(/^Bearer /, 'Bearer ')}`,
      '-p',
      'limit,cursor',
    ]);
    expectClean(result, ['limit', 'cursor']);
    expect(await reached('GET', '/api/v1/t/:tenant/users', 200)).toBeGreaterThan(0);
    expect(await reached('GET', '/api/v1/t/:tenant/users', 400)).toBeGreaterThan(10);
    expect(await reached('GET', '/api/v1/t/:tenant/users', 500)).toBe(0);
  }, 300_000);

  it('finds nothing injectable in the audit search (actor, action, targetId, ip, limit)', async () => {
    const result = await scan('audit', [
      `--url=${base}/api/v1/t/acme/audit/events?actor=someone&action=identity.&targetId=x1&ip=127.0.0.1&limit=5`,
      `--headers=Authorization: ${adminToken.replace(/^Bearer /, 'Bearer ')}`,
      '-p',
      'actor,action,targetId,ip,limit',
    ]);
    expectClean(result, ['actor', 'action', 'targetId', 'ip', 'limit']);
    expect(await reached('GET', '/api/v1/t/:tenant/audit/events', 200)).toBeGreaterThan(0);
    expect(await reached('GET', '/api/v1/t/:tenant/audit/events', 500)).toBe(0);
  }, 300_000);

  it('finds nothing injectable in the operator tenant list (limit, cursor)', async () => {
    const result = await scan('tenants', [
      `--url=${base}/api/v1/tenants?limit=5&cursor=${Buffer.from('acme').toString('base64url')}`,
      `--headers=${Object.entries(t.asOperator).map(([k, v]) => `${k}: ${v}`)[0]}`,
      '-p',
      'limit,cursor',
    ]);
    expectClean(result, ['limit', 'cursor']);
    expect(await reached('GET', '/api/v1/tenants', 200)).toBeGreaterThan(0);
    expect(await reached('GET', '/api/v1/tenants', 500)).toBe(0);
  }, 300_000);
});
