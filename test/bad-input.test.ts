/**
 * Bad input gets a 4xx problem+json that names the problem, and changes nothing: every case reads the
 * database (as the owner, so tenant-scoped rows count too) before and after. No client input may
 * produce a 5xx.
 */
import fc from 'fast-check';
import type { InjectOptions } from 'fastify';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildTestApp, seedTenant, type TestApp } from './helpers.ts';

const BODY_LIMIT = 4096;
let t: TestApp;

beforeAll(async () => {
  t = await buildTestApp({ env: { BODY_LIMIT_BYTES: String(BODY_LIMIT) } });
  await seedTenant(t, 'existing-co');
});
afterAll(async () => {
  await t?.close();
});

/** Row counts of everything a request could change. */
async function snapshot() {
  const [row] = await t.database.engine.asOwner((o) =>
    o.query(`SELECT (SELECT count(*) FROM tenants)::int AS tenants,
                    (SELECT count(*) FROM tenant_settings)::int AS settings,
                    (SELECT count(*) FROM audit_events)::int AS audit,
                    (SELECT count(*) FROM operators)::int AS operators,
                    (SELECT string_agg(slug || ':' || status, ',' ORDER BY slug) FROM tenants) AS states`),
  );
  return row;
}

const json = { 'content-type': 'application/json' };
const valid = { slug: 'new-co', displayName: 'New Co', region: 'eu-de' };
const create = (payload: unknown, headers: Record<string, string> = json): InjectOptions => ({
  method: 'POST',
  url: '/api/v1/tenants',
  headers,
  payload: typeof payload === 'string' || Buffer.isBuffer(payload) ? payload : JSON.stringify(payload),
});

interface Case {
  name: string;
  request: InjectOptions;
  status: number;
  code: string;
  /** What the detail must say, so a person knows what to fix. */
  detail: RegExp;
}

const cases: Case[] = [
  {
    name: 'malformed JSON',
    request: create('{"slug": "a",'),
    status: 400,
    code: 'malformed_json',
    detail: /JSON/,
  },
  { name: 'an empty JSON body', request: create(''), status: 400, code: 'malformed_json', detail: /JSON/ },
  {
    name: 'invalid UTF-8 bytes',
    request: create(Buffer.from([0x7b, 0xff, 0xfe, 0x7d])),
    status: 400,
    code: 'malformed_json',
    detail: /JSON/,
  },
  {
    name: 'a __proto__ key (prototype pollution)',
    request: create(
      '{"__proto__": {"admin": true}, "slug": "proto-co", "displayName": "P", "region": "eu-de"}',
    ),
    status: 400,
    code: 'malformed_json',
    detail: /JSON/,
  },
  {
    name: 'an array body',
    request: create([valid]),
    status: 400,
    code: 'validation_failed',
    detail: /\/body/,
  },
  { name: 'a null body', request: create('null'), status: 400, code: 'validation_failed', detail: /\/body/ },
  // Regression: bodies were coerced, so 12345 became "12345" and ["eu-de"] became "eu-de".
  {
    name: 'a number for a string',
    request: create({ ...valid, displayName: 12345 }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/displayName must be string/,
  },
  {
    name: 'an array for a string',
    request: create({ ...valid, region: ['eu-de'] }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/region must be string/,
  },
  {
    name: 'a boolean for a string',
    request: create({ ...valid, slug: true }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/slug/,
  },
  {
    name: 'an unknown field',
    request: create({ ...valid, isAdmin: true }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/isAdmin unknown field/,
  },
  {
    name: 'a missing field',
    request: create({ slug: 'new-co', displayName: 'New Co' }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/region is required/,
  },
  {
    name: 'an oversize body',
    request: create({ ...valid, displayName: 'x'.repeat(BODY_LIMIT) }),
    status: 413,
    code: 'body_too_large',
    detail: /BODY_LIMIT_BYTES/,
  },
  {
    name: 'an invalid slug',
    request: create({ ...valid, slug: 'Acme Bank' }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/slug/,
  },
  {
    name: 'a slug in full-width letters',
    request: create({ ...valid, slug: 'ａｃｍｅ' }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/slug/,
  },
  {
    name: 'an invalid region',
    request: create({ ...valid, region: 'europe' }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/region/,
  },
  // Regression: a NUL reached PostgreSQL ("invalid byte sequence") and answered 500.
  {
    name: 'a NUL in a name',
    request: create({ ...valid, displayName: 'New\u0000Co' }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/displayName/,
  },
  {
    name: 'a lone surrogate in a name',
    request: create({ ...valid, displayName: 'New \ud800 Co' }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/displayName/,
  },
  {
    name: 'an empty name',
    request: create({ ...valid, displayName: '' }),
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/displayName/,
  },
  {
    name: 'a taken slug',
    request: create({ ...valid, slug: 'existing-co' }),
    status: 409,
    code: 'slug_taken',
    detail: /existing-co/,
  },
  // Regression: text/plain was parsed and the client told its body "must be object".
  {
    name: 'a text/plain body',
    request: create(JSON.stringify(valid), { 'content-type': 'text/plain' }),
    status: 415,
    code: 'unsupported_media_type',
    detail: /application\/json/,
  },
  {
    name: 'an XML body',
    request: create('<tenant/>', { 'content-type': 'application/xml' }),
    status: 415,
    code: 'unsupported_media_type',
    detail: /application\/json/,
  },
  {
    name: 'a form body',
    request: create('slug=new-co', { 'content-type': 'application/x-www-form-urlencoded' }),
    status: 415,
    code: 'unsupported_media_type',
    detail: /application\/json/,
  },
  {
    name: 'an unknown tenant',
    request: { method: 'GET', url: '/api/v1/tenants/no-such-co' },
    status: 404,
    code: 'tenant_not_found',
    detail: /no-such-co/,
  },
  {
    name: 'suspending an unknown tenant',
    request: {
      method: 'POST',
      url: '/api/v1/tenants/no-such-co/suspend',
      headers: json,
      payload: '{"reason":"x"}',
    },
    status: 404,
    code: 'tenant_not_found',
    detail: /no-such-co/,
  },
  {
    name: 'resuming an active tenant',
    request: { method: 'POST', url: '/api/v1/tenants/existing-co/resume' },
    status: 409,
    code: 'tenant_state_conflict',
    detail: /already active/,
  },
  {
    name: 'suspending without a reason',
    request: { method: 'POST', url: '/api/v1/tenants/existing-co/suspend', headers: json, payload: '{}' },
    status: 400,
    code: 'validation_failed',
    detail: /\/body\/reason is required/,
  },
  {
    name: 'an invalid slug in the path',
    request: { method: 'GET', url: '/api/v1/tenants/UPPER_case' },
    status: 400,
    code: 'validation_failed',
    detail: /\/path\/slug/,
  },
  // Regression: these two answered Fastify's own JSON, not problem+json.
  {
    name: 'bad percent-encoding in the path',
    request: { method: 'GET', url: '/api/v1/tenants/%zz' },
    status: 400,
    code: 'malformed_url',
    detail: /URL/,
  },
  {
    name: 'an over-long path segment',
    request: { method: 'GET', url: `/api/v1/tenants/${'a'.repeat(500)}` },
    status: 414,
    code: 'uri_too_long',
    detail: /too long/,
  },
  {
    name: 'a cursor this API never issued',
    request: { method: 'GET', url: '/api/v1/tenants?cursor=not-a-cursor!' },
    status: 400,
    code: 'bad_cursor',
    detail: /cursor/,
  },
  {
    name: 'a well-formed cursor that decodes to junk',
    request: {
      method: 'GET',
      url: `/api/v1/tenants?cursor=${Buffer.from('../../etc').toString('base64url')}`,
    },
    status: 400,
    code: 'bad_cursor',
    detail: /cursor/,
  },
  {
    name: 'a limit that is not a number',
    request: { method: 'GET', url: '/api/v1/tenants?limit=ten' },
    status: 400,
    code: 'validation_failed',
    detail: /\/query\/limit/,
  },
  {
    name: 'a limit out of range',
    request: { method: 'GET', url: '/api/v1/tenants?limit=100000' },
    status: 400,
    code: 'validation_failed',
    detail: /\/query\/limit/,
  },
  {
    name: 'a repeated limit',
    request: { method: 'GET', url: '/api/v1/tenants?limit=1&limit=2' },
    status: 400,
    code: 'validation_failed',
    detail: /\/query\/limit/,
  },
  {
    name: 'an unknown query parameter',
    request: { method: 'GET', url: '/api/v1/tenants?include=secrets' },
    status: 400,
    code: 'validation_failed',
    detail: /\/query\/include unknown field/,
  },
  {
    name: 'a huge cursor',
    request: { method: 'GET', url: `/api/v1/tenants?cursor=${'A'.repeat(100_000)}` },
    status: 400,
    code: 'validation_failed',
    detail: /\/query\/cursor/,
  },
  {
    name: 'thousands of query parameters',
    request: {
      method: 'GET',
      url: `/api/v1/tenants?${Array.from({ length: 5000 }, (_, i) => `p${i}=1`).join('&')}`,
    },
    status: 400,
    code: 'validation_failed',
    detail: /\/query\/p\d+ unknown field/,
  },
];

describe('each kind of bad input gets a 4xx problem naming it, and changes nothing', () => {
  it.each(cases)('$name → $status $code', async ({ request, status, code, detail }) => {
    const before = await snapshot();
    const res = await t.app.inject({ ...request, headers: { ...t.asOperator, ...request.headers } });
    expect(res.statusCode, res.body).toBe(status);
    expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    const problem = res.json();
    expect(problem).toMatchObject({ status, code, type: expect.stringContaining(code.replaceAll('_', '-')) });
    expect(problem.detail).toMatch(detail);
    expect(problem.requestId).toBe(res.headers['x-request-id']);
    expect(await snapshot()).toEqual(before);
  });

  it('names every failing field of a body in errors[] with a JSON pointer', async () => {
    const res = await t.app.inject({
      ...create({ ...valid, smuggled: 1 }),
      headers: { ...t.asOperator, ...json },
    });
    expect(res.json().errors).toEqual([{ pointer: '/body/smuggled', message: 'unknown field: remove it' }]);
  });

  it('still accepts the valid request these cases are variations of (the cases can fail)', async () => {
    const res = await t.app.inject({
      ...create({ ...valid, slug: 'control-co' }),
      headers: { ...t.asOperator, ...json },
    });
    expect(res.statusCode).toBe(201);
  });
});

describe('no client input produces a 5xx', () => {
  const anyChar = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
  const wildString = fc.oneof(fc.string(), fc.string({ unit: anyChar }), fc.string({ unit: 'binary' }));
  const plausibleSlug = fc.stringMatching(/^[a-z][a-z0-9-]{1,38}[a-z0-9]$/);
  const plausibleRegion = fc.stringMatching(/^[a-z]{2}(-[a-z0-9]{2,12})?$/);
  const tenantLike = fc.record(
    {
      slug: fc.oneof(plausibleSlug, wildString, fc.jsonValue()),
      displayName: fc.oneof(wildString, fc.jsonValue()),
      region: fc.oneof(plausibleRegion, wildString, fc.jsonValue()),
      extra: fc.jsonValue(),
    },
    { requiredKeys: [] },
  );
  const body = fc.oneof(
    tenantLike.map((v) => JSON.stringify(v)),
    fc.jsonValue().map((v) => JSON.stringify(v)),
    wildString,
  );

  it('POST /api/v1/tenants with random bodies: never 5xx; anything but 201 changes nothing', async () => {
    await fc.assert(
      fc.asyncProperty(body, async (payload) => {
        const before = await snapshot();
        const res = await t.app.inject({
          method: 'POST',
          url: '/api/v1/tenants',
          headers: { ...t.asOperator, ...json },
          payload,
        });
        expect(res.statusCode, `${payload} → ${res.body}`).toBeLessThan(500);
        if (res.statusCode !== 201) {
          expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
          expect(await snapshot()).toEqual(before);
        }
      }),
      { numRuns: 150 },
    );
  });

  it('GET /api/v1/tenants with random query strings and path segments: never 5xx', async () => {
    // Percent-encode bytes by hand: encodeURIComponent throws on lone surrogates.
    const encodeBytes = (s: string) =>
      [...Buffer.from(s, 'utf8')].map((b) => `%${b.toString(16).padStart(2, '0')}`).join('');
    const segment = fc.oneof(
      wildString.map(encodeBytes),
      plausibleSlug,
      fc.constantFrom('%zz', '%', '%c0%af', '%2e%2e', '..', '%00', '%ff%fe'),
    );
    await fc.assert(
      fc.asyncProperty(fc.dictionary(fc.string(), wildString), segment, async (query, slug) => {
        const qs = new URLSearchParams(query).toString();
        for (const url of [`/api/v1/tenants?${qs}`, `/api/v1/tenants/${slug}`]) {
          const res = await t.app.inject({ url, headers: t.asOperator });
          expect(res.statusCode, `${url} → ${res.body}`).toBeLessThan(500);
        }
      }),
      { numRuns: 100 },
    );
  });
});
