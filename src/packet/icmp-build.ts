/**
 * ICMP messages Sluice itself sends back toward a client: the echo reply for a ping of a VIP,
 * and "fragmentation needed" (ICMPv4 type 3 code 4) / "packet too big" (ICMPv6 type 2) when an
 * ipip packet plus its outer header would not fit the egress MTU. Each is written into `tx`
 * from the received frame, with every checksum computed; nothing allocates.
 *
 * Both go back out the way the request came: the Ethernet header (and any VLAN tag) is the
 * received one with its MAC addresses swapped, so the frame reaches the station that sent it.
 */
import { foldSum, internetChecksum, pseudoHeaderSum, sumWords, writeIpv4HeaderChecksum } from './checksum.js';
import { ICMP4_CODE_FRAG_NEEDED, ICMP4_DEST_UNREACH, ICMP4_ECHO_REPLY, ICMP6_ECHO_REPLY, ICMP6_PACKET_TOO_BIG, IPPROTO_ICMP, IPPROTO_ICMPV6, type ParsedPacket } from './parsed-packet.js';

const IPV4_HEADER = 20;
const IPV6_HEADER = 40;
const ICMP_HEADER = 8;
const REPLY_TTL = 64;
/** RFC 1812 4.3.2.3: an ICMPv4 error carries as much of the packet as fits in 576 bytes. */
const ICMP4_ERROR_MAX = 576;
/** RFC 4443 2.4(c): an ICMPv6 error must not exceed the minimum IPv6 MTU. */
const ICMP6_ERROR_MAX = 1280;

/** Copy the link header of `rx` (Ethernet and any VLAN tags) to `tx` with source and destination MAC swapped. */
function writeReturnLink(rx: Uint8Array, p: ParsedPacket, tx: Uint8Array): void {
  for (let i = 0; i < 6; i++) {
    tx[i] = rx[6 + i];
    tx[6 + i] = rx[i];
  }
  for (let i = 12; i < p.l3Offset; i++) tx[i] = rx[i];
}

/** The ICMPv6 checksum of the message at `off` (`len` bytes, checksum field zero) under the IPv6 header at `ip`. */
function writeIcmp6Checksum(tx: Uint8Array, ip: number, off: number, len: number): void {
  tx[off + 2] = 0;
  tx[off + 3] = 0;
  const sum = sumWords(tx, off, len, pseudoHeaderSum(tx, ip + 8, ip + 24, 16, IPPROTO_ICMPV6, len));
  const c = ~foldSum(sum) & 0xffff;
  tx[off + 2] = c >>> 8;
  tx[off + 3] = c & 0xff;
}

function writeIcmp4Checksum(tx: Uint8Array, off: number, len: number): void {
  tx[off + 2] = 0;
  tx[off + 3] = 0;
  const c = internetChecksum(tx, off, len);
  tx[off + 2] = c >>> 8;
  tx[off + 3] = c & 0xff;
}

/**
 * The reply to an echo request to a VIP: the request with its addresses swapped, type echo
 * reply (0 / 129), a fresh TTL / hop limit and every checksum recomputed. IPv4 options and IPv6
 * extension headers of the request are not echoed: the reply carries a plain header. Returns
 * the frame length (0 if `tx` is too small).
 */
export function writeEchoReply(rx: Uint8Array, p: ParsedPacket, tx: Uint8Array): number {
  const icmpLen = p.l3Length - p.l3HeaderLen;
  const v4 = p.ipVersion === 4;
  const ip = p.l3Offset;
  const hdr = v4 ? IPV4_HEADER : IPV6_HEADER;
  const l4 = ip + hdr;
  if (l4 + icmpLen > tx.length) return 0;
  writeReturnLink(rx, p, tx);
  if (v4) {
    writeIpv4Header(tx, ip, IPV4_HEADER + icmpLen, rx[p.l3Offset + 4], rx[p.l3Offset + 5], IPPROTO_ICMP, rx, p.dstAddrOffset, p.srcAddrOffset);
  } else {
    writeIpv6Header(tx, ip, icmpLen, IPPROTO_ICMPV6, rx, p.dstAddrOffset, p.srcAddrOffset);
  }
  for (let i = 0; i < icmpLen; i++) tx[l4 + i] = rx[p.l4Offset + i];
  tx[l4] = v4 ? ICMP4_ECHO_REPLY : ICMP6_ECHO_REPLY;
  tx[l4 + 1] = 0;
  if (v4) writeIcmp4Checksum(tx, l4, icmpLen);
  else writeIcmp6Checksum(tx, ip, l4, icmpLen);
  return l4 + icmpLen;
}

/**
 * "Fragmentation needed" (IPv4) or "packet too big" (IPv6) for the packet in `rx`, from the
 * address it was sent to (the VIP) back to its sender, announcing `mtu`. It quotes as much of
 * the packet as the ICMP size limits allow (576 bytes in all for IPv4, 1280 for IPv6). Returns
 * the frame length (0 if `tx` is too small).
 */
export function writeTooBig(rx: Uint8Array, p: ParsedPacket, mtu: number, tx: Uint8Array): number {
  const v4 = p.ipVersion === 4;
  const ip = p.l3Offset;
  const hdr = v4 ? IPV4_HEADER : IPV6_HEADER;
  const l4 = ip + hdr;
  const quote = Math.min(p.l3Length, (v4 ? ICMP4_ERROR_MAX : ICMP6_ERROR_MAX) - hdr - ICMP_HEADER);
  const icmpLen = ICMP_HEADER + quote;
  if (l4 + icmpLen > tx.length) return 0;
  writeReturnLink(rx, p, tx);
  if (v4) writeIpv4Header(tx, ip, hdr + icmpLen, 0, 0, IPPROTO_ICMP, rx, p.dstAddrOffset, p.srcAddrOffset);
  else writeIpv6Header(tx, ip, icmpLen, IPPROTO_ICMPV6, rx, p.dstAddrOffset, p.srcAddrOffset);
  tx[l4] = v4 ? ICMP4_DEST_UNREACH : ICMP6_PACKET_TOO_BIG;
  tx[l4 + 1] = v4 ? ICMP4_CODE_FRAG_NEEDED : 0;
  // v4: 16 unused bits then the next-hop MTU (RFC 1191); v6: the 32-bit MTU (RFC 4443).
  tx[l4 + 4] = v4 ? 0 : (mtu >>> 24) & 0xff;
  tx[l4 + 5] = v4 ? 0 : (mtu >>> 16) & 0xff;
  tx[l4 + 6] = (mtu >>> 8) & 0xff;
  tx[l4 + 7] = mtu & 0xff;
  for (let i = 0; i < quote; i++) tx[l4 + ICMP_HEADER + i] = rx[ip + i];
  if (v4) writeIcmp4Checksum(tx, l4, icmpLen);
  else writeIcmp6Checksum(tx, ip, l4, icmpLen);
  return l4 + icmpLen;
}

/** A plain IPv4 header (no options, DF clear) from the address at rx[srcOff] to rx[dstOff]. */
function writeIpv4Header(tx: Uint8Array, ip: number, totalLen: number, idHi: number, idLo: number, proto: number, rx: Uint8Array, srcOff: number, dstOff: number): void {
  tx[ip] = 0x45;
  tx[ip + 1] = 0;
  tx[ip + 2] = totalLen >>> 8;
  tx[ip + 3] = totalLen & 0xff;
  tx[ip + 4] = idHi;
  tx[ip + 5] = idLo;
  tx[ip + 6] = 0;
  tx[ip + 7] = 0;
  tx[ip + 8] = REPLY_TTL;
  tx[ip + 9] = proto;
  for (let i = 0; i < 4; i++) {
    tx[ip + 12 + i] = rx[srcOff + i];
    tx[ip + 16 + i] = rx[dstOff + i];
  }
  writeIpv4HeaderChecksum(tx, ip);
}

/** A plain IPv6 header (traffic class and flow label 0) from the address at rx[srcOff] to rx[dstOff]. */
function writeIpv6Header(tx: Uint8Array, ip: number, payloadLen: number, next: number, rx: Uint8Array, srcOff: number, dstOff: number): void {
  tx[ip] = 0x60;
  tx[ip + 1] = 0;
  tx[ip + 2] = 0;
  tx[ip + 3] = 0;
  tx[ip + 4] = payloadLen >>> 8;
  tx[ip + 5] = payloadLen & 0xff;
  tx[ip + 6] = next;
  tx[ip + 7] = REPLY_TTL;
  for (let i = 0; i < 16; i++) {
    tx[ip + 8 + i] = rx[srcOff + i];
    tx[ip + 24 + i] = rx[dstOff + i];
  }
}
