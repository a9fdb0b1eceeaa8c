/**
 * Software segmentation of a GSO super-frame, as a NIC's TSO (or the kernel's GSO) would do it.
 *
 * Why: with the kernel's default offloads a local, veth, container or virtio sender hands its
 * TCP stream down as super-frames of up to 64 KiB and leaves cutting them into MTU-sized
 * segments to the device; a veth passes them on uncut, so the balancer's capture interface
 * sees them whole. Sent on as they are, they exceed the egress MTU (the kernel refuses them with
 * EMSGSIZE), and an ipip service could not encapsulate them anyway. The kernel describes each
 * one in the virtio_net_hdr it writes in front of the frame (PACKET_VNET_HDR): gso_type,
 * gso_size (the segment payload size, the sender's MSS) and csum_start (the L4 header).
 *
 * Each segment gets its own IP length (IPv4: identification + k and a new header checksum),
 * TCP sequence number (FIN and PSH only on the last segment, CWR only on the first) or UDP
 * length, and a complete L4 checksum. One segment at a time into the caller's buffer: no
 * allocation; the payload is summed while it is copied (one pass over the bytes).
 */
import { IPPROTO_TCP, IPPROTO_UDP } from './parsed-packet.js';
import { foldSum, pseudoHeaderSum, sumWords, writeIpv4HeaderChecksum } from './checksum.js';

/** virtio_net_hdr gso_type values (include/uapi/linux/virtio_net.h). */
export const VNET_GSO_NONE = 0;
export const VNET_GSO_TCPV4 = 1;
export const VNET_GSO_UDP = 3;
export const VNET_GSO_TCPV6 = 4;
export const VNET_GSO_UDP_L4 = 5;
export const VNET_GSO_ECN = 0x80;

const TCP_FIN_PSH = 0x09;
const TCP_CWR = 0x80;
const EMPTY = new Uint8Array(0);

export class GsoSegmenter {
  #src: Uint8Array = EMPTY;
  #off = 0;
  #end = 0;
  #l3 = 0;
  #l4 = 0;
  #hdrLen = 0;
  #v4 = false;
  #tcp = false;
  #mss = 0;
  #count = 0;
  #next = 0;
  #seq = 0;
  #ipId = 0;
  #flags = 0;

  /** Segments of the frame begun last. */
  get count(): number {
    return this.#count;
  }

  /**
   * Prepares the frame src[off .. off+len) (Ethernet, at most two VLAN tags) for cutting;
   * csumStart is the kernel's vnet csum_start (0 when the frame carries no partial checksum).
   * Returns its number of segments, or 0 when it is not a GSO frame this can cut (unknown or
   * UFO gso_type, gso_size 0, headers that do not match the type or do not fit).
   */
  begin(src: Uint8Array, off: number, len: number, gsoType: number, gsoSize: number, csumStart: number): number {
    this.#count = 0;
    this.#next = 0;
    if (off < 0 || len < 14 || off + len > src.length || gsoSize < 1) return 0;
    const type = gsoType & ~VNET_GSO_ECN;
    const tcp = type === VNET_GSO_TCPV4 || type === VNET_GSO_TCPV6;
    if (!tcp && type !== VNET_GSO_UDP_L4) return 0;
    let l3 = 14;
    let et = (src[off + 12] << 8) | src[off + 13];
    for (let tags = 0; (et === 0x8100 || et === 0x88a8) && tags < 2 && l3 + 4 <= len; tags++) {
      et = (src[off + l3 + 2] << 8) | src[off + l3 + 3];
      l3 += 4;
    }
    const v4 = et === 0x0800;
    if (!v4 && et !== 0x86dd) return 0;
    if ((type === VNET_GSO_TCPV4 && !v4) || (type === VNET_GSO_TCPV6 && v4)) return 0;
    const proto = tcp ? IPPROTO_TCP : IPPROTO_UDP;
    // csum_start is the L4 header of a partial-checksum frame; a GRO-merged frame (checksum
    // already verified, not partial) has none: then it follows the IPv4 header or the fixed IPv6 one.
    const l4 = csumStart !== 0 ? csumStart : v4 ? l3 + ((src[off + l3] & 0x0f) << 2) : l3 + 40;
    if (l4 < l3 + (v4 ? 20 : 40) || l4 + (tcp ? 20 : 8) > len) return 0;
    let end = len;
    if (v4) {
      if (src[off + l3] >>> 4 !== 4 || src[off + l3 + 9] !== proto) return 0;
      const total = (src[off + l3 + 2] << 8) | src[off + l3 + 3];
      if (total < l4 - l3 || l3 + total > len) return 0;
      end = l3 + total;
    } else {
      if (src[off + l3] >>> 4 !== 6) return 0;
      if (l4 === l3 + 40 && src[off + l3 + 6] !== proto) return 0;
      const payload = (src[off + l3 + 4] << 8) | src[off + l3 + 5];
      if (payload !== 0) {
        if (l3 + 40 + payload > len || l3 + 40 + payload < l4) return 0;
        end = l3 + 40 + payload;
      }
    }
    const hdrLen = tcp ? l4 + ((src[off + l4 + 12] >>> 4) << 2) : l4 + 8;
    if (tcp && src[off + l4 + 12] >>> 4 < 5) return 0;
    if (hdrLen >= end) return 0;
    this.#src = src;
    this.#off = off;
    this.#end = end;
    this.#l3 = l3;
    this.#l4 = l4;
    this.#hdrLen = hdrLen;
    this.#v4 = v4;
    this.#tcp = tcp;
    this.#mss = gsoSize;
    this.#seq = tcp ? ((src[off + l4 + 4] << 24) | (src[off + l4 + 5] << 16) | (src[off + l4 + 6] << 8) | src[off + l4 + 7]) >>> 0 : 0;
    this.#ipId = v4 ? (src[off + l3 + 4] << 8) | src[off + l3 + 5] : 0;
    this.#flags = tcp ? src[off + l4 + 13] : 0;
    this.#count = Math.ceil((end - hdrLen) / gsoSize);
    return this.#count;
  }

  /**
   * Writes the next segment at out[0 ..) and returns its length; 0 when every segment has been
   * written or the segment does not fit in `out`.
   */
  next(out: Uint8Array): number {
    const k = this.#next;
    if (k >= this.#count) return 0;
    const src = this.#src;
    const off = this.#off;
    const hdrLen = this.#hdrLen;
    const start = hdrLen + k * this.#mss;
    const chunk = Math.min(this.#mss, this.#end - start);
    const segLen = hdrLen + chunk;
    if (segLen > out.length) return 0;
    this.#next = k + 1;
    for (let i = 0; i < hdrLen; i++) out[i] = src[off + i];
    // Copy the payload and sum it as 16-bit words in the same pass (hdrLen - l4 is even).
    let sum = 0;
    let i = 0;
    const s = off + start;
    for (; i + 1 < chunk; i += 2) {
      const hi = src[s + i];
      const lo = src[s + i + 1];
      out[hdrLen + i] = hi;
      out[hdrLen + i + 1] = lo;
      sum += (hi << 8) | lo;
    }
    if (i < chunk) {
      const hi = src[s + i];
      out[hdrLen + i] = hi;
      sum += hi << 8;
    }
    const l3 = this.#l3;
    const l4 = this.#l4;
    if (this.#v4) {
      const total = segLen - l3;
      out[l3 + 2] = total >>> 8;
      out[l3 + 3] = total & 0xff;
      const id = (this.#ipId + k) & 0xffff;
      out[l3 + 4] = id >>> 8;
      out[l3 + 5] = id & 0xff;
      writeIpv4HeaderChecksum(out, l3);
    } else {
      const payload = segLen - l3 - 40;
      out[l3 + 4] = payload >>> 8;
      out[l3 + 5] = payload & 0xff;
    }
    const l4Len = segLen - l4;
    let field: number;
    if (this.#tcp) {
      const seq = (this.#seq + k * this.#mss) >>> 0;
      out[l4 + 4] = seq >>> 24;
      out[l4 + 5] = (seq >>> 16) & 0xff;
      out[l4 + 6] = (seq >>> 8) & 0xff;
      out[l4 + 7] = seq & 0xff;
      let flags = this.#flags;
      if (k < this.#count - 1) flags &= ~TCP_FIN_PSH;
      if (k > 0) flags &= ~TCP_CWR;
      out[l4 + 13] = flags;
      field = l4 + 16;
    } else {
      out[l4 + 4] = l4Len >>> 8;
      out[l4 + 5] = l4Len & 0xff;
      field = l4 + 6;
    }
    out[field] = 0;
    out[field + 1] = 0;
    const addrLen = this.#v4 ? 4 : 16;
    const srcAddr = this.#v4 ? l3 + 12 : l3 + 8;
    sum += pseudoHeaderSum(out, srcAddr, srcAddr + addrLen, addrLen, this.#tcp ? IPPROTO_TCP : IPPROTO_UDP, l4Len);
    sum = sumWords(out, l4, hdrLen - l4, sum);
    let csum = ~foldSum(sum) & 0xffff;
    if (!this.#tcp && csum === 0) csum = 0xffff;
    out[field] = csum >>> 8;
    out[field + 1] = csum & 0xff;
    return segLen;
  }
}
