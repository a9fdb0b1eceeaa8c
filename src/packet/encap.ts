/**
 * IP-in-IP encapsulation headers, written in place in front of the client's packet (hot path:
 * no allocation, no throw). The outer family is the BACKEND's family; the inner packet is
 * whatever the client sent, so all four combinations exist:
 *   inner v4 in outer v4: protocol 4 (RFC 2003)     inner v6 in outer v6: next header 41 (RFC 2473)
 *   inner v4 in outer v6: next header 4             inner v6 in outer v4: protocol 41 (RFC 4213)
 *
 * Every writer returns the number of bytes written (20 or 40), or 0 when the header does not
 * fit in `out` at `off` or the outer packet would exceed 65535 bytes; the forwarder counts a 0
 * as encap_too_big.
 */
import { IPPROTO_IPIP, IPPROTO_IPV6 } from './parsed-packet.js';
import { writeIpv4HeaderChecksum } from './checksum.js';

export const OUTER_IPV4_LEN = 20;
export const OUTER_IPV6_LEN = 40;
export const IPV4_MAX_TOTAL_LEN = 0xffff;
export const IPV6_MAX_PAYLOAD_LEN = 0xffff;

/** Outer IPv4 flags/fragment word: DF set, so a too-big packet gets ICMP back rather than fragments. */
const IPV4_DF = 0x4000;

/**
 * Writes a 20-byte outer IPv4 header (no options, DF set, DSCP/ECN 0) carrying `protocol`,
 * total length 20 + innerLen, with its checksum. src4/dst4 are 4-byte addresses.
 */
export function writeOuterIpv4(
  out: Uint8Array,
  off: number,
  src4: Uint8Array,
  dst4: Uint8Array,
  innerLen: number,
  ttl: number,
  id: number,
  protocol: number,
): number {
  const total = OUTER_IPV4_LEN + innerLen;
  if (off < 0 || off + OUTER_IPV4_LEN > out.length || innerLen < 0 || total > IPV4_MAX_TOTAL_LEN) return 0;
  out[off] = 0x45;
  out[off + 1] = 0;
  out[off + 2] = total >>> 8;
  out[off + 3] = total & 0xff;
  out[off + 4] = (id >>> 8) & 0xff;
  out[off + 5] = id & 0xff;
  out[off + 6] = IPV4_DF >>> 8;
  out[off + 7] = 0;
  out[off + 8] = ttl & 0xff;
  out[off + 9] = protocol;
  out[off + 10] = 0;
  out[off + 11] = 0;
  out[off + 12] = src4[0];
  out[off + 13] = src4[1];
  out[off + 14] = src4[2];
  out[off + 15] = src4[3];
  out[off + 16] = dst4[0];
  out[off + 17] = dst4[1];
  out[off + 18] = dst4[2];
  out[off + 19] = dst4[3];
  writeIpv4HeaderChecksum(out, off);
  return OUTER_IPV4_LEN;
}

/**
 * Writes a 40-byte outer IPv6 header (traffic class 0) with `nextHeader`, payload length
 * innerLen. flowLabel (20 bits) should carry flow entropy so routers spread tunnels by flow.
 */
export function writeOuterIpv6(
  out: Uint8Array,
  off: number,
  src16: Uint8Array,
  dst16: Uint8Array,
  innerLen: number,
  hopLimit: number,
  nextHeader: number,
  flowLabel: number,
): number {
  if (off < 0 || off + OUTER_IPV6_LEN > out.length || innerLen < 0 || innerLen > IPV6_MAX_PAYLOAD_LEN) return 0;
  out[off] = 0x60;
  out[off + 1] = (flowLabel >>> 16) & 0x0f;
  out[off + 2] = (flowLabel >>> 8) & 0xff;
  out[off + 3] = flowLabel & 0xff;
  out[off + 4] = innerLen >>> 8;
  out[off + 5] = innerLen & 0xff;
  out[off + 6] = nextHeader;
  out[off + 7] = hopLimit & 0xff;
  for (let i = 0; i < 16; i++) {
    out[off + 8 + i] = src16[i];
    out[off + 24 + i] = dst16[i];
  }
  return OUTER_IPV6_LEN;
}

/** IPv4 in IPv4 (protocol 4). Returns 20, or 0 if it does not fit. */
export function writeIpipV4(
  out: Uint8Array,
  off: number,
  src4: Uint8Array,
  dst4: Uint8Array,
  innerLen: number,
  ttl: number,
  id: number,
): number {
  return writeOuterIpv4(out, off, src4, dst4, innerLen, ttl, id, IPPROTO_IPIP);
}

/** IPv6 in IPv4 (protocol 41). Returns 20, or 0 if it does not fit. */
export function writeIp6inIp4(
  out: Uint8Array,
  off: number,
  src4: Uint8Array,
  dst4: Uint8Array,
  innerLen: number,
  ttl: number,
  id: number,
): number {
  return writeOuterIpv4(out, off, src4, dst4, innerLen, ttl, id, IPPROTO_IPV6);
}

/** IPv6 in IPv6 (next header 41). Returns 40, or 0 if it does not fit. */
export function writeIp6inIp6(
  out: Uint8Array,
  off: number,
  src16: Uint8Array,
  dst16: Uint8Array,
  innerLen: number,
  hopLimit: number,
  flowLabel = 0,
): number {
  return writeOuterIpv6(out, off, src16, dst16, innerLen, hopLimit, IPPROTO_IPV6, flowLabel);
}

/** IPv4 in IPv6 (next header 4). Returns 40, or 0 if it does not fit. */
export function writeIp4inIp6(
  out: Uint8Array,
  off: number,
  src16: Uint8Array,
  dst16: Uint8Array,
  innerLen: number,
  hopLimit: number,
  flowLabel = 0,
): number {
  return writeOuterIpv6(out, off, src16, dst16, innerLen, hopLimit, IPPROTO_IPIP, flowLabel);
}

/** Outer header length for a backend address of addrLen bytes (4 -> 20, 16 -> 40). */
export function encapHeaderLen(backendAddrLen: number): number {
  return backendAddrLen === 4 ? OUTER_IPV4_LEN : OUTER_IPV6_LEN;
}

/**
 * One entry point for the forwarder: the outer family follows the backend address length
 * (src and dst must have the same length, 4 or 16), the protocol follows the inner packet's
 * IP version (4 or 6). `ttl` is the outer TTL / hop limit; `idOrFlowLabel` is the IPv4
 * identification (16 bits) or the IPv6 flow label (20 bits). Returns 20, 40, or 0.
 */
export function writeEncap(
  out: Uint8Array,
  off: number,
  src: Uint8Array,
  dst: Uint8Array,
  innerVersion: number,
  innerLen: number,
  ttl: number,
  idOrFlowLabel: number,
): number {
  const protocol = innerVersion === 6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
  if (innerVersion !== 4 && innerVersion !== 6) return 0;
  if (dst.length === 4 && src.length === 4) {
    return writeOuterIpv4(out, off, src, dst, innerLen, ttl, idOrFlowLabel, protocol);
  }
  if (dst.length === 16 && src.length === 16) {
    return writeOuterIpv6(out, off, src, dst, innerLen, ttl, protocol, idOrFlowLabel);
  }
  return 0;
}
