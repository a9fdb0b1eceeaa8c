/**
 * parseFrame: the data plane's only frame parser. Ethernet II, at most one 802.1Q tag (or an
 * 802.1ad S-tag followed by one 802.1Q C-tag), IPv4 without options or fragments, IPv6 without
 * extension headers, TCP and UDP. Anything else is a drop with a named reason.
 *
 * Order of the checks: structure first (does each header fit, is each length field sane, is
 * the IPv4 header checksum right), policy second (options, fragments, extension headers,
 * protocols Sluice does not balance). So a corrupt packet is counted as corrupt even when it
 * also carries options or is a fragment.
 *
 * On success every ParsedPacket field describes the frame. On a drop the fields learned before
 * the failing check are filled in (useful for counters and logs) and the rest are zero.
 */
import { Drop } from './drop-reasons.js';
import { IPPROTO_TCP, IPPROTO_UDP, type ParsedPacket } from './parsed-packet.js';
import { verifyIpv4HeaderChecksum } from './checksum.js';

export const ETH_HEADER_LEN = 14;
export const VLAN_TAG_LEN = 4;
export const IPV4_HEADER_LEN = 20;
export const IPV6_HEADER_LEN = 40;
export const TCP_HEADER_LEN = 20;
export const UDP_HEADER_LEN = 8;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;

const IPV4_FLAG_MF = 0x2000;
const IPV4_FRAG_OFFSET_MASK = 0x1fff;
const IPV6_NH_FRAGMENT = 44;

/** Zeroes every field so nothing from the previous frame survives. */
function resetParsed(p: ParsedPacket): void {
  p.frameLen = 0;
  p.vlanId = 0;
  p.l3Offset = 0;
  p.ipVersion = 0;
  p.l3Length = 0;
  p.srcAddrOffset = 0;
  p.dstAddrOffset = 0;
  p.addrLen = 0;
  p.protocol = 0;
  p.ttl = 0;
  p.l4Offset = 0;
  p.srcPort = 0;
  p.dstPort = 0;
  p.tcpFlags = 0;
  p.tcpOptionsOffset = 0;
  p.tcpOptionsLen = 0;
  p.payloadOffset = 0;
  p.payloadLen = 0;
}

/** IPv6 next-header values that are extension headers Sluice does not walk (44, fragment, is separate). */
function isIpv6ExtensionHeader(nh: number): boolean {
  return (
    nh === 0 || // hop-by-hop options
    nh === 43 || // routing
    nh === 60 || // destination options
    nh === 51 || // AH
    nh === 50 || // ESP
    nh === 135 || // mobility
    nh === 139 || // HIP
    nh === 140 // shim6
  );
}

/**
 * Parses buf[0 .. len) into p. Returns Drop.ok (0) or a Drop reason index. Never throws, never
 * allocates, never reads at or past min(len, buf.length).
 */
export function parseFrame(buf: Uint8Array, len: number, p: ParsedPacket): number {
  resetParsed(p);
  // A len larger than the buffer, negative, or fractional must not lead to reads out of range.
  let n = len > buf.length ? buf.length : len;
  n = n > 0 ? n | 0 : 0;
  p.frameLen = n;

  if (n < ETH_HEADER_LEN) return Drop.truncated_ethernet;
  let off = 12;
  let etherType = (buf[off] << 8) | buf[off + 1];
  off += 2;

  if (etherType === ETHERTYPE_QINQ) {
    // 802.1ad S-tag; only an 802.1Q C-tag may follow. vlanId is the inner (C-tag) id.
    if (n < off + VLAN_TAG_LEN) return Drop.truncated_vlan;
    etherType = (buf[off + 2] << 8) | buf[off + 3];
    off += VLAN_TAG_LEN;
    if (etherType !== ETHERTYPE_VLAN) return Drop.unsupported_ethertype;
  }
  if (etherType === ETHERTYPE_VLAN) {
    if (n < off + VLAN_TAG_LEN) return Drop.truncated_vlan;
    p.vlanId = ((buf[off] << 8) | buf[off + 1]) & 0x0fff;
    etherType = (buf[off + 2] << 8) | buf[off + 3];
    off += VLAN_TAG_LEN;
  }

  p.l3Offset = off;
  const avail = n - off;
  let l4Len: number;

  if (etherType === ETHERTYPE_IPV4) {
    if (avail < IPV4_HEADER_LEN) return Drop.truncated_ipv4;
    const version = buf[off] >>> 4;
    if (version !== 4) return Drop.bad_ip_version;
    p.ipVersion = 4;
    const hdrLen = (buf[off] & 0x0f) << 2;
    if (hdrLen < IPV4_HEADER_LEN) return Drop.bad_ihl;
    if (hdrLen > avail) return Drop.truncated_ipv4;
    const totalLen = (buf[off + 2] << 8) | buf[off + 3];
    if (totalLen < hdrLen || totalLen > avail) return Drop.bad_total_length;
    p.l3Length = totalLen;
    if (!verifyIpv4HeaderChecksum(buf, off, hdrLen)) return Drop.bad_ipv4_checksum;
    p.ttl = buf[off + 8];
    p.protocol = buf[off + 9];
    p.addrLen = 4;
    p.srcAddrOffset = off + 12;
    p.dstAddrOffset = off + 16;
    if (hdrLen !== IPV4_HEADER_LEN) return Drop.ipv4_options;
    const fragWord = (buf[off + 6] << 8) | buf[off + 7];
    if ((fragWord & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK)) !== 0) return Drop.ipv4_fragment;
    off += hdrLen;
    l4Len = totalLen - hdrLen;
  } else if (etherType === ETHERTYPE_IPV6) {
    if (avail < IPV6_HEADER_LEN) return Drop.truncated_ipv6;
    const version = buf[off] >>> 4;
    if (version !== 6) return Drop.bad_ip_version;
    p.ipVersion = 6;
    const payloadLen = (buf[off + 4] << 8) | buf[off + 5];
    if (payloadLen > avail - IPV6_HEADER_LEN) return Drop.bad_payload_length;
    p.l3Length = IPV6_HEADER_LEN + payloadLen;
    p.protocol = buf[off + 6];
    p.ttl = buf[off + 7];
    p.addrLen = 16;
    p.srcAddrOffset = off + 8;
    p.dstAddrOffset = off + 24;
    const nh = p.protocol;
    if (nh === IPV6_NH_FRAGMENT) return Drop.ipv6_fragment;
    if (isIpv6ExtensionHeader(nh)) return Drop.ipv6_extension_header;
    off += IPV6_HEADER_LEN;
    l4Len = payloadLen;
  } else {
    return Drop.unsupported_ethertype;
  }

  const proto = p.protocol;
  if (proto === IPPROTO_TCP) {
    if (l4Len < TCP_HEADER_LEN) return Drop.truncated_tcp;
    p.l4Offset = off;
    p.srcPort = (buf[off] << 8) | buf[off + 1];
    p.dstPort = (buf[off + 2] << 8) | buf[off + 3];
    p.tcpFlags = buf[off + 13];
    const tcpHdrLen = (buf[off + 12] >>> 4) << 2;
    if (tcpHdrLen < TCP_HEADER_LEN || tcpHdrLen > l4Len) return Drop.bad_tcp_data_offset;
    p.tcpOptionsOffset = off + TCP_HEADER_LEN;
    p.tcpOptionsLen = tcpHdrLen - TCP_HEADER_LEN;
    p.payloadOffset = off + tcpHdrLen;
    p.payloadLen = l4Len - tcpHdrLen;
    return Drop.ok;
  }
  if (proto === IPPROTO_UDP) {
    if (l4Len < UDP_HEADER_LEN) return Drop.truncated_udp;
    p.l4Offset = off;
    p.srcPort = (buf[off] << 8) | buf[off + 1];
    p.dstPort = (buf[off + 2] << 8) | buf[off + 3];
    const udpLen = (buf[off + 4] << 8) | buf[off + 5];
    if (udpLen < UDP_HEADER_LEN || udpLen > l4Len) return Drop.bad_udp_length;
    p.payloadOffset = off + UDP_HEADER_LEN;
    p.payloadLen = udpLen - UDP_HEADER_LEN;
    return Drop.ok;
  }
  return Drop.unsupported_protocol;
}
