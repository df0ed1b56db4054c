/**
 * Audit volume: events per hour or day of a chain, by outcome, as JSON, as an SVG bar chart and as bars in
 * the terminal (`rampart audit volume`). Counts land in the right UTC bucket, every bucket of the range is
 * there, each chain sees only its own events, and bad ranges are 400 problem+json.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { recordAuditEvent } from '../src/audit/index.ts';
import { asTenantId, type SystemTx, type TenantTx } from '../src/platform/db/index.ts';
import { member, type Person, tenantAdmin } from './access-helpers.ts';
import { runRampart } from './cli-helpers.ts';
import {
  buildTestApp,
  createPostgresDatabase,
  engineUnderTest,
  seedTenant,
  type TestApp,
} from './helpers.ts';

const HOUR = 3_600_000;
// A fixed past window, well away from now: midnight UTC ten days ago.
const day0 = Math.floor(Date.now() / (24 * HOUR)) * 24 * HOUR - 10 * 24 * HOUR;
const at = (hours: number, minutes = 0) => new Date(day0 + hours * HOUR + minutes * 60_000);
const iso = (d: Date) => d.toISOString();

let t: TestApp;
let admin: Person;
let tenantId: string;

async function record(
  when: Date,
  outcome: 'success' | 'failure' | 'denied',
  chain: string | null = tenantId,
) {
  const ctx = { actor: { type: 'system' as const, id: 'test' }, ip: null, userAgent: null, requestId: null };
  const write = (tx: TenantTx<unknown> | SystemTx<unknown>) =>
    recordAuditEvent(tx, { now: () => when }, ctx, {
      tenantId: chain,
      action: 'identity.signin.password',
      outcome,
      details: { n: 1 },
    });
  await (chain === null ? t.db.withSystem(write) : t.db.withTenant(asTenantId(chain), write));
}

beforeAll(async () => {
  t = await buildTestApp();
  tenantId = (await seedTenant(t, 'vol')).id;
  const other = (await seedTenant(t, 'vol-other')).id;
  admin = await tenantAdmin(t, 'vol');
  // Hour 10 of day 0: 3 successes, 1 failure (at :00, :15, :30, :59); hour 12: 2 denied; day 1: 5.
  for (const [minutes, outcome] of [
    [0, 'success'],
    [15, 'success'],
    [30, 'success'],
    [59, 'failure'],
  ] as const) {
    await record(at(10, minutes), outcome);
  }
  await record(at(12), 'denied');
  await record(at(12, 1), 'denied');
  for (let i = 0; i < 5; i++) await record(at(24 + 3, i), 'success');
  // Another tenant's and the platform's events in the same hours: never counted for this tenant.
  await record(at(10, 5), 'failure', other);
  await record(at(10, 6), 'failure', null);
});
afterAll(async () => {
  await t?.close();
});

const get = (url: string, headers = admin.headers) => t.app.inject({ url, headers });

describe('GET /api/v1/t/:tenant/audit/volume', () => {
  it('counts by hour, every hour of the range present, by outcome, only this tenant', async () => {
    const res = await get(`/api/v1/t/vol/audit/volume?bucket=hour&from=${iso(at(9, 30))}&to=${iso(at(13))}`);
    expect(res.statusCode, res.body).toBe(200);
    // `from` rounded down to 09:00; `to` (13:00) is already a bucket edge.
    expect(res.json()).toEqual({
      bucket: 'hour',
      from: iso(at(9)),
      to: iso(at(13)),
      points: [
        { start: iso(at(9)), total: 0, failure: 0, denied: 0 },
        { start: iso(at(10)), total: 4, failure: 1, denied: 0 },
        { start: iso(at(11)), total: 0, failure: 0, denied: 0 },
        { start: iso(at(12)), total: 2, failure: 0, denied: 2 },
      ],
    });
  });

  it('counts by day', async () => {
    const res = await get(`/api/v1/t/vol/audit/volume?from=${iso(at(0))}&to=${iso(at(48))}`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().points).toEqual([
      { start: iso(at(0)), total: 6, failure: 1, denied: 2 },
      { start: iso(at(24)), total: 5, failure: 0, denied: 0 },
    ]);
  });

  it('defaults to the last 30 days by day, ending with today', async () => {
    const res = await get('/api/v1/t/vol/audit/volume');
    expect(res.statusCode, res.body).toBe(200);
    const { points, to } = res.json() as { points: { start: string; total: number }[]; to: string };
    expect(points).toHaveLength(30);
    expect(Date.parse(to)).toBeGreaterThan(Date.now());
    expect(points.reduce((sum, p) => sum + p.total, 0)).toBeGreaterThanOrEqual(11);
  });

  it('the platform route counts the platform chain only, for operators', async () => {
    const res = await get(
      `/api/v1/audit/volume?bucket=hour&from=${iso(at(10))}&to=${iso(at(11))}`,
      t.asOperator,
    );
    expect(res.statusCode, res.body).toBe(200);
    expect(res.json().points).toEqual([{ start: iso(at(10)), total: 1, failure: 1, denied: 0 }]);
  });

  it('needs audit:read', async () => {
    const plain = await member(t, 'vol', admin, 'plain@vol.test');
    for (const url of ['/api/v1/t/vol/audit/volume', '/api/v1/t/vol/audit/volume.svg']) {
      const res = await get(url, plain.headers);
      expect(res.statusCode).toBe(403);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
    }
  });

  it('refuses bad ranges with a problem that says what to change', async () => {
    const cases: [string, string, RegExp][] = [
      ['bucket=week', 'validation_failed', /bucket/],
      [`bucket=hour&from=${iso(at(0))}&to=${iso(at(169))}`, 'range_too_large', /at most 168 hours.*by day/],
      [`from=${iso(at(0))}&to=${iso(at(24 * 401))}`, 'range_too_large', /at most 400 days/],
      [`from=${iso(at(48))}&to=${iso(at(0))}`, 'bad_filter', /`from` must be before `to`/],
      ['from=yesterday', 'validation_failed', /from/],
      ['limit=5', 'validation_failed', /limit/],
    ];
    for (const [query, code, detail] of cases) {
      const res = await get(`/api/v1/t/vol/audit/volume?${query}`);
      expect(res.statusCode, query).toBe(400);
      expect(res.headers['content-type']).toMatch(/^application\/problem\+json/);
      const body = res.json();
      expect(body.code, query).toBe(code);
      expect(JSON.stringify(body), query).toMatch(detail);
    }
  });
});

describe('GET /api/v1/t/:tenant/audit/volume.svg', () => {
  it('draws one bar group per bucket with its figures, in a picture the API policy allows', async () => {
    const res = await get(`/api/v1/t/vol/audit/volume.svg?bucket=hour&from=${iso(at(9))}&to=${iso(at(13))}`);
    expect(res.statusCode, res.body).toBe(200);
    expect(res.headers['content-type']).toBe('image/svg+xml; charset=utf-8');
    const svg = res.body;
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(svg.match(/<g><title>/g)).toHaveLength(4);
    expect(svg).toContain(`<title>${iso(at(10))}: 4 events, 1 failures, 0 denied</title>`);
    expect(svg).toContain('Tenant vol: 6 events by hour, largest 4');
    // Nothing the API's `default-src 'none'` would block or that could run.
    expect(svg).not.toMatch(/<script|<style|style=|on\w+=|href=/i);
    // The tallest bar fills the plot (4 of 4 events: 3 blue + 1 red, 120 px in all).
    expect(svg).toMatch(/height="90\.00" fill="#4a7bd1"/);
    expect(svg).toMatch(/height="30\.00" fill="#d9534f"/);
  });
});

describe('rampart audit volume', () => {
  it('prints a bar per day, and refuses a bad range with its message', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'rampart-volume-'));
    const env: Record<string, string> = { DATA_DIR: join(dir, 'data'), LOG_LEVEL: 'silent' };
    let drop = async () => {};
    if (engineUnderTest === 'postgres') {
      const pg = await createPostgresDatabase();
      Object.assign(env, {
        DATABASE_URL: pg.app,
        DATABASE_OWNER_URL: pg.owner,
        SECRET_KEY: 'c2VjcmV0LWtleS1mb3ItdGhlLXZvbHVtZS1jbGktdGVzdHMtMDEyMzQ1Njc4OQ',
      });
      drop = pg.drop;
    }
    const rampart = (...args: string[]) => runRampart(env, args);
    try {
      if (engineUnderTest === 'postgres') expect((await rampart('migrate')).code).toBe(0);
      const created = await rampart(
        'tenants',
        'create',
        '--slug',
        'alpha',
        '--name',
        'Alpha',
        '--region',
        'eu-de',
      );
      expect(created.code, created.err).toBe(0);
      const volume = await rampart(
        'audit',
        'volume',
        '--hourly',
        '--from',
        new Date(Date.now() - 2 * HOUR).toISOString(),
      );
      expect(volume.code, volume.err).toBe(0);
      const lines = volume.out.trim().split('\n');
      // The platform chain: the tenant's creation and whatever the start-up recorded, this hour.
      expect(lines[0]).toMatch(/^platform: \d+ events by hour, /);
      expect(lines).toHaveLength(4);
      expect(lines[3]).toMatch(/^\d{4}-\d\d-\d\dT\d\dh {2}█+ +\d+/);
      const bad = await rampart(
        'audit',
        'volume',
        '--tenant',
        'alpha',
        '--from',
        '2026-01-02T00:00:00Z',
        '--to',
        '2026-01-01T00:00:00Z',
      );
      expect(bad.code).not.toBe(0);
      expect(bad.err).toMatch(/`from` must be before `to`/);
    } finally {
      await drop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
