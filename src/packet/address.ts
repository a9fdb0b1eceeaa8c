import { isIP, isIPv4, isIPv6 } from 'node:net';

// The one place where IP address text becomes bytes and bytes become text. node:net decides
// validity; the conversion is ours. IPv6 text may use :: compression and an embedded dotted IPv4
// tail (::ffff:192.0.2.1); no zone ids. Text out follows RFC 5952, which config canonical forms,
// flow listings and cluster messages all share, so one address never has two spellings.

/** "192.0.2.1" -> 4 bytes. Throws on anything that is not a dotted-quad IPv4 address. */
export function ipv4ToBytes(text: string): Uint8Array {
  if (!isIPv4(text)) throw new Error(`invalid IPv4 address ${JSON.stringify(text)}: expected dotted quad like 192.0.2.1`);
  return Uint8Array.from(text.split('.').map(Number));
}

/** "2001:db8::1" -> 16 bytes. Throws on anything that is not an IPv6 address. */
export function ipv6ToBytes(text: string): Uint8Array {
  if (!isIPv6(text) || text.includes('%')) {
    throw new Error(`invalid IPv6 address ${JSON.stringify(text)}: expected e.g. 2001:db8::1 (no zone id)`);
  }
  let s = text;
  // An embedded IPv4 tail stands for the last two 16-bit groups.
  const lastColon = s.lastIndexOf(':');
  const tail = s.slice(lastColon + 1);
  if (tail.includes('.')) {
    const v4 = ipv4ToBytes(tail);
    s = `${s.slice(0, lastColon + 1)}${((v4[0] << 8) | v4[1]).toString(16)}:${((v4[2] << 8) | v4[3]).toString(16)}`;
  }
  const dbl = s.indexOf('::');
  const headGroups = dbl === -1 ? s.split(':') : s.slice(0, dbl) === '' ? [] : s.slice(0, dbl).split(':');
  const restGroups = dbl === -1 || s.slice(dbl + 2) === '' ? [] : s.slice(dbl + 2).split(':');
  const groups = new Array<string>(8).fill('0');
  headGroups.forEach((g, i) => (groups[i] = g));
  restGroups.forEach((g, i) => (groups[8 - restGroups.length + i] = g));
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    const v = parseInt(g, 16);
    out[i * 2] = v >>> 8;
    out[i * 2 + 1] = v & 0xff;
  });
  return out;
}

/** Either family: 4 bytes for IPv4 text, 16 for IPv6 text. */
export function ipToBytes(text: string): Uint8Array {
  if (isIPv4(text)) return ipv4ToBytes(text);
  if (isIPv6(text)) return ipv6ToBytes(text);
  throw new Error(`invalid IP address ${JSON.stringify(text)}: expected IPv4 (192.0.2.1) or IPv6 (2001:db8::1)`);
}

/** Whether the 16 bytes at `off` are an IPv4-mapped IPv6 address (::ffff:0:0/96, RFC 4291 2.5.5.2). */
export function isIpv4Mapped(b: Uint8Array, off = 0): boolean {
  for (let i = 0; i < 10; i++) if (b[off + i] !== 0) return false;
  return b[off + 10] === 0xff && b[off + 11] === 0xff;
}

/**
 * 4 or 16 bytes at `off` -> canonical text. IPv6 per RFC 5952: lowercase, no leading zeros, the
 * longest run (>= 2, the first of equal runs) of zero groups as "::", and an IPv4-mapped address
 * with its dotted IPv4 tail (section 5: "::ffff:192.0.2.1"). Not for the hot path.
 */
export function formatAddress(b: Uint8Array, off: number, len: number): string {
  if (len === 4) return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
  if (isIpv4Mapped(b, off)) return `::ffff:${b[off + 12]}.${b[off + 13]}.${b[off + 14]}.${b[off + 15]}`;
  const g: number[] = [];
  for (let i = 0; i < 8; i++) g.push((b[off + i * 2] << 8) | b[off + i * 2 + 1]);
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * Canonical text of an IPv4 or IPv6 address (IPv6 per RFC 5952, as formatAddress), or undefined
 * if `text` is not an address. Zone indexes ("fe80::1%eth0") are not addresses here.
 */
export function normalizeAddress(text: string): string | undefined {
  if (text.includes('%')) return undefined;
  const family = isIP(text);
  if (family === 4) return text;
  if (family === 6) return formatAddress(ipv6ToBytes(text), 0, 16);
  return undefined;
}
