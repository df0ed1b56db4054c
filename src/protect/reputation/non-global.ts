import ipaddr from 'ipaddr.js';
import { buildCidrSet } from './cidr-set.ts';

/**
 * Address space no client on the Internet can come from: loopback, RFC 1918 private, carrier-grade NAT,
 * link-local, unique-local, multicast, documentation, benchmarking and reserved ranges (the ones ipaddr.js
 * does not call `unicast`; reputation-bogons.test.ts checks the two agree). Block lists such as FireHOL
 * level1 carry these as bogons, meant for a border firewall's inbound filter; behind one, a request from
 * them is the load balancer's health probe, the trusted proxy itself or an internal caller. Matching them
 * would refuse all of those, so a client address in here is never looked up.
 * Global ranges with special uses stay matchable: 6to4 (2002::/16) and Teredo (2001::/32) carry real
 * clients, and exempting them would let a listed host through over a tunnel.
 */
const nonGlobalCidrs = [
  '0.0.0.0/8', // "this network" (RFC 791)
  '10.0.0.0/8', // private (RFC 1918)
  '100.64.0.0/10', // carrier-grade NAT (RFC 6598)
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local (RFC 3927)
  '172.16.0.0/12', // private (RFC 1918)
  '192.0.0.0/24', // IETF protocol assignments (RFC 6890)
  '192.0.2.0/24', // documentation (RFC 5737)
  '192.88.99.0/24', // former 6to4 relay anycast (RFC 7526)
  '192.168.0.0/16', // private (RFC 1918)
  '198.18.0.0/15', // benchmarking (RFC 2544)
  '198.51.100.0/24', // documentation (RFC 5737)
  '203.0.113.0/24', // documentation (RFC 5737)
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, and the limited broadcast 255.255.255.255
  '::/128', // unspecified
  '::1/128', // loopback
  '100::/64', // discard-only (RFC 6666)
  '2001:2::/48', // benchmarking (RFC 5180)
  '2001:db8::/32', // documentation (RFC 3849)
  '3fff::/20', // documentation (RFC 9637)
  'fc00::/7', // unique-local (RFC 4193)
  'fe80::/10', // link-local
  'fec0::/10', // deprecated site-local (RFC 3879)
  'ff00::/8', // multicast
] as const;

export const nonGlobalRanges: readonly string[] = nonGlobalCidrs;

const nonGlobal = buildCidrSet(nonGlobalCidrs.map((cidr) => ipaddr.parseCIDR(cidr)));

/** True for a client address outside global unicast (IPv4-mapped IPv6 is judged as its IPv4 address). */
export const isNonGlobalAddress = (address: string): boolean => nonGlobal.has(address);

/** True when every address of the range is outside global unicast: a list entry that can never match. */
export const isNonGlobalRange = (cidr: [ipaddr.IPv4 | ipaddr.IPv6, number]): boolean =>
  nonGlobal.covers(cidr);
