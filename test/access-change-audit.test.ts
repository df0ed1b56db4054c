/**
 * Access changes leave their old and new values in the trail (security review, LOW:
 * `access.settings.updated` omitted approvalTtlMinutes and elevationThresholds, and
 * `access.role.updated` omitted the permissions it replaced), and raising approvalTtlMinutes, which
 * keeps approvals usable for longer, needs a second person like other weakenings. Both engines.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

const slug = 'trail-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
let t: TestApp;
let tenantId: string;
let ada: Person;
let bea: Person;

beforeAll(async () => {
  t = await buildTestApp();
  tenantId = (await seedTenant(t, slug)).id;
  ada = await tenantAdmin(t, slug, 'ada@trail-co.test');
  bea = await tenantAdmin(t, slug, 'bea@trail-co.test');
});
afterAll(async () => {
  await t?.close();
});

/** Details of the newest event with this action. */
async function lastDetails(action: string): Promise<Record<string, unknown>> {
  const rows = await t.db.withTenant<AuditTables, { details: unknown }[]>(asTenantId(tenantId), (tx) =>
    tx
      .selectFrom('audit_events')
      .select('details')
      .where('action', '=', action)
      .orderBy('occurred_at', 'desc')
      .orderBy('id', 'desc')
      .limit(1)
      .execute(),
  );
  const details = rows[0]?.details;
  return typeof details === 'string' ? JSON.parse(details) : (details as Record<string, unknown>);
}

const accessSettings = async () =>
  (await t.app.inject({ url: api('/access/settings'), headers: ada.headers })).json();
const putAccessSettings = (who: Person, payload: object) =>
  t.app.inject({ method: 'PUT', url: api('/access/settings'), headers: who.headers, payload });

describe('access settings in the trail', () => {
  it('a strengthening runs at once and records every old and new value', async () => {
    const before = await accessSettings();
    expect(before.approvalTtlMinutes).toBe(1440);
    const stronger = {
      ...before,
      approvalTtlMinutes: 60,
      elevationThresholds: { 'tenant-admin': 2, staff: 3 },
    };
    const res = await putAccessSettings(ada, stronger);
    expect(res.statusCode, res.body).toBe(200);
    expect(await lastDetails('access.settings.updated')).toMatchObject({
      approvalTtlMinutes: 60,
      approvalTtlMinutesBefore: 1440,
      elevationThresholds: 'staff=3 tenant-admin=2',
      elevationThresholdsBefore: '',
      elevationApprover: 'operator',
      elevationApproverBefore: 'operator',
      fourEyesActions: [...before.fourEyesActions].sort().join(' '),
      fourEyesActionsBefore: [...before.fourEyesActions].sort().join(' '),
    });
  });

  it('raising approvalTtlMinutes needs another person, then records both values', async () => {
    const current = await accessSettings();
    const longer = { ...current, approvalTtlMinutes: 600 };
    const asked = await putAccessSettings(ada, longer);
    expect(asked.statusCode, asked.body).toBe(202);
    const approval = asked.json().approval;
    expect(approval.action).toBe('access.four-eyes.reduce');
    expect(approval.summary).toContain('approvals used within 60 minutes (asked: 600)');
    expect((await accessSettings()).approvalTtlMinutes).toBe(60);

    const approved = await t.app.inject({
      method: 'POST',
      url: api(`/access/approvals/${approval.id}/approve`),
      headers: bea.headers,
    });
    expect(approved.statusCode, approved.body).toBe(200);
    const run = await t.app.inject({
      method: 'POST',
      url: api(`/access/approvals/${approval.id}/execute`),
      headers: ada.headers,
      payload: { params: longer },
    });
    expect(run.statusCode, run.body).toBe(200);
    expect((await accessSettings()).approvalTtlMinutes).toBe(600);
    expect(await lastDetails('access.settings.updated')).toMatchObject({
      approvalTtlMinutes: 600,
      approvalTtlMinutesBefore: 60,
      elevationThresholds: 'staff=3 tenant-admin=2',
      elevationThresholdsBefore: 'staff=3 tenant-admin=2',
    });
  });

  it('lowering the threshold records the old one (and is a weakening too)', async () => {
    const current = await accessSettings();
    const fewer = { ...current, elevationThresholds: { 'tenant-admin': 2 } };
    const asked = await putAccessSettings(ada, fewer);
    expect(asked.statusCode).toBe(202);
    const id = asked.json().approval.id;
    await t.app.inject({ method: 'POST', url: api(`/access/approvals/${id}/approve`), headers: bea.headers });
    const run = await t.app.inject({
      method: 'POST',
      url: api(`/access/approvals/${id}/execute`),
      headers: ada.headers,
      payload: { params: fewer },
    });
    expect(run.statusCode, run.body).toBe(200);
    expect(await lastDetails('access.settings.updated')).toMatchObject({
      elevationThresholds: 'tenant-admin=2',
      elevationThresholdsBefore: 'staff=3 tenant-admin=2',
    });
  });
});

describe('role changes in the trail', () => {
  it('access.role.updated records the permissions and name it replaced', async () => {
    const created = await t.app.inject({
      method: 'POST',
      url: api('/access/roles'),
      headers: ada.headers,
      payload: { key: 'helpdesk', name: 'Help desk', permissions: ['users:read', 'audit:read'] },
    });
    expect(created.statusCode, created.body).toBe(201);
    const changed = await t.app.inject({
      method: 'PUT',
      url: api('/access/roles/helpdesk'),
      headers: ada.headers,
      payload: { name: 'Support', permissions: ['users:read', 'roles:read'] },
    });
    expect(changed.statusCode, changed.body).toBe(200);
    expect(await lastDetails('access.role.updated')).toEqual({
      permissions: 'roles:read users:read',
      permissionsBefore: 'audit:read users:read',
      name: 'Support',
      nameBefore: 'Help desk',
    });
    const missing = await t.app.inject({
      method: 'PUT',
      url: api('/access/roles/nobody-here'),
      headers: ada.headers,
      payload: { name: 'X', permissions: [] },
    });
    expect(missing.statusCode).toBe(404);
    expect(missing.json().code).toBe('role_not_found');
  });
});
