/**
 * Defect (security review, medium): `rampart users import` can create tenant administrators with a
 * password hash the importer chose, yet audited only one `identity.user.imported {count, source}` per
 * batch: the tenant's trail could not say who was made an administrator this way (an invitation names
 * the user and role; a tenant-admin grant over the API may take a second person's approval). Each
 * imported user now has an `identity.user.imported` event of their own, targeting them, with email and
 * role, appended in their batch's transaction; a row refused as a duplicate has none.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { importUsers } from '../src/identity/import-users.ts';
import { toTenantRef } from '../src/identity/index.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

let t: TestApp;
const slug = 'import-audit';
beforeAll(async () => {
  t = await buildTestApp();
  await seedTenant(t, slug);
});
afterAll(async () => {
  await t?.close();
});

it('names each imported user, with email and role, in an event targeting them', async () => {
  const hash = await t.app.services.identity.deps.hasher.hash('known-to-the-importer-1');
  const rows = [
    { email: 'shadow.admin@import-audit.test', role: 'tenant-admin', passwordHash: hash },
    { email: 'staff@import-audit.test', role: 'staff' },
    { email: 'member@import-audit.test' },
    { email: 'member@import-audit.test', role: 'tenant-admin' },
  ];
  const file = join(mkdtempSync(join(tmpdir(), 'rampart-import-audit-')), 'users.jsonl');
  writeFileSync(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  const tenant = toTenantRef(await t.app.services.tenancy.get(slug));
  const summary = await importUsers(t.app.services.identity.deps, tenant, systemContext('test'), file);
  expect(summary.imported).toBe(3);

  const events = await t.db.withTenant<AuditTables, { target_id: string | null; details: unknown }[]>(
    tenant.id,
    (tx) =>
      tx
        .selectFrom('audit_events')
        .select(['target_id', 'details'])
        .where('action', '=', 'identity.user.imported')
        .execute(),
  );
  const users = await t.db.withTenant<TenantIdentityTables, { id: string; email: string }[]>(
    tenant.id,
    (tx) =>
      tx.selectFrom('users').select(['id', 'email']).where('email', 'like', '%@import-audit.test').execute(),
  );
  const idOf = new Map(users.map((u) => [u.email, u.id]));
  expect(
    events
      .map((e) => ({ target: e.target_id, details: e.details }))
      .sort((a, b) => String(a.target).localeCompare(String(b.target))),
  ).toEqual(
    [
      ['shadow.admin@import-audit.test', 'tenant-admin'],
      ['staff@import-audit.test', 'staff'],
      ['member@import-audit.test', 'member'],
    ]
      .map(([email = '', role]) => ({
        target: idOf.get(email),
        details: { email, role, source: 'users.jsonl' },
      }))
      .sort((a, b) => String(a.target).localeCompare(String(b.target))),
  );
});
