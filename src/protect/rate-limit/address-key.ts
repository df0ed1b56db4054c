import ipaddr from 'ipaddr.js';

/**
 * The key a client address is counted under. An IPv4 address counts alone (an IPv4-mapped IPv6 address
 * is that IPv4 address); an IPv6 address counts as its /64, because one host is normally given a whole
 * /64 (RFC 4291's interface identifiers, SLAAC privacy addresses) and can send from a fresh address for
 * every request: keyed by the full address, the per-address limits and the failed sign-in budget would
 * not hold at all. Devices on one IPv6 network share a budget, as devices behind one IPv4 NAT do.
 * Addresses are parsed by ipaddr.js, never by hand; the caller has already checked it is an address.
 */
export function addressKey(ip: string): string {
  // The common case, checked without parsing: an IPv4 address is its own key.
  if (!ip.includes(':')) return ip;
  let address: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    address = ipaddr.parse(ip);
  } catch {
    return ip;
  }
  if (address.kind() === 'ipv4') return address.toString();
  const v6 = address as ipaddr.IPv6;
  if (v6.isIPv4MappedAddress()) return v6.toIPv4Address().toString();
  const prefix = v6.parts.slice(0, 4).map((part) => part.toString(16));
  return `${prefix.join(':')}::/64`;
}
