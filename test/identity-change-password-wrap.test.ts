/**
 * Change-password decides "the password changed meanwhile" on password_changed_at, as sign-in does
 * (review, 2026-11-27: it compared the stored hash, which the background job that wraps legacy fast
 * hashes in argon2id rewrites for the same password, so a change racing the job was refused as
 * `changed_meanwhile`). The job runs between change-password's read and its write (inside the
 * screening's hashing of the new password); a real password change in that window is still refused.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { importUsers } from '../src/identity/import-users.ts';
import { type PasswordHasher, type TenantRef, toTenantRef, wrapFastHashes } from '../src/identity/index.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { buildTestApp, engineUnderTest, seedTenant, type TestApp } from './helpers.ts';
import { linkFromOutbox } from './identity-helpers.ts';

const slug = 'rewrap-co';
let t: TestApp;
let tenant: TenantRef;
/** Runs once, inside the next hashing of a new password (between change-password's read and write). */
let duringHash: (() => Promise<void>) | null = null;
const ctx = { actor: { type: 'system' as const, id: 'test' }, ip: null, userAgent: null, requestId: null };
const dir = mkdtempSync(join(tmpdir(), 'rampart-change-rewrap-'));

beforeAll(async () => {
  t = await buildTestApp({
    hasher: (real): PasswordHasher => ({
      ...real,
      async hash(password) {
        const hook = duringHash;
        duringHash = null;
        if (hook) await hook();
        return real.hash(password);
      },
    }),
  });
  await seedTenant(t, slug);
  tenant = toTenantRef(await t.app.services.tenancy.requireActive(slug));
});
afterAll(async () => {
  rmSync(dir, { recursive: true, force: true });
  await t?.close();
});

const legacy = (password: string) => {
  const salt = Buffer.from('c0ffee', 'hex');
  const digest = createHash('sha256')
    .update(Buffer.concat([salt, Buffer.from(password)]))
    .digest('hex');
  return `sha256:${salt.toString('hex')}:${digest}`;
};

const users = <R>(
  fn: (tx: Parameters<Parameters<typeof t.db.withTenant<TenantIdentityTables, R>>[1]>[0]) => Promise<R>,
) => t.db.withTenant<TenantIdentityTables, R>(asTenantId(tenant.id), fn);

/** An imported user with a legacy fast hash, signed in on the web (cookie session). */
async function importedOnTheWeb(email: string, password: string) {
  const { identity } = t.app.services;
  const file = join(dir, `${email}.jsonl`);
  writeFileSync(file, `${JSON.stringify({ email, passwordHash: legacy(password) })}\n`);
  expect((await importUsers(identity.deps, tenant, systemContext('test'), file)).imported).toBe(1);
  const web = await identity.signIn(tenant, email, password, 'cookie', ctx);
  const session = await identity.sessions.validate(tenant, web.token);
  if (!session) throw new Error('session not valid');
  // The sign-in upgraded the hash; put the legacy one back (the same password, not a change), as for an
  // account whose sign-in predates the upgrade: what the wrapping job looks for.
  await users((tx) =>
    tx
      .updateTable('users')
      .set({ password_hash: legacy(password) })
      .where('id', '=', session.userId)
      .execute(),
  );
  return session;
}

const storedHash = (userId: string) =>
  users((tx) => tx.selectFrom('users').select('password_hash').where('id', '=', userId).executeTakeFirst());

describe(`change-password racing the legacy-hash wrapping job (${engineUnderTest})`, () => {
  it('succeeds when the job rewrapped the same password between the read and the write', async () => {
    const email = 'wrapped@rewrap-co.test';
    const session = await importedOnTheWeb(email, 'imported-pw-1');
    duringHash = async () => {
      const run = await wrapFastHashes(t.app.services.identity.deps, tenant, systemContext('test'), {
        limit: 10,
      });
      expect(run.wrapped).toBeGreaterThanOrEqual(1);
    };
    const next = 'Fresh-Meadow-Compass-58';
    await t.app.services.identity.accounts.changePassword(
      tenant,
      { ...ctx, actor: { type: 'user', id: session.userId } },
      session,
      'imported-pw-1',
      next,
    );
    expect(duringHash).toBeNull(); // the job ran inside the change
    expect((await storedHash(session.userId))?.password_hash).toMatch(/^\$argon2id\$/);
    await expect(t.app.services.identity.signIn(tenant, email, next, 'cookie', ctx)).resolves.toBeTruthy();
  });

  it('is still refused when the password itself changed in that window', async () => {
    const email = 'reset@rewrap-co.test';
    const session = await importedOnTheWeb(email, 'imported-pw-2');
    const forgot = await t.app.inject({
      method: 'POST',
      url: `/api/v1/t/${slug}/password/forgot`,
      payload: { email },
    });
    expect(forgot.statusCode).toBeLessThan(300);
    const { token } = await linkFromOutbox(t, email);
    const replacement = 'Quiet-Harbour-Lantern-77';
    duringHash = async () => {
      const reset = await t.app.inject({
        method: 'POST',
        url: `/api/v1/t/${slug}/password/reset`,
        payload: { token, password: replacement },
      });
      expect(reset.statusCode, reset.body).toBeLessThan(300);
    };
    const refused = await t.app.services.identity.accounts
      .changePassword(
        tenant,
        { ...ctx, actor: { type: 'user', id: session.userId } },
        session,
        'imported-pw-2',
        'Another-Meadow-Compass-59',
      )
      .then(
        () => null,
        (e: { code?: string }) => e,
      );
    expect(duringHash).toBeNull();
    expect(refused).toMatchObject({ code: 'invalid_credentials' });
    await expect(
      t.app.services.identity.signIn(tenant, email, replacement, 'cookie', ctx),
    ).resolves.toBeTruthy();
    const reasons = await t.db.withTenant<AuditTables, { details: unknown }[]>(asTenantId(tenant.id), (tx) =>
      tx
        .selectFrom('audit_events')
        .select('details')
        .where('action', '=', 'identity.password.changed')
        .where('outcome', '=', 'failure')
        .where('target_id', '=', session.userId)
        .execute(),
    );
    expect(
      reasons.map((r) => (typeof r.details === 'string' ? JSON.parse(r.details) : r.details).reason),
    ).toEqual(['changed_meanwhile']);
  });
});
