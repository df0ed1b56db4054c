/**
 * Client-chosen times outside years 1-9999 (UTC) are refused as bad input (review: PGlite answered them
 * with SQLSTATE 22009, a 500), and the export's four-eyes gate checks filters on the export's own clock.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type Person, tenantAdmin } from './access-helpers.ts';
import { buildTestApp, fakeClock, seedTenant, type TestApp } from './helpers.ts';

const DAY = 86_400_000;
// The app's clock runs ten days ahead of the machine's: the gate once read the machine's.
const clock = fakeClock(new Date(Date.now() + 10 * DAY));
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
const b64 = (s: string) => Buffer.from(s, 'utf8').toString('base64url');
const get = (url: string, headers = admin.headers) => t.app.inject({ url, headers });

function expectRefused(res: Awaited<ReturnType<typeof get>>, code: string, detail?: RegExp) {
  expect(res.statusCode, res.body).toBe(400);
  expect(res.headers['content-type']).toContain('application/problem+json');
  expect(res.json().code).toBe(code);
  if (detail) expect(res.json().detail).toMatch(detail);
}

it('refuses search and export times outside years 1-9999 (UTC) as bad_filter', async () => {
  const range = /between 0001-01-01T00:00:00Z and 10000-01-01T00:00:00Z/;
  for (const q of [
    'from=9999-12-31T00:00:00Z&to=9999-12-31T23:59:59-23:59',
    'to=9999-12-31T23:59:59-00:01',
    'from=0000-12-31T23:00:00Z&to=0001-01-01T01:00:00Z',
    'from=0001-01-01T00:00:00%2B01:00&to=0001-01-02T00:00:00Z',
  ]) {
    expectRefused(await get(`/api/v1/t/acme/audit/events?${q}`), 'bad_filter', range);
    expectRefused(await get(`/api/v1/audit/events?${q}`, t.asOperator), 'bad_filter', range);
    expectRefused(await get(`/api/v1/audit/export?${q}`, t.asOperator), 'bad_filter', range);
    // The tenant's export gate refuses them too, on asking and on downloading, rather than let them by.
    expectRefused(await get(`/api/v1/t/acme/audit/export?${q}`), 'bad_filter', range);
    const params = Object.fromEntries(new URLSearchParams(q));
    const asked = await t.app.inject({
      method: 'POST',
      url: '/api/v1/t/acme/audit/export-requests',
      headers: admin.headers,
      payload: params,
    });
    expectRefused(asked, 'bad_filter', range);
  }
  // The edges themselves are searchable.
  const edges = 'from=0001-01-01T00:00:00Z&to=0001-01-02T00:00:00Z';
  expect((await get(`/api/v1/t/acme/audit/events?${edges}`)).statusCode).toBe(200);
  const last = 'from=9999-12-31T00:00:00Z&to=9999-12-31T23:59:59.999Z';
  expect((await get(`/api/v1/t/acme/audit/events?${last}`)).statusCode).toBe(200);
});

it('an export the gate once judged unrunnable (on the machine clock) still needs its approval', async () => {
  // On the machine's clock this `from` lies after the default `to`; on the app's it is 8 days back.
  const from = new Date(Date.now() + 2 * DAY).toISOString();
  const res = await get(`/api/v1/t/acme/audit/export?from=${encodeURIComponent(from)}`);
  expect(res.statusCode, res.body).toBe(403);
  expect(res.json().code).toBe('approval_required');
});

it('refuses alert cursors the API did not write as bad_cursor', async () => {
  const zero = '00000000-0000-0000-0000-000000000000';
  for (const text of [
    `+275760-09-13T00:00:00.000Z|${zero}`,
    `+010000-01-01T00:00:00.000Z|${zero}`,
    `0000-01-01T00:00:00.000Z|${zero}`,
    `2026-01-01T00:00:00Z|${zero}`,
    `2026-01-01T00:00:00.000+00:00|${zero}`,
    `2026-02-30T00:00:00.000Z|${zero}`,
    `2026-01-01T00:00:00.000Z|${zero.toUpperCase().replace('0', 'A')}`,
    `2026-01-01T00:00:00.000Z|------------------------------------`,
    `2026-01-01T00:00:00.000Z|${zero}|x`,
  ]) {
    for (const url of ['/api/v1/t/acme/audit/alerts', '/api/v1/audit/alerts']) {
      const headers = url.startsWith('/api/v1/t/') ? admin.headers : t.asOperator;
      expectRefused(await get(`${url}?cursor=${b64(text)}`, headers), 'bad_cursor');
    }
  }
  // Padding or other base64 of the same text is not the cursor the API wrote either.
  expectRefused(
    await get(`/api/v1/t/acme/audit/alerts?cursor=${b64(`2026-01-01T00:00:00.000Z|${zero}`)}=`),
    'bad_cursor',
  );
  // A cursor as the encoder writes it is taken.
  const good = await get(`/api/v1/t/acme/audit/alerts?cursor=${b64(`2026-01-01T00:00:00.000Z|${zero}`)}`);
  expect(good.statusCode, good.body).toBe(200);
});
