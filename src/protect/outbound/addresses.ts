import ipaddr from 'ipaddr.js';

export type ParsedCidr = [ipaddr.IPv4 | ipaddr.IPv6, number];

/** Parses CIDRs (or single addresses) of OUTBOUND_ALLOW_PRIVATE; throws naming the bad entry. */
export function parseCidrs(entries: string[], setting: string): ParsedCidr[] {
  return entries.map((entry) => {
    try {
      if (entry.includes('/')) return ipaddr.parseCIDR(entry);
      const address = ipaddr.parse(entry);
      return [address, address.kind() === 'ipv4' ? 32 : 128];
    } catch {
      throw new Error(`${setting}: "${entry}" is not an IP address or CIDR`);
    }
  });
}

/**
 * Why an address must not be reached, or null when it may. Only global unicast passes: loopback,
 * private (RFC 1918), link-local (169.254.0.0/16 holds the cloud metadata endpoints), unique-local
 * (fd00:ec2::254 is AWS's IPv6 metadata), carrier-grade NAT (100.100.100.200 is Alibaba's), multicast,
 * reserved and the IPv6 transition ranges that embed an IPv4 address (6to4, Teredo, NAT64) are refused.
 * IPv4-mapped IPv6 (::ffff:127.0.0.1) is judged as the IPv4 address it is. The deprecated IPv4-compatible
 * form (::127.0.0.1, ::/96; RFC 4291 2.5.5.1) is refused too: ipaddr.js calls it `unicast`, and a host
 * with an automatic tunnel (sit0) still carries it to the embedded IPv4 address.
 */
export function forbiddenReason(address: string, allowPrivate: readonly ParsedCidr[]): string | null {
  let parsed: ipaddr.IPv4 | ipaddr.IPv6;
  try {
    parsed = ipaddr.process(address);
  } catch {
    return 'invalid_address';
  }
  const ipv4Compatible = (ip: ipaddr.IPv6) => ip.parts.slice(0, 6).every((part) => part === 0);
  let range: string = parsed.range();
  if (range === 'unicast' && parsed.kind() === 'ipv6' && ipv4Compatible(parsed as ipaddr.IPv6))
    range = 'ipv4Compatible';
  if (range === 'unicast') return null;
  const allowed = allowPrivate.some(
    ([network, bits]) => network.kind() === parsed.kind() && parsed.match(network, bits),
  );
  return allowed ? null : `address_${range}`;
}
