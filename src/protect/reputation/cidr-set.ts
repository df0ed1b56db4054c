import ipaddr from 'ipaddr.js';

/**
 * A set of address ranges with O(log n) membership: the ranges are merged into disjoint intervals,
 * sorted by start, and looked up by binary search. IPv4 intervals are 32-bit numbers in typed arrays;
 * IPv6 intervals are 128-bit numbers split into two 64-bit halves (BigUint64Array), compared
 * lexicographically. 100k ranges take about 1 MB.
 */
export interface CidrSet {
  has(address: string): boolean;
  /** True when every address of the range is in the set. */
  covers(cidr: [ipaddr.IPv4 | ipaddr.IPv6, number]): boolean;
  /** Ranges after merging, per family. */
  readonly size: { v4: number; v6: number };
}

const MASK64 = (1n << 64n) - 1n;

function v4Range([address, bits]: [ipaddr.IPv4, number]): [number, number] {
  const bytes = address.toByteArray();
  const value =
    (((bytes[0] ?? 0) << 24) | ((bytes[1] ?? 0) << 16) | ((bytes[2] ?? 0) << 8) | (bytes[3] ?? 0)) >>> 0;
  const size = 2 ** (32 - bits);
  const start = value - (value % size);
  return [start, start + size - 1];
}

function v6Value(address: ipaddr.IPv6): bigint {
  let value = 0n;
  for (const part of address.parts) value = (value << 16n) | BigInt(part);
  return value;
}

function v6Range([address, bits]: [ipaddr.IPv6, number]): [bigint, bigint] {
  const hostBits = BigInt(128 - bits);
  const start = (v6Value(address) >> hostBits) << hostBits;
  return [start, start + (1n << hostBits) - 1n];
}

function merge<T extends number | bigint>(ranges: [T, T][], next: (value: T) => T): [T, T][] {
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const out: [T, T][] = [];
  for (const [start, end] of ranges) {
    const last = out.at(-1);
    // Adjacent or overlapping: extend (next(last end) avoids overflow at the top of the space).
    if (last && start <= next(last[1])) {
      if (end > last[1]) last[1] = end;
    } else out.push([start, end]);
  }
  return out;
}

/** Builds the set from parsed CIDRs (IPv4-mapped IPv6 entries count as IPv4). */
export function buildCidrSet(cidrs: Iterable<[ipaddr.IPv4 | ipaddr.IPv6, number]>): CidrSet {
  const v4: [number, number][] = [];
  const v6: [bigint, bigint][] = [];
  for (const [address, bits] of cidrs) {
    if (address.kind() === 'ipv4') v4.push(v4Range([address as ipaddr.IPv4, bits]));
    else {
      const v6address = address as ipaddr.IPv6;
      if (v6address.isIPv4MappedAddress() && bits >= 96)
        v4.push(v4Range([v6address.toIPv4Address(), bits - 96]));
      else v6.push(v6Range([v6address, bits]));
    }
  }
  const merged4 = merge(v4, (n) => n + 1);
  const merged6 = merge(v6, (n) => n + 1n);
  const starts4 = Uint32Array.from(merged4, (r) => r[0]);
  const ends4 = Uint32Array.from(merged4, (r) => r[1]);
  const startHi = BigUint64Array.from(merged6, (r) => r[0] >> 64n);
  const startLo = BigUint64Array.from(merged6, (r) => r[0] & MASK64);
  const ends6 = merged6.map((r) => r[1]);

  /** The last interval starting at or before value, or -1. */
  const at4 = (value: number): number => {
    let lo = 0;
    let hi = starts4.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      if ((starts4[mid] as number) <= value) lo = mid + 1;
      else hi = mid - 1;
    }
    return hi;
  };
  const at6 = (value: bigint): number => {
    const vHi = value >> 64n;
    const vLo = value & MASK64;
    let lo = 0;
    let hi = startHi.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >>> 1;
      const sHi = startHi[mid] as bigint;
      if (sHi < vHi || (sHi === vHi && (startLo[mid] as bigint) <= vLo)) lo = mid + 1;
      else hi = mid - 1;
    }
    return hi;
  };
  // Merged intervals are disjoint and not adjacent, so a range inside the set lies inside one of them.
  const covers4 = ([start, end]: [number, number]) => {
    const i = at4(start);
    return i >= 0 && end <= (ends4[i] as number);
  };
  const covers6 = ([start, end]: [bigint, bigint]) => {
    const i = at6(start);
    return i >= 0 && end <= (ends6[i] as bigint);
  };

  return {
    size: { v4: merged4.length, v6: merged6.length },
    has(address) {
      let parsed: ipaddr.IPv4 | ipaddr.IPv6;
      try {
        parsed = ipaddr.process(address);
      } catch {
        return false;
      }
      if (parsed.kind() === 'ipv4') return covers4(v4Range([parsed as ipaddr.IPv4, 32]));
      const value = v6Value(parsed as ipaddr.IPv6);
      return covers6([value, value]);
    },
    covers([address, bits]) {
      if (address.kind() === 'ipv4') return covers4(v4Range([address as ipaddr.IPv4, bits]));
      const v6address = address as ipaddr.IPv6;
      if (v6address.isIPv4MappedAddress() && bits >= 96)
        return covers4(v4Range([v6address.toIPv4Address(), bits - 96]));
      return covers6(v6Range([v6address, bits]));
    },
  };
}
