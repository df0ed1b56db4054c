import ipaddr from 'ipaddr.js';

export interface ParsedList {
  cidrs: [ipaddr.IPv4 | ipaddr.IPv6, number][];
  /** Lines that were neither comments nor addresses (counted, not fatal: feeds change format at the edges). */
  rejected: number;
}

/**
 * Reads the text formats of the common block lists, line by line:
 * - FireHOL netsets: `1.2.3.0/24` or `1.2.3.4`, comments from `#`;
 * - Spamhaus DROP / DROPv6 text: `1.10.16.0/20 ; SBL256894`, comments from `;`.
 * A bare address is a /32 (/128). Addresses are parsed by ipaddr.js, never by hand.
 */
export function parseBlockList(text: string): ParsedList {
  const cidrs: ParsedList['cidrs'] = [];
  let rejected = 0;
  for (const raw of text.split('\n')) {
    const line = raw.replace(/[#;].*$/, '').trim();
    if (line === '') continue;
    const token = line.split(/\s+/)[0] ?? '';
    try {
      if (token.includes('/')) cidrs.push(ipaddr.parseCIDR(token));
      else {
        const address = ipaddr.parse(token);
        cidrs.push([address, address.kind() === 'ipv4' ? 32 : 128]);
      }
    } catch {
      rejected += 1;
    }
  }
  return { cidrs, rejected };
}
