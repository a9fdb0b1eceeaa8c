/**
 * Frame builder for tests, fixtures and lab tools (allocates freely; never on the hot path).
 * Lengths and checksums are right by default; every override field exists so a test can make
 * exactly one thing wrong and nothing else.
 */
import { parseMac } from './mac.js';
import { ipv4HeaderChecksum, writeIpv4HeaderChecksum, writeTransportChecksum } from './checksum.js';
import { IPPROTO_TCP, IPPROTO_UDP } from './parsed-packet.js';
import { ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_QINQ, ETHERTYPE_VLAN } from './parse.js';

export interface EthSpec {
  /** Default 02:00:00:00:00:01. */
  src?: string;
  /** Default 02:00:00:00:00:02. */
  dst?: string;
  /** Override the (innermost) ethertype; default from ipv4/ipv6. */
  etherType?: number;
}

export interface VlanSpec {
  /** 12-bit VLAN id of the 802.1Q tag. */
  id: number;
  /** Priority code point, default 0. */
  pcp?: number;
  /** Override the tag's TPID (default 0x8100). */
  tpid?: number;
  /** If set, an 802.1ad S-tag (TPID 0x88a8) with this id goes before the 802.1Q tag (QinQ). */
  outerId?: number;
}

export interface Ipv4Spec {
  src: string;
  dst: string;
  /** Default 64. */
  ttl?: number;
  /** Identification, default 0. */
  id?: number;
  /** The 3 flag bits: 0b010 DF, 0b001 MF. Default 0b010 (DF). */
  flags?: number;
  /** Fragment offset in 8-byte units, default 0. */
  fragOffset?: number;
  /** Options bytes, zero-padded to a multiple of 4. */
  options?: Uint8Array;
  tos?: number;
  // Overrides.
  version?: number;
  /** IHL in 32-bit words; default from the options length. */
  ihl?: number;
  totalLength?: number;
  protocol?: number;
  checksum?: number;
}

export interface Ipv6ExtensionHeader {
  /** Next-header value that names this header (0 hop-by-hop, 43 routing, 44 fragment, 60 dest opts, ...). */
  type: number;
  /**
   * Bytes after the 2-byte (next header, length) prefix, zero-padded so the header is a multiple
   * of 8 bytes; the length byte is set in 8-octet units not counting the first 8 (for the
   * fragment header (44) it is reserved and 0: give 6 bytes of offset/flags/id).
   */
  data?: Uint8Array;
}

export interface Ipv6Spec {
  src: string;
  dst: string;
  /** Default 64. */
  hopLimit?: number;
  trafficClass?: number;
  flowLabel?: number;
  extensionHeaders?: Ipv6ExtensionHeader[];
  // Overrides.
  version?: number;
  payloadLength?: number;
  /** Next header of the fixed header (default: first extension header, else the L4 protocol). */
  nextHeader?: number;
}

export interface TcpSpec {
  sport: number;
  dport: number;
  /** Default 0. */
  seq?: number;
  ack?: number;
  /** Flags byte (TCP_SYN | TCP_ACK ...). Default TCP_ACK. */
  flags?: number;
  /** Default 65535. */
  window?: number;
  urgent?: number;
  /** Options bytes, zero-padded (EOL) to a multiple of 4. */
  options?: Uint8Array;
  // Overrides.
  /** Data offset in 32-bit words; default from the options length. */
  dataOffset?: number;
  checksum?: number;
}

export interface UdpSpec {
  sport: number;
  dport: number;
  // Overrides.
  length?: number;
  checksum?: number;
}

/** Any other L4 protocol (ICMP, ...) as raw bytes; no checksum is computed. */
export interface RawL4Spec {
  protocol: number;
  bytes: Uint8Array;
}

export interface FrameSpec {
  eth?: EthSpec;
  vlan?: VlanSpec;
  ipv4?: Ipv4Spec;
  ipv6?: Ipv6Spec;
  tcp?: TcpSpec;
  udp?: UdpSpec;
  raw?: RawL4Spec;
  /** L4 payload; a string is UTF-8. */
  payload?: Uint8Array | string;
  /** Zero bytes appended after the IP packet (Ethernet padding / trailer). */
  trailer?: number;
}

export interface BuiltFrame {
  frame: Buffer;
  l3Offset: number;
  /** Offset of the TCP/UDP/raw L4 header (after any IPv6 extension headers). */
  l4Offset: number;
  payloadOffset: number;
}

import { ipv4ToBytes, ipv6ToBytes } from './address.js';
export { ipv4ToBytes, ipv6ToBytes, ipToBytes } from './address.js';

export const DEFAULT_SRC_MAC = '02:00:00:00:00:01';
export const DEFAULT_DST_MAC = '02:00:00:00:00:02';

function pad(bytes: Uint8Array | undefined, multiple: number): Buffer {
  if (bytes === undefined || bytes.length === 0) return Buffer.alloc(0);
  const len = Math.ceil(bytes.length / multiple) * multiple;
  const out = Buffer.alloc(len);
  out.set(bytes, 0);
  return out;
}

function buildL4(spec: FrameSpec, payload: Buffer): { protocol: number; header: Buffer } {
  const count = (spec.tcp ? 1 : 0) + (spec.udp ? 1 : 0) + (spec.raw ? 1 : 0);
  if (count !== 1) throw new Error('buildFrame: give exactly one of tcp, udp, raw');
  if (spec.tcp) {
    const t = spec.tcp;
    const opts = pad(t.options, 4);
    const h = Buffer.alloc(20 + opts.length);
    h.writeUInt16BE(t.sport, 0);
    h.writeUInt16BE(t.dport, 2);
    h.writeUInt32BE((t.seq ?? 0) >>> 0, 4);
    h.writeUInt32BE((t.ack ?? 0) >>> 0, 8);
    h[12] = ((t.dataOffset ?? h.length / 4) & 0x0f) << 4;
    h[13] = (t.flags ?? 0x10) & 0xff;
    h.writeUInt16BE(t.window ?? 65535, 14);
    h.writeUInt16BE(t.urgent ?? 0, 18);
    opts.copy(h, 20);
    return { protocol: IPPROTO_TCP, header: h };
  }
  if (spec.udp) {
    const u = spec.udp;
    const h = Buffer.alloc(8);
    h.writeUInt16BE(u.sport, 0);
    h.writeUInt16BE(u.dport, 2);
    h.writeUInt16BE((u.length ?? 8 + payload.length) & 0xffff, 4);
    return { protocol: IPPROTO_UDP, header: h };
  }
  const r = spec.raw as RawL4Spec;
  return { protocol: r.protocol, header: Buffer.from(r.bytes) };
}

function buildExtensionHeaders(exts: Ipv6ExtensionHeader[], finalNh: number): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0; i < exts.length; i++) {
    const e = exts[i];
    const next = i + 1 < exts.length ? exts[i + 1].type : finalNh;
    const body = Buffer.from(e.data ?? new Uint8Array(0));
    const total = Math.max(8, Math.ceil((body.length + 2) / 8) * 8);
    const h = Buffer.alloc(total);
    h[0] = next;
    h[1] = e.type === 44 ? 0 : total / 8 - 1;
    body.copy(h, 2);
    parts.push(h);
  }
  return Buffer.concat(parts);
}

/** Builds a frame and reports where its layers start. */
export function buildFrameDetailed(spec: FrameSpec): BuiltFrame {
  if ((spec.ipv4 ? 1 : 0) + (spec.ipv6 ? 1 : 0) !== 1) throw new Error('buildFrame: give exactly one of ipv4, ipv6');
  const payload =
    typeof spec.payload === 'string' ? Buffer.from(spec.payload, 'utf8') : Buffer.from(spec.payload ?? new Uint8Array(0));
  const { protocol, header: l4Header } = buildL4(spec, payload);
  const l4Len = l4Header.length + payload.length;

  // Ethernet (+ tags).
  const eth = spec.eth ?? {};
  const l2: number[] = [...parseMac(eth.dst ?? DEFAULT_DST_MAC), ...parseMac(eth.src ?? DEFAULT_SRC_MAC)];
  const push16 = (v: number): void => {
    l2.push((v >>> 8) & 0xff, v & 0xff);
  };
  if (spec.vlan) {
    const v = spec.vlan;
    if (v.outerId !== undefined) {
      push16(ETHERTYPE_QINQ);
      push16(v.outerId & 0x0fff);
    }
    push16(v.tpid ?? ETHERTYPE_VLAN);
    push16((((v.pcp ?? 0) & 7) << 13) | (v.id & 0x0fff));
  }
  push16(eth.etherType ?? (spec.ipv4 ? ETHERTYPE_IPV4 : ETHERTYPE_IPV6));
  const l2Buf = Buffer.from(l2);

  let l3: Buffer;
  let l4StartInL3: number;
  let ipv4HdrLen = 0;
  let srcOff: number;
  let dstOff: number;
  let addrLen: number;
  if (spec.ipv4) {
    const ip = spec.ipv4;
    const opts = pad(ip.options, 4);
    const hdrLen = 20 + opts.length;
    l3 = Buffer.alloc(hdrLen + l4Len);
    l3[0] = ((ip.version ?? 4) << 4) | ((ip.ihl ?? hdrLen / 4) & 0x0f);
    l3[1] = ip.tos ?? 0;
    l3.writeUInt16BE((ip.totalLength ?? hdrLen + l4Len) & 0xffff, 2);
    l3.writeUInt16BE((ip.id ?? 0) & 0xffff, 4);
    l3.writeUInt16BE((((ip.flags ?? 0b010) & 7) << 13) | ((ip.fragOffset ?? 0) & 0x1fff), 6);
    l3[8] = ip.ttl ?? 64;
    l3[9] = ip.protocol ?? protocol;
    l3.set(ipv4ToBytes(ip.src), 12);
    l3.set(ipv4ToBytes(ip.dst), 16);
    opts.copy(l3, 20);
    l4StartInL3 = hdrLen;
    ipv4HdrLen = hdrLen;
    srcOff = 12;
    dstOff = 16;
    addrLen = 4;
  } else {
    const ip = spec.ipv6 as Ipv6Spec;
    const exts = ip.extensionHeaders ?? [];
    const extBuf = buildExtensionHeaders(exts, protocol);
    const hdrLen = 40 + extBuf.length;
    l3 = Buffer.alloc(hdrLen + l4Len);
    const tc = ip.trafficClass ?? 0;
    const fl = ip.flowLabel ?? 0;
    l3.writeUInt32BE((((ip.version ?? 6) & 0x0f) * 0x10000000 + ((tc & 0xff) << 20) + (fl & 0xfffff)) >>> 0, 0);
    l3.writeUInt16BE((ip.payloadLength ?? extBuf.length + l4Len) & 0xffff, 4);
    l3[6] = ip.nextHeader ?? (exts.length > 0 ? exts[0].type : protocol);
    l3[7] = ip.hopLimit ?? 64;
    l3.set(ipv6ToBytes(ip.src), 8);
    l3.set(ipv6ToBytes(ip.dst), 24);
    extBuf.copy(l3, 40);
    l4StartInL3 = hdrLen;
    srcOff = 8;
    dstOff = 24;
    addrLen = 16;
  }
  l4Header.copy(l3, l4StartInL3);
  payload.copy(l3, l4StartInL3 + l4Header.length);

  // Checksums last, over the final bytes; overrides replace them.
  if (spec.tcp || spec.udp) {
    writeTransportChecksum(l3, srcOff, dstOff, addrLen, protocol, l4StartInL3, l4Len);
    const override = spec.tcp ? spec.tcp.checksum : (spec.udp as UdpSpec).checksum;
    if (override !== undefined) l3.writeUInt16BE(override & 0xffff, l4StartInL3 + (spec.tcp ? 16 : 6));
  }
  if (spec.ipv4) {
    // Over the header as built, whatever its IHL field claims.
    l3.writeUInt16BE(ipv4HeaderChecksum(l3, 0, ipv4HdrLen), 10);
    if (spec.ipv4.checksum !== undefined) l3.writeUInt16BE(spec.ipv4.checksum & 0xffff, 10);
  }

  const frame = Buffer.concat([l2Buf, l3, Buffer.alloc(spec.trailer ?? 0)]);
  return {
    frame,
    l3Offset: l2Buf.length,
    l4Offset: l2Buf.length + l4StartInL3,
    payloadOffset: l2Buf.length + l4StartInL3 + l4Header.length,
  };
}

/** Builds a frame: Ethernet [+ VLAN] + IPv4/IPv6 + TCP/UDP/raw + payload [+ trailer]. */
export function buildFrame(spec: FrameSpec): Buffer {
  return buildFrameDetailed(spec).frame;
}
