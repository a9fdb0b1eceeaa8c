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
}

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;
export const IPPROTO_IPIP = 4;
export const IPPROTO_IPV6 = 41;
