/**
 * Wrapping fast legacy password hashes in argon2id (decision 0012, docs/identity.md "Import"): the
 * background job and `rampart users wrap-legacy-hashes` replace imported salted SHA-256 (and cheap
 * bcrypt) hashes, the users still sign in with their passwords over HTTP, and sign-in upgrades them to
 * plain argon2id. Regression for the review finding that an imported fast hash of a user who never
 * signs in stayed a fast hash at rest forever.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import bcrypt from 'bcrypt';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { importUsers } from '../src/identity/import-users.ts';
import {
  countFastHashes,
  type PasswordHasher,
  type TenantRef,
  toTenantRef,
  wrapFastHashes,
  wrapFastHashesEverywhere,
} from '../src/identity/index.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { registerUserCommands } from '../src/identity/users-cli.ts';
import { systemClock, systemContext } from '../src/platform/context.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

let t: TestApp;
const dir = mkdtempSync(join(tmpdir(), 'rampart-wrap-'));
beforeAll(async () => {
  // The app's own job stays out of the way of the runs these tests make and count.
  t = await buildTestApp({ env: { LEGACY_HASH_WRAP_SECONDS: '86400' } });
});
afterAll(async () => {
  await t?.close();
});

/** The fast formats of decision 0012: salted SHA-256 layouts and bcrypt below cost 10. */
const fastPattern = /^(sha256[$:]|\{SSHA256\}|\$2[aby]\$0\d\$)/;

const sha256 = (...parts: Buffer[]) => createHash('sha256').update(Buffer.concat(parts)).digest();

/** One user per fast layout, one bcrypt above the wrapping cost, one argon2id; email → [hash, password]. */
function legacyUsers(domain: string): Record<string, [hash: string, password: string]> {
  const salt = Buffer.from('5a17ed', 'hex');
  const ldapSalt = Buffer.from('NaCl4you');
  return {
    [`ldap@${domain}`]: [
      `{SSHA256}${Buffer.concat([sha256(Buffer.from('ldap-pw-1'), ldapSalt), ldapSalt]).toString('base64')}`,
      'ldap-pw-1',
    ],
    [`dollar@${domain}`]: [
      `sha256$Xy7q2Lp9$${sha256(Buffer.from('Xy7q2Lp9'), Buffer.from('dollar-pw-2')).toString('hex')}`,
      'dollar-pw-2',
    ],
    [`colon@${domain}`]: [
      `sha256:${salt.toString('hex')}:${sha256(salt, Buffer.from('colon-pw-3')).toString('hex')}`,
      'colon-pw-3',
    ],
    [`cheap-bcrypt@${domain}`]: [bcrypt.hashSync('bcrypt-pw-4', 4).replace(/^\$2b\$/, '$2y$'), 'bcrypt-pw-4'],
    [`bcrypt@${domain}`]: [bcrypt.hashSync('bcrypt-pw-5', 10), 'bcrypt-pw-5'],
  };
}

async function importInto(slug: string, users: Record<string, [string, string]>) {
  const tenant = toTenantRef(await t.app.services.tenancy.get(slug));
  const file = join(dir, `${slug}.jsonl`);
  const lines = Object.entries(users).map(([email, [passwordHash]]) =>
    JSON.stringify({ email, passwordHash }),
  );
  writeFileSync(file, `${lines.join('\n')}\n`);
  const summary = await importUsers(t.app.services.identity.deps, tenant, systemContext('test'), file);
  expect(summary.imported).toBe(Object.keys(users).length);
  return { tenant, summary };
}

async function storedHashes(tenant: TenantRef): Promise<Map<string, string>> {
  const rows = await t.db.withTenant<TenantIdentityTables, { email: string; password_hash: string | null }[]>(
    tenant.id,
    (tx) => tx.selectFrom('users').select(['email', 'password_hash']).execute(),
  );
  return new Map(rows.map((r) => [r.email, r.password_hash ?? '']));
}

async function wrapEvents(tenant: TenantRef) {
  return t.db.withTenant<AuditTables, { details: unknown }[]>(tenant.id, (tx) =>
    tx
      .selectFrom('audit_events')
      .select(['details'])
      .where('action', '=', 'identity.password.hashes_wrapped')
      .execute(),
  );
}

const signIn = (slug: string, email: string, password: string) =>
  t.app.inject({ method: 'POST', url: `/api/v1/t/${slug}/auth/signin`, payload: { email, password } });

/** After wrapping: nothing fast is left, and every user signs in with their password and is upgraded. */
async function expectWrappedAndSignIns(
  slug: string,
  tenant: TenantRef,
  users: Record<string, [string, string]>,
) {
  const after = await storedHashes(tenant);
  for (const [email, [original]] of Object.entries(users)) {
    expect(after.get(email), email).not.toMatch(fastPattern);
    if (fastPattern.test(original)) expect(after.get(email), email).toMatch(/^\$rampart-wrap\$v=1\$/);
    else expect(after.get(email), email).toBe(original);
  }
  expect(await countFastHashes({ db: t.db }, tenant)).toBe(0);
  for (const [email, [, password]] of Object.entries(users)) {
    expect((await signIn(slug, email, `${password}-wrong`)).statusCode, email).toBe(401);
    expect((await signIn(slug, email, password)).statusCode, email).toBe(200);
    expect((await storedHashes(tenant)).get(email), email).toMatch(/^\$argon2id\$/);
    expect((await signIn(slug, email, password)).statusCode, email).toBe(200);
  }
}

describe('the background job', () => {
  it('wraps imported fast hashes a few at a time, audits one event per tenant and run, and sign-in still works', async () => {
    const slug = 'wrap-job';
    await seedTenant(t, slug);
    const users = legacyUsers(`${slug}.test`);
    const { tenant, summary } = await importInto(slug, users);
    expect(summary.fastHashesRemaining).toBe(4);
    const deps = {
      identity: t.app.services.identity.deps,
      async *tenants() {
        yield tenant;
      },
      everyMs: 60_000,
      rowsPerTenant: 3,
    };
    const cursors = new Map();
    const first = await wrapFastHashesEverywhere(deps, cursors);
    expect(first).toEqual({ wrapped: 3, remaining: 1 });
    expect(await wrapEvents(tenant)).toEqual([{ details: { count: 3, users: 3, history: 0 } }]);
    const second = await wrapFastHashesEverywhere(deps, cursors);
    expect(second).toEqual({ wrapped: 1, remaining: 0 });
    expect(await wrapEvents(tenant)).toHaveLength(2);
    // Nothing left: a further run writes nothing and audits nothing.
    expect(await wrapFastHashesEverywhere(deps, cursors)).toEqual({ wrapped: 0, remaining: 0 });
    expect(await wrapEvents(tenant)).toHaveLength(2);
    await expectWrappedAndSignIns(slug, tenant, users);
  });

  it('leaves the hasher to sign-ins: nothing is wrapped while work waits in its queue', async () => {
    const slug = 'wrap-busy';
    await seedTenant(t, slug);
    const { tenant } = await importInto(slug, legacyUsers(`${slug}.test`));
    const real = t.app.services.identity.deps.hasher;
    const busy: PasswordHasher = { ...real, stats: () => ({ ...real.stats(), queued: 1 }) };
    const sweep = await wrapFastHashesEverywhere({
      identity: { ...t.app.services.identity.deps, hasher: busy },
      async *tenants() {
        yield tenant;
      },
      everyMs: 60_000,
    });
    expect(sweep).toEqual({ wrapped: 0, remaining: 4 });
    expect(await wrapEvents(tenant)).toEqual([]);
  });

  it('wraps old hashes kept for the reuse rule (password history) too', async () => {
    const slug = 'wrap-history';
    await seedTenant(t, slug);
    const users = legacyUsers(`${slug}.test`);
    const { tenant } = await importInto(slug, users);
    const [oldHash = ''] = users[`colon@${slug}.test`] ?? [];
    await t.db.withTenant<TenantIdentityTables, void>(tenant.id, async (tx) => {
      const user = await tx
        .selectFrom('users')
        .select('id')
        .where('email', '=', `bcrypt@${slug}.test`)
        .executeTakeFirstOrThrow();
      await tx
        .insertInto('password_history')
        .values({ tenant_id: tenant.id, user_id: user.id, password_hash: oldHash })
        .execute();
    });
    expect(await countFastHashes(t.app.services.identity.deps, tenant)).toBe(5);
    const run = await wrapFastHashes(t.app.services.identity.deps, tenant, systemContext('test'), {
      limit: 100,
    });
    expect(run).toMatchObject({ wrapped: 5, changedMeanwhile: 0, cursor: null });
    expect(await countFastHashes(t.app.services.identity.deps, tenant)).toBe(0);
    expect(await wrapEvents(tenant)).toEqual([{ details: { count: 5, users: 4, history: 1 } }]);
    const history = await t.db.withTenant<TenantIdentityTables, { password_hash: string }[]>(
      tenant.id,
      (tx) => tx.selectFrom('password_history').select('password_hash').execute(),
    );
    expect(history.map((h) => h.password_hash)).toEqual([
      expect.stringMatching(/^\$rampart-wrap\$v=1\$sha256\$/),
    ]);
    // The wrapped old hash still recognises the old password (the reuse rule keeps working).
    await expect(
      t.app.services.identity.deps.hasher.verify(history[0]?.password_hash ?? '', 'colon-pw-3'),
    ).resolves.toMatchObject({ ok: true });
  });
});

describe('compare-and-set', () => {
  it('never overwrites a hash that changed while it was being wrapped (a sign-in upgraded it meanwhile)', async () => {
    const slug = 'wrap-race';
    await seedTenant(t, slug);
    const users = legacyUsers(`${slug}.test`);
    const { tenant } = await importInto(slug, users);
    const email = `dollar@${slug}.test`;
    const [dollarHash = '', password = ''] = users[email] ?? [];
    const real = t.app.services.identity.deps.hasher;
    let signedIn = false;
    const racing: PasswordHasher = {
      ...real,
      async wrap(stored) {
        const wrapped = await real.wrap(stored);
        // The user signs in between the read and the write: sign-in stores plain argon2id.
        if (stored === dollarHash) {
          expect((await signIn(slug, email, password)).statusCode).toBe(200);
          signedIn = true;
        }
        return wrapped;
      },
    };
    const run = await wrapFastHashes(
      { ...t.app.services.identity.deps, hasher: racing },
      tenant,
      systemContext('test'),
      {
        limit: 100,
      },
    );
    expect(signedIn).toBe(true);
    expect(run).toMatchObject({ wrapped: 3, changedMeanwhile: 1 });
    const after = (await storedHashes(tenant)).get(email);
    expect(after).toMatch(/^\$argon2id\$/);
    expect((await signIn(slug, email, password)).statusCode).toBe(200);
    expect(await wrapEvents(tenant)).toEqual([{ details: { count: 3, users: 3, history: 0 } }]);
  });
});

describe('rampart users wrap-legacy-hashes', () => {
  it('wraps a tenant now with a progress bar, says how many remain, and sign-in still works', async () => {
    const slug = 'wrap-cli';
    await seedTenant(t, slug);
    const users = legacyUsers(`${slug}.test`);
    const { tenant } = await importInto(slug, users);
    let out = '';
    let err = '';
    const root = new Command('rampart').exitOverride();
    registerUserCommands(root, {
      out: new Writable({
        write(chunk, _encoding, done) {
          out += String(chunk);
          done();
        },
      }),
      err: new Writable({
        write(chunk, _encoding, done) {
          err += String(chunk);
          done();
        },
      }),
      withTenantDb: async (_slug, fn) => fn(t.db, tenant),
      withTenantsDb: async (given, fn) => {
        expect(given).toBe(slug);
        return fn(t.db, [tenant]);
      },
      hasher: () => t.app.services.identity.deps.hasher,
      clock: systemClock,
      context: () => systemContext('cli:test'),
    });
    await root.parseAsync(['users', 'wrap-legacy-hashes', '--tenant', slug], { from: 'user' });
    expect(out).toBe(`${slug}: 4 wrapped, 0 changed meanwhile (left as they are), 0 remaining\n`);
    expect(err).toMatch(/wrap-cli \[.*\] 4\/4 wrapped/);
    await root.parseAsync(['users', 'wrap-legacy-hashes', '--tenant', slug], { from: 'user' });
    expect(out).toMatch(/wrap-cli: no fast password hashes\n$/);
    expect(await wrapEvents(tenant)).toEqual([{ details: { count: 4, users: 4, history: 0 } }]);
    await expectWrappedAndSignIns(slug, tenant, users);
  });
});

describe('a damaged wrapped hash', () => {
  it('is refused at sign-in like a wrong password (401, audited as unusable_hash), never a 500', async () => {
    const slug = 'wrap-tamper';
    await seedTenant(t, slug);
    const users = legacyUsers(`${slug}.test`);
    const { tenant } = await importInto(slug, users);
    await wrapFastHashes(t.app.services.identity.deps, tenant, systemContext('test'), { limit: 100 });
    const email = `ldap@${slug}.test`;
    const wrapped = (await storedHashes(tenant)).get(email) ?? '';
    for (const damaged of [
      wrapped.replace('$v=1$', '$v=9$'),
      wrapped.replace('l=ldap-ssha256', 'l=colon-hex-salt'),
      wrapped.replace(/m=\d+/, 'm=4194304'),
      wrapped.slice(0, -4),
    ]) {
      await t.db.withTenant<TenantIdentityTables, void>(tenant.id, async (tx) => {
        await tx
          .updateTable('users')
          .set({ password_hash: damaged, password_failures: 0 })
          .where('email', '=', email)
          .execute();
      });
      const res = await signIn(slug, email, 'ldap-pw-1');
      expect(res.statusCode, damaged).toBe(401);
      expect(res.json()).toMatchObject({ code: 'invalid_credentials' });
      expect(res.body).not.toContain(damaged);
    }
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
});
