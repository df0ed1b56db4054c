/**
 * A syslog sink's `caPem` is exactly one certificate (review: TLS trusts every certificate of a PEM, but
 * the approver's summary named only the first, so a second CA could be trusted unseen).
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { createSinkService } from '../src/audit/index.ts';
import { systemContext } from '../src/platform/context.ts';
import { createSecretBox, deriveKey } from '../src/platform/crypto/keys.ts';
import { makeDevCert } from '../src/protect/dev-cert.ts';
import { buildTestApp, type TestApp } from './helpers.ts';
import { approvedForTest } from './sink-helpers.ts';

let t: TestApp;
let shown: Awaited<ReturnType<typeof makeDevCert>>;
let hidden: Awaited<ReturnType<typeof makeDevCert>>;
beforeAll(async () => {
  t = await buildTestApp();
  shown = await makeDevCert({ hosts: ['siem-ca.example.com'], keyType: 'ec', days: 30 });
  hidden = await makeDevCert({ hosts: ['attacker-ca.example.net'], keyType: 'ec', days: 30 });
});
afterAll(async () => {
  await t?.close();
});

const url = 'syslog+tls://siem.example.com:6514';
const ask = (caPem: string) =>
  t.app.inject({
    method: 'POST',
    url: '/api/v1/audit/sinks',
    headers: t.asOperator,
    payload: { kind: 'syslog', url, caPem },
  });
const sinks = () =>
  createSinkService({
    db: t.db,
    clock: { now: () => new Date() },
    box: createSecretBox(deriveKey(Buffer.from('x'.repeat(48), 'utf8'), 'audit-sinks')),
  });

it('refuses a caPem of two certificates, or with text beside its one, before anything is asked', async () => {
  for (const caPem of [
    `${shown.cert}\n${hidden.cert}`,
    `${shown.cert}${hidden.cert}`,
    `subject=CN = siem-ca\n${shown.cert}`,
    `${shown.cert}\n-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n`,
  ]) {
    const res = await ask(caPem);
    expect(res.statusCode, res.body).toBe(400);
    expect(res.headers['content-type']).toContain('application/problem+json');
    expect(res.json()).toMatchObject({ code: 'bad_sink', detail: expect.stringContaining('exactly one') });
  }
  const rows = await t.database.engine.asOwner((o) =>
    o.query(`SELECT 1 FROM access_approval_requests WHERE action = 'audit.sink.connect'`),
  );
  expect(rows).toHaveLength(0);
  // The approved run refuses it too (defence in depth: the params are what was asked for).
  await expect(
    sinks().create(
      systemContext('test'),
      { kind: 'syslog', url, caPem: `${shown.cert}\n${hidden.cert}` },
      approvedForTest,
    ),
  ).rejects.toMatchObject({ code: 'bad_sink' });
});

it('takes one certificate with surrounding whitespace and CRLFs, names it, and stores it re-encoded', async () => {
  const sent = `\r\n  ${shown.cert.replaceAll('\n', '\r\n')}\r\n\r\n`;
  const res = await ask(sent);
  expect(res.statusCode, res.body).toBe(202);
  expect(res.json().approval.summary).toContain(shown.fingerprint256);
  const added = await sinks().create(
    systemContext('test'),
    { kind: 'syslog', url, caPem: sent },
    approvedForTest,
  );
  const [row] = await t.database.engine.asOwner((o) =>
    o.query<{ tls_ca: string }>('SELECT tls_ca FROM audit_sinks WHERE id = $1', [added.id]),
  );
  expect(row?.tls_ca).toMatch(/^-----BEGIN CERTIFICATE-----\n[A-Za-z0-9+/=\n]+-----END CERTIFICATE-----\n$/);
  expect(row?.tls_ca.replaceAll(/\s/g, '')).toBe(shown.cert.replaceAll(/\s/g, ''));
});
