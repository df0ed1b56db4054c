import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import bcrypt from 'bcrypt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importUsers } from '../src/identity/import-users.ts';
import { toTenantRef } from '../src/identity/index.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

let t: TestApp;
const slug = 'import-co';
const dir = mkdtempSync(join(tmpdir(), 'rampart-import-'));
beforeAll(async () => {
  t = await buildTestApp();
  await seedTenant(t, slug);
});
afterAll(async () => {
  await t?.close();
});

const signIn = (email: string, password: string) =>
  t.app.inject({ method: 'POST', url: `/api/v1/t/${slug}/auth/signin`, payload: { email, password } });

async function storedHash(email: string): Promise<string | null> {
  const tenant = toTenantRef(await t.app.services.tenancy.get(slug));
  return t.db.withTenant<TenantIdentityTables, string | null>(tenant.id, async (tx) => {
    const row = await tx
      .selectFrom('users')
      .select('password_hash')
      .where('email', '=', email)
      .executeTakeFirst();
    return row?.password_hash ?? null;
  });
}

describe('users import with legacy hashes', () => {
  it('imports bcrypt ($2y$), salted SHA-256 and argon2 hashes, rejects bad rows, and upgrades at sign-in', async () => {
    const bcrypt2y = bcrypt.hashSync('legacy-bcrypt-pw', 4).replace(/^\$2b\$/, '$2y$');
    const salt = Buffer.from('a1b2c3d4', 'hex');
    const sha = createHash('sha256')
      .update(Buffer.concat([salt, Buffer.from('legacy-sha-pw')]))
      .digest('hex');
    const argon = await t.app.services.identity.deps.hasher.hash('legacy-argon-pw');
    const lines = [
      { email: 'Bcrypt.User@Import-Co.test', role: 'member', passwordHash: bcrypt2y },
      { email: 'sha@import-co.test', passwordHash: `sha256:${salt.toString('hex')}:${sha}` },
      { email: 'argon@import-co.test', displayName: 'Argon', passwordHash: argon },
      { email: 'not-an-email', passwordHash: argon },
      { email: 'md5@import-co.test', passwordHash: '5f4dcc3b5aa765d61d8327deb882cf99' },
      { email: 'role@import-co.test', role: 'root' },
      { email: 'sha@import-co.test', passwordHash: argon },
    ];
    const file = join(dir, 'users.jsonl');
    writeFileSync(file, `${lines.map((l) => JSON.stringify(l)).join('\n')}\n{broken json\n`);
    const tenant = toTenantRef(await t.app.services.tenancy.get(slug));
    const progress: number[] = [];
    const summary = await importUsers(
      t.app.services.identity.deps,
      tenant,
      systemContext('test'),
      file,
      (p) => progress.push(p.bytesRead),
    );
    expect(summary.imported).toBe(3);
    expect(summary.rejected.map((r) => r.line).sort()).toEqual([4, 5, 6, 7, 8]);
    expect(summary.rejected.find((r) => r.line === 5)?.reason).toMatch(/not an accepted format/);
    expect(JSON.stringify(summary)).not.toContain('5f4dcc3b');
    expect(progress.at(-1)).toBeGreaterThan(0);

    for (const [email, password] of [
      ['bcrypt.user@import-co.test', 'legacy-bcrypt-pw'],
      ['sha@import-co.test', 'legacy-sha-pw'],
      ['argon@import-co.test', 'legacy-argon-pw'],
    ] as const) {
      expect((await signIn(email, `${password}-wrong`)).statusCode).toBe(401);
      expect((await signIn(email, password)).statusCode, email).toBe(200);
      expect(await storedHash(email)).toMatch(/^\$argon2id\$/);
      expect((await signIn(email, password)).statusCode).toBe(200);
    }
  });

  it('reads CSV with a header row', async () => {
    const file = join(dir, 'users.csv');
    writeFileSync(
      file,
      'email,displayName,role,passwordHash\ncsv1@import-co.test,"Doe, Jane",staff,\ncsv2@import-co.test,,member,nonsense\n',
    );
    const tenant = toTenantRef(await t.app.services.tenancy.get(slug));
    const summary = await importUsers(t.app.services.identity.deps, tenant, systemContext('test'), file);
    expect(summary.imported).toBe(1);
    expect(summary.rejected).toEqual([{ line: 3, reason: expect.stringMatching(/passwordHash/) }]);
  });
});
