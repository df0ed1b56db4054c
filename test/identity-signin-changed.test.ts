/**
 * A password replaced while a sign-in verifies the old one (a reset after a compromise, a change in
 * another tab) signs nobody in, and the sign-in's upgrade of the old hash never writes it back over
 * the new one (security review, 2026-11-27: the success UPDATE was guarded by status only).
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditTables } from '../src/audit/index.ts';
import { importUsers } from '../src/identity/import-users.ts';
import { type PasswordHasher, toTenantRef, wrapFastHashes } from '../src/identity/index.ts';
import type { TenantIdentityTables } from '../src/identity/tables.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';
import { adminSession, inviteAndAccept, linkFromOutbox, strongPassword } from './identity-helpers.ts';

const slug = 'changed-co';
const api = (path: string) => `/api/v1/t/${slug}${path}`;
let t: TestApp;
let tenantId: string;
/** Runs once, inside the next verification, before its answer is used. */
let duringVerify: (() => Promise<void>) | null = null;

beforeAll(async () => {
  t = await buildTestApp({
    hasher: (real): PasswordHasher => ({
      ...real,
      async verify(stored, password) {
        const verdict = await real.verify(stored, password);
        const hook = duringVerify;
        duringVerify = null;
        if (hook) await hook();
        return verdict;
      },
    }),
  });
  tenantId = (await seedTenant(t, slug)).id;
});
afterAll(async () => {
  await t?.close();
});

const post = (url: string, payload: object) => t.app.inject({ method: 'POST', url, payload });
const signIn = (email: string, password: string) => post(api('/auth/signin'), { email, password });

describe('a password replaced during a sign-in', () => {
  it('refuses the sign-in like a wrong password and keeps the new password', async () => {
    const admin = await adminSession(t, slug);
    const email = 'racer@changed-co.test';
    const { user } = await inviteAndAccept(t, slug, admin, email);
    expect((await post(api('/password/forgot'), { email })).statusCode).toBeLessThan(300);
    const { token } = await linkFromOutbox(t, email);
    const replacement = 'Quiet-Harbour-Lantern-77';
    duringVerify = async () => {
      const reset = await post(api('/password/reset'), { token, password: replacement });
      expect(reset.statusCode, reset.body).toBeLessThan(300);
    };

    const raced = await signIn(email, strongPassword);
    expect(duringVerify).toBeNull(); // the reset ran inside the verification
    expect(raced.statusCode, raced.body).toBe(401);
    expect(raced.json().code).toBe('invalid_credentials');
    expect((await signIn(email, strongPassword)).statusCode).toBe(401);
    expect((await signIn(email, replacement)).statusCode).toBe(200);

    const failures = await t.db.withTenant<AuditTables, { details: unknown }[]>(asTenantId(tenantId), (tx) =>
      tx
        .selectFrom('audit_events')
        .select('details')
        .where('action', '=', 'identity.signin.password')
        .where('outcome', '=', 'failure')
        .where('target_id', '=', user.id)
        .execute(),
    );
    const reasons = failures.map(
      (f) => (typeof f.details === 'string' ? JSON.parse(f.details) : f.details).reason,
    );
    expect(reasons).toContain('password_changed');
  });
});

describe('the legacy-hash wrapping job during a sign-in', () => {
  it('changes the hash, not the password: the sign-in succeeds and upgrades it to argon2id', async () => {
    const tenant = toTenantRef(await t.app.services.tenancy.get(slug));
    const email = 'imported@changed-co.test';
    const password = 'imported-pw-1';
    const salt = Buffer.from('5a17ed', 'hex');
    const digest = createHash('sha256')
      .update(Buffer.concat([salt, Buffer.from(password)]))
      .digest('hex');
    const dir = mkdtempSync(join(tmpdir(), 'rampart-signin-wrap-'));
    try {
      const file = join(dir, 'users.jsonl');
      writeFileSync(
        file,
        `${JSON.stringify({ email, passwordHash: `sha256:${salt.toString('hex')}:${digest}` })}\n`,
      );
      const deps = t.app.services.identity.deps;
      expect((await importUsers(deps, tenant, systemContext('test'), file)).imported).toBe(1);
      duringVerify = async () => {
        const run = await wrapFastHashes(deps, tenant, systemContext('test'), { limit: 10 });
        expect(run.wrapped).toBe(1);
      };
      const res = await signIn(email, password);
      expect(duringVerify).toBeNull();
      expect(res.statusCode, res.body).toBe(200);
      const stored = await t.db.withTenant<
        TenantIdentityTables,
        { password_hash: string | null } | undefined
      >(asTenantId(tenantId), (tx) =>
        tx.selectFrom('users').select('password_hash').where('email', '=', email).executeTakeFirst(),
      );
      expect(stored?.password_hash).toMatch(/^\$argon2id\$/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
