/**
 * Regression from the identity security review: mail was sent inside the request, after the commit, so
 * with SMTP configured a failing (or slow) mail server turned forgot-password into a 500 only for
 * existing accounts, which told an attacker which addresses have one. Mail now leaves in the background
 * (src/mail/dispatcher.ts): the answer is the same whatever the mail server does.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importUsers } from '../src/identity/import-users.ts';
import { systemContext } from '../src/platform/context.ts';
import { asTenantId } from '../src/platform/db/index.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';
import { strongPassword } from './identity-helpers.ts';

let t: TestApp;
const slug = 'smtp-down-co';
const member = 'member@smtp-down-co.test';

/** A loopback port nothing listens on: connecting is refused at once. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

beforeAll(async () => {
  t = await buildTestApp({ env: { SMTP_URL: `smtp://127.0.0.1:${await closedPort()}` } });
  await seedTenant(t, slug);
  // An active account without any mail: imported with its password hash.
  const file = join(mkdtempSync(join(tmpdir(), 'rampart-import-')), 'users.jsonl');
  const hash = await t.app.services.identity.deps.hasher.hash(strongPassword);
  writeFileSync(file, `${JSON.stringify({ email: member, passwordHash: hash })}\n`);
  const tenant = { id: asTenantId((await t.app.services.tenancy.get(slug)).id), slug };
  await importUsers(t.app.services.identity.deps, tenant, systemContext('test'), file);
});
afterAll(async () => {
  await t?.close();
});

describe('a mail server that refuses connections', () => {
  it('does not change what forgot-password answers for an existing account', async () => {
    const forgot = (email: string) =>
      t.app.inject({ method: 'POST', url: `/api/v1/t/${slug}/password/forgot`, payload: { email } });
    const existing = await forgot(member);
    const unknown = await forgot('nobody@smtp-down-co.test');
    expect(existing.statusCode).toBe(202);
    expect(existing.statusCode).toBe(unknown.statusCode);
    expect(existing.body).toBe(unknown.body);
    expect(existing.headers['content-type']).toBe(unknown.headers['content-type']);

    const metrics = await t.app.inject({ url: '/metrics' });
    expect(metrics.body).toContain('rampart_mail_dispatched_total');
    expect(metrics.body).not.toContain('rmp_l');

    // The mail was attempted in the background, and given up after its retries when the app closed.
    await t.app.close();
    expect(t.app.services.mailer.counts()).toMatchObject({ sent: 0, failed: 1, retried: 2 });
  });
});
