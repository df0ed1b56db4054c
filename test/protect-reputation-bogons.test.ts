/**
 * Block lists of bogons. FireHOL level1, the list docs/protect.md names, carries the full bogon set
 * (0/8, RFC 1918, loopback, CGNAT, link-local, 224/3), written for a border firewall's inbound filter.
 * Loaded as it is, it refused the load balancer's health probes, the trusted reverse proxy itself and
 * every internal caller of the API, so turning the control on took the service down. Now a client
 * address outside global unicast is never matched (src/protect/reputation/non-global.ts), /healthz and
 * /readyz are never refused, and the entries that can never match are counted and logged at load.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import ipaddr from 'ipaddr.js';
import { afterAll, describe, expect, it } from 'vitest';
import { createBlockLists } from '../src/protect/reputation/lists.ts';
import { isNonGlobalAddress, nonGlobalRanges } from '../src/protect/reputation/non-global.ts';
import { buildTestApp, type TestApp } from './helpers.ts';

// Verbatim entries of firehol_level1.netset: the bogons, then one listed public range.
const fireholLevel1Excerpt = `# firehol_level1 (excerpt)
0.0.0.0/8
10.0.0.0/8
100.64.0.0/10
127.0.0.0/8
169.254.0.0/16
172.16.0.0/12
192.168.0.0/16
224.0.0.0/3
1.10.16.0/20
fc00::/7
`;

function listFile(text: string) {
  const file = join(mkdtempSync(join(tmpdir(), 'rampart-bogons-')), 'firehol_level1.netset');
  writeFileSync(file, text);
  return file;
}

describe('a block list of bogons in front of the API', () => {
  let t: TestApp | undefined;
  afterAll(async () => {
    await t?.close();
  });

  it('does not refuse health probes, the trusted proxy or internal callers; a listed public address still is', async () => {
    t = await buildTestApp({
      env: { IP_BLOCKLISTS: listFile(fireholLevel1Excerpt), TRUST_PROXY: '10.0.0.0/8' },
    });
    const app = t.app;
    const listed = await app.inject({
      url: '/api/v1/tenants',
      headers: t.asOperator,
      remoteAddress: '1.10.16.5',
    });
    expect(listed.json()).toMatchObject({ code: 'address_blocked' });
    // The load balancer or kubelet probing from the private network, with no X-Forwarded-For.
    const probe = await app.inject({ url: '/healthz', remoteAddress: '10.0.0.5' });
    const ready = await app.inject({ url: '/readyz', remoteAddress: '127.0.0.1' });
    // The vendor's app calling the API from its private network through the trusted proxy.
    const internal = await app.inject({
      url: '/api/v1/tenants',
      headers: { ...t.asOperator, 'x-forwarded-for': '192.168.1.20' },
      remoteAddress: '10.0.0.5',
    });
    const cgnat = await app.inject({
      url: '/api/v1/tenants',
      headers: t.asOperator,
      remoteAddress: '100.64.1.1',
    });
    const uniqueLocal = await app.inject({
      url: '/api/v1/tenants',
      headers: t.asOperator,
      remoteAddress: 'fd00::5',
    });
    expect({
      listed: listed.statusCode,
      probe: probe.statusCode,
      ready: ready.statusCode,
      internal: internal.statusCode,
      cgnat: cgnat.statusCode,
      uniqueLocal: uniqueLocal.statusCode,
    }).toEqual({ listed: 403, probe: 200, ready: 200, internal: 200, cgnat: 200, uniqueLocal: 200 });
  }, 60_000);

  it('answers /healthz even to a listed public address (a probe through a NAT on a listed range)', async () => {
    const res = await t?.app.inject({ url: '/healthz', remoteAddress: '1.10.16.5' });
    expect(res?.statusCode).toBe(200);
  });
});

describe('entries that can never match', () => {
  it('are counted and logged when the list loads', async () => {
    const logged: { obj: object; msg: string }[] = [];
    const lists = createBlockLists([listFile(fireholLevel1Excerpt)], {
      outbound: {} as never,
      clock: { now: () => new Date() },
      log: { info: (obj, msg) => logged.push({ obj, msg }), warn: (obj, msg) => logged.push({ obj, msg }) },
    });
    await lists.refresh();
    // Every entry but 1.10.16.0/20; 224.0.0.0/3 spans multicast and 240/4, both outside global unicast.
    expect(lists.state()[0]).toMatchObject({ neverMatching: 9, error: null });
    expect(logged).toEqual(
      expect.arrayContaining([
        {
          obj: expect.objectContaining({
            neverMatching: 9,
            examples: ['0.0.0.0/8', '10.0.0.0/8', '100.64.0.0/10', '127.0.0.0/8', '169.254.0.0/16'],
          }),
          msg: expect.stringMatching(/never matched/),
        },
      ]),
    );
    expect(lists.match('172.16.0.1')).toBeNull();
    expect(lists.match('::ffff:10.1.2.3')).toBeNull();
    expect(lists.match('1.10.31.255')).toMatch(/firehol_level1/);
  });
});

describe('the non-global ranges', () => {
  it('agree with ipaddr.js: every first and last address of each is outside `unicast`', () => {
    for (const cidr of nonGlobalRanges) {
      const [address, bits] = ipaddr.parseCIDR(cidr);
      const ends =
        address.kind() === 'ipv4'
          ? [ipaddr.IPv4.networkAddressFromCIDR(cidr), ipaddr.IPv4.broadcastAddressFromCIDR(cidr)]
          : [ipaddr.IPv6.networkAddressFromCIDR(cidr), ipaddr.IPv6.broadcastAddressFromCIDR(cidr)];
      for (const end of ends) expect(end.range(), `${cidr} (${end}/${bits})`).not.toBe('unicast');
    }
  });

  it('leave global unicast, 6to4 and Teredo addresses matchable', () => {
    for (const address of ['1.10.16.5', '8.8.8.8', '2a0d:5600::1', '2002:c000:204::1', '2001:0:4136:e378::1'])
      expect(isNonGlobalAddress(address), address).toBe(false);
    for (const address of [
      '10.1.1.1',
      '::1',
      'fe80::1',
      '::ffff:192.168.0.1',
      '255.255.255.255',
      '198.18.7.7',
    ])
      expect(isNonGlobalAddress(address), address).toBe(true);
  });
});
