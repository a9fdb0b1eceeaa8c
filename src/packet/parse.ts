/**
 * parseFrame: the data plane's only frame parser. Ethernet II, at most one 802.1Q tag (or an
 * 802.1ad S-tag followed by one 802.1Q C-tag), IPv4 with options, IPv6 with its extension
 * header chain (hop-by-hop, routing, destination options, fragment, AH), fragments of either,
 * TCP, UDP, ICMP and ICMPv6. Anything else, and any malformed header, is a drop with a named
 * reason.
 *
 * Order of the checks: structure first (does each header fit, is each length field sane, is
 * the IPv4 header checksum right), then the walk to the transport header. So a corrupt packet
 * is counted as corrupt whatever else it carries. What to DO with a fragment or an ICMP message
 * is the forwarder's policy, not the parser's: the parser only describes them (fragment,
 * fragOffset, fragId; icmpType, and for an ICMP error the 5-tuple of the packet it quotes).
 *
 * On success every ParsedPacket field describes the frame. On a drop the fields learned before
 * the failing check are filled in (useful for counters and logs) and the rest are zero.
 */
import { Drop } from './drop-reasons.js';
import {
  FRAG_FIRST,
  FRAG_LATER,
  FRAG_NONE,
  ICMP4_DEST_UNREACH,
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  ICMP4_TIME_EXCEEDED,
  ICMP6_DEST_UNREACH,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP6_PACKET_TOO_BIG,
  ICMP6_TIME_EXCEEDED,
  IPPROTO_ICMP,
  IPPROTO_ICMPV6,
  IPPROTO_TCP,
  IPPROTO_UDP,
  type ParsedPacket,
} from './parsed-packet.js';
import { verifyIpv4HeaderChecksum } from './checksum.js';

export const ETH_HEADER_LEN = 14;
export const VLAN_TAG_LEN = 4;
export const IPV4_HEADER_LEN = 20;
export const IPV6_HEADER_LEN = 40;
export const TCP_HEADER_LEN = 20;
export const UDP_HEADER_LEN = 8;
export const ICMP_HEADER_LEN = 8;

export const ETHERTYPE_IPV4 = 0x0800;
export const ETHERTYPE_IPV6 = 0x86dd;
export const ETHERTYPE_VLAN = 0x8100;
export const ETHERTYPE_QINQ = 0x88a8;

const IPV4_FLAG_MF = 0x2000;
const IPV4_FRAG_OFFSET_MASK = 0x1fff;
const IPV4_OPT_EOL = 0;
const IPV4_OPT_NOP = 1;

const IPV6_NH_HOP_BY_HOP = 0;
const IPV6_NH_ROUTING = 43;
const IPV6_NH_FRAGMENT = 44;
const IPV6_NH_AH = 51;
const IPV6_NH_DEST_OPTS = 60;
const IPV6_EXT_MIN_LEN = 8;
/**
 * The longest extension chain Sluice walks. RFC 8200 allows each header once (destination
 * options twice); a longer chain is either an attack on the parser or nothing a host sends.
 */
export const IPV6_MAX_EXTENSION_HEADERS = 8;

// Scratch results of walkIpv6Extensions (module-level so the walk allocates nothing).
let wNext = 0;
let wPos = 0;
let wFragHeader = 0;

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
  p.l3HeaderLen = 0;
  p.fragment = FRAG_NONE;
  p.fragOffset = 0;
  p.fragMore = 0;
  p.fragId = 0;
  p.fragHeaderOffset = 0;
  p.icmpType = 0;
  p.icmpCode = 0;
  p.icmpId = 0;
  p.innerL3Offset = 0;
  p.innerProtocol = 0;
  p.innerSrcAddrOffset = 0;
  p.innerDstAddrOffset = 0;
  p.innerSrcPort = 0;
  p.innerDstPort = 0;
}

/** Whether each IPv4 option in buf[pos .. end) is a well-formed TLV (RFC 791). */
function ipv4OptionsWellFormed(buf: Uint8Array, pos: number, end: number): boolean {
  while (pos < end) {
    const type = buf[pos];
    if (type === IPV4_OPT_EOL) return true;
    if (type === IPV4_OPT_NOP) {
      pos++;
      continue;
    }
    if (pos + 1 >= end) return false;
    const len = buf[pos + 1];
    if (len < 2 || pos + len > end) return false;
    pos += len;
  }
  return true;
}

function isWalkedExtension(nh: number): boolean {
  return nh === IPV6_NH_HOP_BY_HOP || nh === IPV6_NH_ROUTING || nh === IPV6_NH_DEST_OPTS || nh === IPV6_NH_FRAGMENT || nh === IPV6_NH_AH;
}

/**
 * Walks the IPv6 extension headers starting at buf[pos] (named by `nh`) within buf[.. end).
 * Sets wNext (the transport protocol, or the header after a non-first fragment's fragment
 * header), wPos (where it starts) and wFragHeader (offset of the fragment header, or 0).
 * Returns Drop.ok or the reason the chain is malformed. A non-first fragment ends the walk at
 * its fragment header: what follows is payload, not headers.
 */
function walkIpv6Extensions(buf: Uint8Array, pos: number, end: number, nh: number): number {
  wFragHeader = 0;
  let count = 0;
  while (isWalkedExtension(nh)) {
    if (++count > IPV6_MAX_EXTENSION_HEADERS) return Drop.ipv6_extension_chain_too_long;
    // RFC 8200 4.3: hop-by-hop options only directly after the IPv6 header.
    if (nh === IPV6_NH_HOP_BY_HOP && count !== 1) return Drop.bad_ipv6_extension_header;
    if (pos + IPV6_EXT_MIN_LEN > end) return Drop.bad_ipv6_extension_header;
    let len: number;
    if (nh === IPV6_NH_FRAGMENT) {
      if (wFragHeader !== 0) return Drop.bad_ipv6_extension_header;
      wFragHeader = pos;
      len = IPV6_EXT_MIN_LEN;
    } else if (nh === IPV6_NH_AH) {
      len = (buf[pos + 1] + 2) << 2; // RFC 4302: 4-octet units, minus 2
    } else {
      len = (buf[pos + 1] + 1) << 3; // 8-octet units, not counting the first 8
    }
    if (pos + len > end) return Drop.bad_ipv6_extension_header;
    nh = buf[pos];
    pos += len;
    if (wFragHeader !== 0 && (((buf[wFragHeader + 2] << 8) | buf[wFragHeader + 3]) & 0xfff8) !== 0) break;
  }
  wNext = nh;
  wPos = pos;
  return Drop.ok;
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
    if (hdrLen !== IPV4_HEADER_LEN && !ipv4OptionsWellFormed(buf, off + IPV4_HEADER_LEN, off + hdrLen)) return Drop.bad_ipv4_options;
    const fragWord = (buf[off + 6] << 8) | buf[off + 7];
    if ((fragWord & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK)) !== 0) {
      p.fragOffset = (fragWord & IPV4_FRAG_OFFSET_MASK) << 3;
      p.fragMore = (fragWord & IPV4_FLAG_MF) !== 0 ? 1 : 0;
      p.fragId = (buf[off + 4] << 8) | buf[off + 5];
      p.fragment = p.fragOffset === 0 ? FRAG_FIRST : FRAG_LATER;
    }
    p.l3HeaderLen = hdrLen;
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
    const end = off + IPV6_HEADER_LEN + payloadLen;
    const walked = walkIpv6Extensions(buf, off + IPV6_HEADER_LEN, end, p.protocol);
    if (walked !== Drop.ok) return walked;
    p.protocol = wNext;
    if (wFragHeader !== 0) {
      const fragWord = (buf[wFragHeader + 2] << 8) | buf[wFragHeader + 3];
      p.fragHeaderOffset = wFragHeader;
      p.fragOffset = fragWord & 0xfff8;
      p.fragMore = fragWord & 1;
      p.fragId = ((buf[wFragHeader + 4] << 24) | (buf[wFragHeader + 5] << 16) | (buf[wFragHeader + 6] << 8) | buf[wFragHeader + 7]) >>> 0;
      // An atomic fragment (offset 0, no more: RFC 6946) is a whole packet.
      if (p.fragOffset !== 0) p.fragment = FRAG_LATER;
      else if (p.fragMore !== 0) p.fragment = FRAG_FIRST;
    }
    p.l3HeaderLen = wPos - off;
    l4Len = end - wPos;
    off = wPos;
  } else {
    return Drop.unsupported_ethertype;
  }

  if (p.fragment === FRAG_LATER) {
    // No transport header here: the datagram's first fragment carries it.
    p.payloadOffset = off;
    p.payloadLen = l4Len;
    return Drop.ok;
  }
  const first = p.fragment === FRAG_FIRST;
  const proto = p.protocol;
  if (proto === IPPROTO_TCP) {
    if (l4Len < TCP_HEADER_LEN) return first ? Drop.fragment_too_short : Drop.truncated_tcp;
    p.l4Offset = off;
    p.srcPort = (buf[off] << 8) | buf[off + 1];
    p.dstPort = (buf[off + 2] << 8) | buf[off + 3];
    p.tcpFlags = buf[off + 13];
    const tcpHdrLen = (buf[off + 12] >>> 4) << 2;
    if (tcpHdrLen < TCP_HEADER_LEN) return Drop.bad_tcp_data_offset;
    if (tcpHdrLen > l4Len) return first ? Drop.fragment_too_short : Drop.bad_tcp_data_offset;
    p.tcpOptionsOffset = off + TCP_HEADER_LEN;
    p.tcpOptionsLen = tcpHdrLen - TCP_HEADER_LEN;
    p.payloadOffset = off + tcpHdrLen;
    p.payloadLen = l4Len - tcpHdrLen;
    return Drop.ok;
  }
  if (proto === IPPROTO_UDP) {
    if (l4Len < UDP_HEADER_LEN) return first ? Drop.fragment_too_short : Drop.truncated_udp;
    p.l4Offset = off;
    p.srcPort = (buf[off] << 8) | buf[off + 1];
    p.dstPort = (buf[off + 2] << 8) | buf[off + 3];
    const udpLen = (buf[off + 4] << 8) | buf[off + 5];
    // A first fragment holds only part of the datagram its UDP length describes.
    if (udpLen < UDP_HEADER_LEN || (!first && udpLen > l4Len)) return Drop.bad_udp_length;
    p.payloadOffset = off + UDP_HEADER_LEN;
    p.payloadLen = (first ? l4Len : udpLen) - UDP_HEADER_LEN;
    return Drop.ok;
  }
  if ((proto === IPPROTO_ICMP && p.ipVersion === 4) || (proto === IPPROTO_ICMPV6 && p.ipVersion === 6)) {
    return parseIcmp(buf, off, l4Len, p, first);
  }
  return Drop.unsupported_protocol;
}

/** Whether an ICMP type is an error that quotes a packet Sluice can route by its 5-tuple. */
function isRoutedIcmpError(version: number, type: number): boolean {
  return version === 4
    ? type === ICMP4_DEST_UNREACH || type === ICMP4_TIME_EXCEEDED
    : type === ICMP6_DEST_UNREACH || type === ICMP6_PACKET_TOO_BIG || type === ICMP6_TIME_EXCEEDED;
}

function parseIcmp(buf: Uint8Array, off: number, l4Len: number, p: ParsedPacket, first: boolean): number {
  if (l4Len < ICMP_HEADER_LEN) return first ? Drop.fragment_too_short : Drop.truncated_icmp;
  p.l4Offset = off;
  p.icmpType = buf[off];
  p.icmpCode = buf[off + 1];
  p.payloadOffset = off + ICMP_HEADER_LEN;
  p.payloadLen = l4Len - ICMP_HEADER_LEN;
  const t = p.icmpType;
  const v = p.ipVersion;
  if (v === 4 ? t === ICMP4_ECHO_REQUEST || t === ICMP4_ECHO_REPLY : t === ICMP6_ECHO_REQUEST || t === ICMP6_ECHO_REPLY) {
    p.icmpId = (buf[off + 4] << 8) | buf[off + 5];
    return Drop.ok;
  }
  if (first || !isRoutedIcmpError(v, t)) return Drop.ok;
  return parseQuoted(buf, off + ICMP_HEADER_LEN, off + l4Len, p);
}

/**
 * Reads the packet an ICMP error quotes: its IP header (same family as the message), and the
 * first 8 bytes of its transport header, which hold the ports of TCP and UDP. The quote is
 * usually cut short of the packet's own length fields, so those are not checked against it.
 * A quote that does not hold its whole IP header and 8 bytes after it, or that quotes a
 * non-first fragment (no ports), cannot be routed: bad_icmp_quote.
 */
function parseQuoted(buf: Uint8Array, q: number, end: number, p: ParsedPacket): number {
  const version = p.ipVersion;
  if (version === 4) {
    if (q + IPV4_HEADER_LEN > end || buf[q] >>> 4 !== 4) return Drop.bad_icmp_quote;
    const hdrLen = (buf[q] & 0x0f) << 2;
    if (hdrLen < IPV4_HEADER_LEN || q + hdrLen + 8 > end) return Drop.bad_icmp_quote;
    if ((((buf[q + 6] << 8) | buf[q + 7]) & IPV4_FRAG_OFFSET_MASK) !== 0) return Drop.bad_icmp_quote;
    p.innerProtocol = buf[q + 9];
    p.innerSrcAddrOffset = q + 12;
    p.innerDstAddrOffset = q + 16;
    q += hdrLen;
  } else {
    if (q + IPV6_HEADER_LEN > end || buf[q] >>> 4 !== 6) return Drop.bad_icmp_quote;
    // The quote's payload length describes the whole original packet, not what was quoted.
    const walked = walkIpv6Extensions(buf, q + IPV6_HEADER_LEN, end, buf[q + 6]);
    if (walked !== Drop.ok) return Drop.bad_icmp_quote;
    if (wFragHeader !== 0 && (((buf[wFragHeader + 2] << 8) | buf[wFragHeader + 3]) & 0xfff8) !== 0) return Drop.bad_icmp_quote;
    if (wPos + 8 > end) return Drop.bad_icmp_quote;
    p.innerProtocol = wNext;
    p.innerSrcAddrOffset = q + 8;
    p.innerDstAddrOffset = q + 24;
    q = wPos;
  }
  p.innerL3Offset = version === 4 ? p.innerSrcAddrOffset - 12 : p.innerSrcAddrOffset - 8;
  if (p.innerProtocol === IPPROTO_TCP || p.innerProtocol === IPPROTO_UDP) {
    p.innerSrcPort = (buf[q] << 8) | buf[q + 1];
    p.innerDstPort = (buf[q + 2] << 8) | buf[q + 3];
  }
  return Drop.ok;
}
