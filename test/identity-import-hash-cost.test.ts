/**
 * Defect (security review, medium): `rampart users import` accepted argon2 and bcrypt hashes at any cost
 * up to the parser's absolute limits (m=1 GiB, t=32, p=16, bcrypt cost 16). Each wrong password against
 * such an account then held one of the hasher's few shared slots for ~50 s and 1 GiB, so a few imported
 * accounts tried in a loop stalled every sign-in of every tenant. The import now refuses a hash costing
 * more than 8× the configured argon2id (or over 4 lanes, or bcrypt above cost 13) with a reason naming
 * the limit, and sign-in refuses such a hash already stored (imported by an older version) like an
 * unusable one: a dummy verification at the usual cost, `401 invalid_credentials`, audited
 * `reason: "unusable_hash"`; the hash itself is never run. Its user resets the password: the reuse check
 * skips a kept hash nobody can verify instead of failing the reset on it.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import argon2 from 'argon2';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { importUsers } from '../src/identity/import-users.ts';
import { toTenantRef } from '../src/identity/index.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';
import { linkFromOutbox } from './identity-helpers.ts';

let t: TestApp;
const slug = 'import-cost';
const dir = mkdtempSync(join(tmpdir(), 'rampart-import-cost-'));
beforeAll(async () => {
  t = await buildTestApp();
  await seedTenant(t, slug);
});
afterAll(async () => {
  await t?.close();
});

const b64 = (n: number) => randomBytes(n).toString('base64').replace(/=+$/, '');
const phc = (params: string) => `$argon2id$v=19$${params}$${b64(16)}$${b64(32)}`;
const bcryptAt = (cost: number) => `$2b$${cost}$${'a'.repeat(53)}`;

async function importLines(name: string, rows: object[]) {
  const file = join(dir, name);
  writeFileSync(file, `${rows.map((r) => JSON.stringify(r)).join('\n')}\n`);
  const tenant = toTenantRef(await t.app.services.tenancy.get(slug));
  return importUsers(t.app.services.identity.deps, tenant, systemContext('test'), file);
}

describe('users import', () => {
  it('refuses hashes costing far more than a sign-in, naming the limit, and keeps the usual exports', async () => {
    const summary = await importLines('cost.jsonl', [
      { email: 'giant@import-cost.test', passwordHash: phc('m=1048576,t=32,p=1') },
      { email: 'lanes@import-cost.test', passwordHash: phc('m=65536,t=1,p=16') },
      { email: 'bcrypt16@import-cost.test', passwordHash: bcryptAt(16) },
      { email: 'npm-defaults@import-cost.test', passwordHash: phc('m=65536,t=3,p=4') },
      { email: 'bcrypt12@import-cost.test', passwordHash: bcryptAt(12) },
    ]);
    expect(summary.imported).toBe(2);
    expect(summary.rejected).toEqual([
      { line: 1, reason: expect.stringMatching(/costs too much.*memory above the limit of \d+ KiB/) },
      { line: 2, reason: expect.stringMatching(/costs too much.*parallelism above the limit of 4/) },
      { line: 3, reason: expect.stringMatching(/costs too much.*bcrypt cost above the limit of 13/) },
    ]);
  });
});

/** A user whose stored hash an older version imported: over the lane bound, cheap enough to run in a test. */
async function olderImport(email: string) {
  const stored = await argon2.hash('right-password-1', {
    type: argon2.argon2id,
    memoryCost: 64,
    timeCost: 1,
    parallelism: 5,
  });
  const tenant = toTenantRef(await t.app.services.tenancy.get(slug));
  await t.db.withTenant<TenantIdentityTables, void>(tenant.id, async (tx) => {
    await tx
      .insertInto('users')
      .values({
        tenant_id: tenant.id,
        email,
        display_name: '',
        role: 'member',
        status: 'active',
        password_hash: stored,
      })
      .execute();
  });
  return tenant;
}

const signIn = (email: string, password: string) =>
  t.app.inject({ method: 'POST', url: `/api/v1/t/${slug}/auth/signin`, payload: { email, password } });

describe('a stored hash above the bounds', () => {
  it('is refused at sign-in like an unusable hash, after a dummy verification, even with the right password', async () => {
    const email = 'older-import@import-cost.test';
    const tenant = await olderImport(email);
    const hasher = t.app.services.identity.deps.hasher;
    const before = hasher.stats();
    const res = await signIn(email, 'right-password-1');
    expect(res.statusCode).toBe(401);
    expect(res.json()).toMatchObject({ code: 'invalid_credentials' });
    const after = hasher.stats();
    expect(after.dummyVerifications - before.dummyVerifications).toBe(1);
    expect(after.verifications - before.verifications).toBe(0);
    const reasons = await t.db.withTenant<AuditTables, { details: unknown }[]>(tenant.id, (tx) =>
      tx
        .selectFrom('audit_events')
        .select('details')
        .where('action', '=', 'identity.signin.password')
        .where('outcome', '=', 'failure')
        .execute(),
    );
    expect(reasons.map((r) => (r.details as { reason: string }).reason)).toContain('unusable_hash');
  });

  it('does not stop its user from resetting the password (the reuse check skips it)', async () => {
    const email = 'reset-older@import-cost.test';
    await olderImport(email);
    const forgot = await t.app.inject({
      method: 'POST',
      url: `/api/v1/t/${slug}/password/forgot`,
      payload: { email },
    });
    expect(forgot.statusCode).toBeLessThan(300);
    const { token } = await linkFromOutbox(t, email);
    const reset = await t.app.inject({
      method: 'POST',
      url: `/api/v1/t/${slug}/password/reset`,
      payload: { token, password: 'Quiet-Harbour-Lantern-77' },
    });
    expect(reset.statusCode, reset.body).toBeLessThan(300);
    expect((await signIn(email, 'Quiet-Harbour-Lantern-77')).statusCode).toBe(200);
  });
});
