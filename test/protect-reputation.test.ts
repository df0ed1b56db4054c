import { mkdtempSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import ipaddr from 'ipaddr.js';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { buildApp } from '../src/app.ts';
import type { AuditTables } from '../src/audit/index.ts';
import { systemClock } from '../src/platform/context.ts';
import { createProtection, type Protection } from '../src/protect/index.ts';
import { buildCidrSet } from '../src/protect/reputation/cidr-set.ts';
import { parseBlockList } from '../src/protect/reputation/parse.ts';
import { openBreachedScreen } from '../src/runtime.ts';
import { createTestDatabase, type TestDatabase, testConfig } from './helpers.ts';

// Global unicast addresses throughout: documentation and private ranges are never matched (non-global.ts).
const fireholNetset = `#
# firehol_level1 (excerpt)
# Maintainer      : FireHOL
#
0.0.0.0/8
45.9.148.0/24
5.188.10.7
2a0d:5600:bad::/48
not-an-address
`;
const spamhausDrop = `; Spamhaus DROP List 2026/11/26 - (c) 2026 The Spamhaus Project SLR
; Last-Modified: Thu, 26 Nov 2026 08:11:34 GMT
1.10.16.0/25 ; SBL123456
`;

describe('block list formats', () => {
  it('reads FireHOL netsets and Spamhaus DROP, IPv4 and IPv6, and counts lines it cannot read', () => {
    const firehol = parseBlockList(fireholNetset);
    expect(firehol.cidrs.map(([a, b]) => `${a.toString()}/${b}`)).toEqual([
      '0.0.0.0/8',
      '45.9.148.0/24',
      '5.188.10.7/32',
      '2a0d:5600:bad::/48',
    ]);
    expect(firehol.rejected).toBe(1);
    expect(parseBlockList(spamhausDrop)).toEqual({
      cidrs: [ipaddr.parseCIDR('1.10.16.0/25')],
      rejected: 0,
    });
  });

  it('answers membership exactly like a linear scan of the CIDRs (property)', () => {
    const v4cidr = fc.tuple(fc.ipV4(), fc.integer({ min: 0, max: 32 }));
    const v6cidr = fc.tuple(fc.ipV6(), fc.integer({ min: 0, max: 128 }));
    fc.assert(
      fc.property(
        fc.array(fc.oneof(v4cidr, v6cidr), { maxLength: 40 }),
        fc.array(fc.oneof(fc.ipV4(), fc.ipV6()), { maxLength: 40 }),
        (entries, probes) => {
          const cidrs = entries.map(([a, b]) => [ipaddr.parse(a), b] as [ipaddr.IPv4 | ipaddr.IPv6, number]);
          const set = buildCidrSet(cidrs);
          // Probes near the ranges' edges as well as random ones.
          const near = cidrs.flatMap(([a, b]) => {
            const [first, last] =
              a.kind() === 'ipv4' ? rangeOf4(a as ipaddr.IPv4, b) : [a.toString(), a.toString()];
            return [first, last];
          });
          for (const probe of [...probes, ...near]) {
            const parsed = ipaddr.process(probe);
            const expected = cidrs.some(([a, b]) => {
              const net =
                a.kind() === 'ipv6' && (a as ipaddr.IPv6).isIPv4MappedAddress() && b >= 96
                  ? ([(a as ipaddr.IPv6).toIPv4Address(), b - 96] as const)
                  : ([a, b] as const);
              return net[0].kind() === parsed.kind() && parsed.match(net[0], net[1]);
            });
            expect(set.has(probe), `${probe}`).toBe(expected);
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

function rangeOf4(address: ipaddr.IPv4, bits: number): [string, string] {
  return [
    ipaddr.IPv4.networkAddressFromCIDR(`${address}/${bits}`).toString(),
    ipaddr.IPv4.broadcastAddressFromCIDR(`${address}/${bits}`).toString(),
  ];
}

describe('block lists in front of every route', () => {
  const dir = mkdtempSync(join(tmpdir(), 'rampart-lists-'));
  const file = join(dir, 'firehol_level1.netset');
  let database: TestDatabase;
  let protection: Protection;
  let app: Awaited<ReturnType<typeof buildApp>>;
  const feed = createServer((_request, response) => response.end(spamhausDrop));

  beforeAll(async () => {
    writeFileSync(file, fireholNetset);
    await new Promise<void>((resolve) => feed.listen(0, '127.0.0.2', resolve));
    const url = `http://127.0.0.2:${(feed.address() as AddressInfo).port}/drop.txt`;
    database = await createTestDatabase();
    // The feed URL goes through the outbound guard: its loopback address must be allowed explicitly.
    const config = testConfig({ IP_BLOCKLISTS: `${file},${url}`, OUTBOUND_ALLOW_PRIVATE: '127.0.0.2/32' });
    protection = createProtection({ config, db: database.db, clock: systemClock });
    app = await buildApp({
      config,
      db: database.db,
      logger: false,
      protection,
      breached: await openBreachedScreen(config),
    });
  });
  afterAll(async () => {
    await app?.close();
    feed.close();
    await database?.close();
  });

  it('refuses listed addresses (file and URL lists, IPv4 and IPv6) with 403 problem+json; others pass', async () => {
    for (const address of [
      '45.9.148.44',
      '5.188.10.7',
      '2a0d:5600:bad::1',
      '1.10.16.9',
      '::ffff:45.9.148.1',
    ]) {
      const res = await app.inject({ url: '/api/v1/tenants', remoteAddress: address });
      expect(res.statusCode, address).toBe(403);
      expect(res.json()).toMatchObject({ code: 'address_blocked' });
    }
    for (const address of ['5.188.10.8', '1.10.16.128', '2a0d:5600:bae::1', '127.0.0.1']) {
      // Not refused: the route itself asks for credentials.
      expect((await app.inject({ url: '/api/v1/tenants', remoteAddress: address })).statusCode, address).toBe(
        401,
      );
    }
    const metrics = await app.inject({ url: '/metrics' });
    expect(metrics.body).toMatch(/rampart_ip_blocked_total\{list=".*firehol_level1.netset"\} 4/);
    expect(metrics.body).toMatch(/rampart_ip_blocked_total\{list="http:\/\/127.0.0.2:\d+\/drop.txt"\} 1/);
  });

  it('samples blocks into the audit trail: one event per address in ten minutes', async () => {
    for (let i = 0; i < 3; i++) await app.inject({ url: '/api/v1/tenants', remoteAddress: '45.9.148.200' });
    await vi.waitFor(async () => {
      const rows = await database.db.withSystem<AuditTables, { details: unknown }[]>((tx) =>
        tx.selectFrom('audit_events').select('details').where('action', '=', 'protect.ip.blocked').execute(),
      );
      const details = rows.map((r) => (typeof r.details === 'string' ? JSON.parse(r.details) : r.details));
      expect(details.filter((d) => d.address === '45.9.148.200')).toHaveLength(1);
      expect(details).toEqual(expect.arrayContaining([expect.objectContaining({ address: '1.10.16.9' })]));
    });
  });

  it('takes a changed list at the next refresh, and keeps the last good one when a source fails', async () => {
    writeFileSync(file, '91.92.93.0/24\n');
    await protection.blockLists.refresh();
    expect((await app.inject({ url: '/api/v1/tenants', remoteAddress: '91.92.93.7' })).statusCode).toBe(403);
    expect((await app.inject({ url: '/api/v1/tenants', remoteAddress: '45.9.148.44' })).statusCode).toBe(401);
    feed.close();
    await protection.blockLists.refresh();
    expect((await app.inject({ url: '/api/v1/tenants', remoteAddress: '1.10.16.9' })).statusCode).toBe(403);
    expect(protection.blockLists.state().find((s) => s.source.startsWith('http'))?.error).toBeTruthy();
  });
});
