/**
 * The result of parsing one frame, written in place by parseFrame() into one long-lived object
 * (never allocated per packet). Addresses are not copied: they stay in the frame and are
 * referenced by offset, 4 bytes for IPv4 and 16 for IPv6.
 */
export class ParsedPacket {
  /** Captured length of the frame. */
  frameLen = 0;
  /** 0 if untagged, else the 802.1Q VLAN id (12 bits). */
  vlanId = 0;
  /** Offset of the IPv4/IPv6 header. */
  l3Offset = 0;
  /** 4 or 6. */
  ipVersion = 0;
  /** Length of the IP packet (header + payload) per its length fields; may be < frameLen - l3Offset (Ethernet padding). */
  l3Length = 0;
  /** Offset of the source address (dst follows at srcAddrOffset + addrLen). */
  srcAddrOffset = 0;
  dstAddrOffset = 0;
  /** 4 or 16. */
  addrLen = 0;
  /** IP protocol / final next header: 6 TCP, 17 UDP. */
  protocol = 0;
  /** IPv4 TTL or IPv6 hop limit. */
  ttl = 0;
  /** Offset of the TCP/UDP header. */
  l4Offset = 0;
  srcPort = 0;
  dstPort = 0;
  /** TCP flags byte (CWR ECE URG ACK PSH RST SYN FIN); 0 for UDP. */
  tcpFlags = 0;
  /** Offset and length of the TCP options area (0 length if none or UDP). */
  tcpOptionsOffset = 0;
  tcpOptionsLen = 0;
  /** Offset of the L4 payload and its length. */
  payloadOffset = 0;
  payloadLen = 0;
  /** Bytes from l3Offset to the transport header: the IPv4 header with options, or IPv6 plus its extension headers. */
  l3HeaderLen = 0;

  /** FRAG_NONE, FRAG_FIRST (offset 0, more to come: ports are present) or FRAG_LATER (no transport header). */
  fragment = 0;
  /** Fragment offset in bytes, the more-fragments flag (0/1) and the identification (16 bits in IPv4, 32 in IPv6). */
  fragOffset = 0;
  fragMore = 0;
  fragId = 0;
  /** Offset of the IPv6 fragment header (0 for IPv4 or no fragment). */
  fragHeaderOffset = 0;

  /** ICMP / ICMPv6 type and code (protocol 1 or 58 only). */
  icmpType = 0;
  icmpCode = 0;
  /** Echo request/reply identifier. */
  icmpId = 0;
  /**
   * For an ICMP error: the packet it quotes (one that left a VIP: source = VIP, destination =
   * the client). innerL3Offset is 0 when the message is not an error Sluice routes.
   */
  innerL3Offset = 0;
  innerProtocol = 0;
  innerSrcAddrOffset = 0;
  innerDstAddrOffset = 0;
  innerSrcPort = 0;
  innerDstPort = 0;
}

export const FRAG_NONE = 0;
export const FRAG_FIRST = 1;
export const FRAG_LATER = 2;

export const IPPROTO_ICMP = 1;
export const IPPROTO_ICMPV6 = 58;

// ICMP types Sluice reads (RFC 792, RFC 4443).
export const ICMP4_ECHO_REPLY = 0;
export const ICMP4_DEST_UNREACH = 3;
export const ICMP4_ECHO_REQUEST = 8;
export const ICMP4_TIME_EXCEEDED = 11;
/** Destination unreachable, code 4: fragmentation needed and DF set (path MTU discovery). */
export const ICMP4_CODE_FRAG_NEEDED = 4;
export const ICMP6_DEST_UNREACH = 1;
export const ICMP6_PACKET_TOO_BIG = 2;
export const ICMP6_TIME_EXCEEDED = 3;
export const ICMP6_ECHO_REQUEST = 128;
export const ICMP6_ECHO_REPLY = 129;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_IPIP = 4;
export const IPPROTO_IPV6 = 41;
