/**
 * URLs answered to readers leave out their query (and user info): intakes take their key there
 * (`?dd-api-key=…`, docs/audit.md). Review: the sink list, the alert settings and the platform approval
 * of a sink answered it whole, to any holder of the read permission or any operator.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { paramsHash } from '../src/access/approval-standing.ts';
import { systemContext } from '../src/platform/context.ts';
import { type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';
import { sinkOperators } from './sink-helpers.ts';

const key = 'ddapikey0123456789abcdef0123456789';
const clock = fakeClock(new Date());
let t: TestApp;
let admin: Person;
beforeAll(async () => {
  t = await buildTestApp({ clock });
  await seedTenant(t, 'acme');
  admin = await tenantAdmin(t, 'acme', undefined, clock);
});
afterAll(async () => {
  await t?.close();
});

it('a sink asked for with a key in its URL: approvers, the list and readers never see the key', async () => {
  const { requester, approver } = await sinkOperators(t, clock);
  const payload = { kind: 'webhook', url: `https://intake.example.com/v1/input?dd-api-key=${key}` };
  const asked = await t.app.inject({
    method: 'POST',
    url: '/api/v1/audit/sinks',
    headers: requester.headers,
    payload,
  });
  expect(asked.statusCode, asked.body).toBe(202);
  expect(asked.body).not.toContain(key);
  const { approval } = asked.json();
  expect(approval.summary).toContain('https://intake.example.com/v1/input (query left out)');
  expect(approval.params).toEqual({ kind: 'webhook', url: 'https://intake.example.com/v1/input' });
  // The hash still pins the URL as asked, key included: only what is answered changed.
  expect(approval.paramsHash).toBe(paramsHash(payload).toString('hex'));
  const base = '/api/v1/access/platform-approvals';
  for (const url of [base, `${base}?status=pending`]) {
    const res = await t.app.inject({ url, headers: approver.headers });
    expect(res.statusCode).toBe(200);
    expect(res.body).toContain(approval.id);
    expect(res.body).not.toContain(key);
  }
  const approved = await t.app.inject({
    method: 'POST',
    url: `${base}/${approval.id}/approve`,
    headers: approver.headers,
  });
  expect(approved.statusCode, approved.body).toBe(200);
  expect(approved.body).not.toContain(key);
  // As shown is not as approved: the requester runs it with the URL as asked.
  const shown = await t.app.inject({
    method: 'POST',
    url: `${base}/${approval.id}/execute`,
    headers: requester.headers,
    payload: { params: approval.params },
  });
  expect(shown.json().code).toBe('params_changed');
  const run = await t.app.inject({
    method: 'POST',
    url: `${base}/${approval.id}/execute`,
    headers: requester.headers,
    payload: { params: payload },
  });
  expect(run.statusCode, run.body).toBe(200);
  expect(run.json().approval.params.url).toBe('https://intake.example.com/v1/input');
  const id = run.json().result.id as string;
  const [row] = await t.database.engine.asOwner((o) =>
    o.query<{ url: string }>('SELECT url FROM audit_sinks WHERE id = $1', [id]),
  );
  expect(row?.url).toBe(payload.url);

  // A read-only token (a log shipper's) lists the sink without the key.
  const { token } = await t.app.services.operators.issueToken(
    systemContext('test'),
    'ops@example.test',
    'platform log shipper',
    ['platform-audit:read'],
  );
  const list = await t.app.inject({
    url: '/api/v1/audit/sinks',
    headers: { authorization: `Bearer ${token}` },
  });
  expect(list.statusCode).toBe(200);
  expect(list.body).not.toContain(key);
  expect(list.json().find((s: { id: string }) => s.id === id)?.url).toBe(
    'https://intake.example.com/v1/input',
  );
});

it("a tenant's alert webhook: read without its key, and written back as read it stays as it was", async () => {
  const url = '/api/v1/t/acme/audit/alert-settings';
  const webhook = `https://hooks.acme.example/intake?api-key=${key}`;
  const current = (await t.app.inject({ url, headers: admin.headers })).json();
  current.channels = { ...current.channels, webhookUrl: webhook };
  const saved = await t.app.inject({ method: 'PUT', url, headers: admin.headers, payload: current });
  expect(saved.statusCode, saved.body).toBe(200);
  expect(saved.body).not.toContain(key);
  expect(saved.json().webhookSecret).toEqual(expect.any(String));
  const read = await t.app.inject({ url, headers: admin.headers });
  expect(read.body).not.toContain(key);
  expect(read.json().channels.webhookUrl).toBe('https://hooks.acme.example/intake');
  const stored = () =>
    t.database.engine.asOwner((o) =>
      o.query<{ webhook_url: string; webhook_secret_sealed: Buffer }>(
        'SELECT webhook_url, webhook_secret_sealed FROM audit_alert_settings WHERE tenant_id IS NOT NULL',
      ),
    );
  const [before] = await stored();
  expect(before?.webhook_url).toBe(webhook);
  // Read, change one email, write back: the key stays, and so does the signing secret.
  const body = read.json();
  body.channels.emails = ['soc@acme.example'];
  const again = await t.app.inject({ method: 'PUT', url, headers: admin.headers, payload: body });
  expect(again.statusCode, again.body).toBe(200);
  expect(again.json().webhookSecret).toBeUndefined();
  const [after] = await stored();
  expect(after?.webhook_url).toBe(webhook);
  expect(
    Buffer.from(after?.webhook_secret_sealed ?? []).equals(Buffer.from(before?.webhook_secret_sealed ?? [])),
  ).toBe(true);
});

it("the platform's alert webhook: the weakening's approval shows it without its key", async () => {
  const url = '/api/v1/audit/alert-settings';
  const { requester } = await sinkOperators(t, clock);
  const current = (await t.app.inject({ url, headers: requester.headers })).json();
  current.channels = { ...current.channels, webhookUrl: `https://hooks.ops.example/in?key=${key}` };
  const asked = await t.app.inject({ method: 'PUT', url, headers: requester.headers, payload: current });
  expect(asked.statusCode, asked.body).toBe(202);
  expect(asked.body).not.toContain(key);
  expect(asked.json().approval.params.channels.webhookUrl).toBe('https://hooks.ops.example/in');
  expect(asked.json().approval.paramsHash).toBe(paramsHash(current).toString('hex'));
});
