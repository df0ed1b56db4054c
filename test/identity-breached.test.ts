import { createHash } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { importBreached } from '../src/identity/breached/index.ts';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';
import { adminSession, inviteAndAccept, linkFromOutbox } from './identity-helpers.ts';

// A password that passes every policy rule and is on no common list, but is "breached" in the
// synthetic Pwned Passwords range file below.
const leaked = 'Velvet-Orbit-Canyon-8812';
const dir = mkdtempSync(join(tmpdir(), 'rampart-breached-'));
let t: TestApp;
const slug = 'breach-co';

beforeAll(async () => {
  const sha = createHash('sha1').update(leaked).digest('hex').toUpperCase();
  // The official downloader's layout: one file per 5-hex prefix, lines SUFFIX:COUNT, CRLF.
  writeFileSync(join(dir, `${sha.slice(0, 5)}.txt`), `${sha.slice(5)}:42\r\n${'0'.repeat(35)}:7\r\n`);
  await importBreached([join(dir, `${sha.slice(0, 5)}.txt`)], join(dir, 'filter.bin'));
  t = await buildTestApp({ env: { BREACHED_FILTER_FILE: join(dir, 'filter.bin') } });
  await seedTenant(t, slug);
});
afterAll(async () => {
  await t?.close();
});

describe('offline Pwned Passwords filter loaded at start', () => {
  it('refuses a password in the filter and names the rule', async () => {
    const admin = await adminSession(t, slug);
    const email = 'new@breach-co.test';
    const { accepted: refused } = await inviteAndAccept(t, slug, admin, email, leaked);
    expect(refused.statusCode).toBe(422);
    expect(refused.json().errors).toEqual([
      { pointer: '/policy/breached', message: expect.stringMatching(/breach/) },
    ]);
    // The refused attempt rolled back: the same link still works with a clean password.
    const { token } = await linkFromOutbox(t, email);
    const accepted = await t.app.inject({
      method: 'POST',
      url: `/api/v1/t/${slug}/invitations/accept`,
      payload: { token, password: 'Velvet-Orbit-Canyon-8813' },
    });
    expect(accepted.statusCode).toBe(200);
  });
});
