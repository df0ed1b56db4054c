import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildApp } from '../src/app.ts';
import { makeDevCert, writeDevCert } from '../src/protect/dev-cert.ts';
import { TLS12_RSA_SUITES } from '../src/protect/index.ts';
import { openBreachedScreen } from '../src/runtime.ts';
import { createTestDatabase, type TestDatabase, testConfig } from './helpers.ts';

// testssl.sh (Debian package testssl.sh, binary `testssl`) scans the real listener on 127.0.0.1.
// It runs when asked: the CI step "TLS scan" sets REQUIRE_TESTSSL=1, which also turns a missing binary
// into a failure instead of a silent skip. `npm test` and the general suite runs skip the (half-minute)
// scan, so CI pays for it once; run it locally with `REQUIRE_TESTSSL=1 npx vitest run test/protect-testssl.test.ts`.
const run = promisify(execFile);
const available = await run('testssl', ['--version']).then(
  () => true,
  () => false,
);
const required = process.env.REQUIRE_TESTSSL === '1';

interface Finding {
  id: string;
  severity: string;
  finding: string;
}

describe.skipIf(!required)('testssl scan of the HTTPS listener', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-testssl-'));
  let database: TestDatabase;
  let app: Awaited<ReturnType<typeof buildApp>>;
  let findings: Finding[] = [];

  beforeAll(async () => {
    if (!available)
      throw new Error('REQUIRE_TESTSSL=1 but `testssl` is not installed (apt-get install testssl.sh)');
    const files = writeDevCert(dir, await makeDevCert({ hosts: ['127.0.0.1'], keyType: 'rsa', days: 1 }));
    database = await createTestDatabase();
    const config = testConfig({ TLS_CERT_FILE: files.certFile, TLS_KEY_FILE: files.keyFile });
    app = await buildApp({
      config,
      db: database.db,
      logger: false,
      breached: await openBreachedScreen(config),
    });
    await app.listen({ host: '127.0.0.1', port: 0 });
    const address = app.server.address();
    const port = typeof address === 'object' && address ? address.port : 0;
    const jsonFile = join(dir, 'testssl.json');
    // Only the checks the acceptance needs: protocols (-p), each cipher per protocol (-E), headers (-h).
    await run(
      'testssl',
      [
        '--quiet',
        '--warnings',
        'off',
        '--color',
        '0',
        '--ip',
        'one',
        '--jsonfile',
        jsonFile,
        '--protocols',
        '--cipher-per-proto',
        '--headers',
        `https://127.0.0.1:${port}/healthz`,
      ],
      { timeout: 300_000, maxBuffer: 16 * 1024 * 1024 },
    ).catch((error: { code?: number }) => {
      // testssl's exit code counts findings; the JSON is the verdict, read below.
      if (typeof error.code !== 'number') throw error;
    });
    findings = JSON.parse(readFileSync(jsonFile, 'utf8')) as Finding[];
  }, 360_000);
  afterAll(async () => {
    await app?.close();
    await database?.close();
  });

  const finding = (id: string) => findings.find((f) => f.id === id)?.finding ?? '(missing)';

  it('does not offer SSLv2, SSLv3, TLS 1.0 or TLS 1.1', () => {
    for (const id of ['SSLv2', 'SSLv3', 'TLS1', 'TLS1_1']) expect(finding(id), id).toBe('not offered');
  });

  it('offers TLS 1.2 and TLS 1.3', () => {
    expect(finding('TLS1_2')).toMatch(/^offered/);
    expect(finding('TLS1_3')).toMatch(/^offered/);
  });

  it('offers exactly the four configured TLS 1.2 suites', () => {
    // Entries look like {"id":"cipher-tls1_2_xc030", "finding":"TLS 1.2   xc030   ECDHE-RSA-AES256-GCM-SHA384   ECDH 253 ..."}.
    const tls12 = findings
      .filter((f) => f.id.startsWith('cipher-tls1_2_'))
      .map((f) => /^TLS 1\.2\s+\S+\s+(\S+)/.exec(f.finding)?.[1] ?? f.finding)
      .sort();
    expect(tls12).toEqual([...TLS12_RSA_SUITES].sort());
  });

  it('offers TLS 1.3 suites', () => {
    expect(findings.filter((f) => f.id.startsWith('cipher-tls1_3_')).length).toBeGreaterThan(0);
  });

  it('sends HSTS', () => {
    expect(finding('HSTS_time')).toMatch(/=31536000 seconds/);
    expect(finding('HSTS_subdomains')).toBe('includes subdomains');
  });
});
