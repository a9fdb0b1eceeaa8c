/**
 * Outer headers of an encapsulated packet cut into fragments (hot path: no allocation, no throw).
 * An IPv4 packet without DF may be fragmented on its way (RFC 791), so when it plus the outer
 * header does not fit the egress MTU, the encapsulator fragments the OUTER packet (RFC 2003
 * section 5.1, RFC 2473 section 7) and the backend's kernel reassembles it before it
 * decapsulates. Each fragment carries `payloadLen` bytes of the inner packet, starting at
 * `offsetBytes` (a multiple of 8 for every fragment but the last).
 *
 *   IPv4 outer: 20-byte header, DF clear, MF on all but the last fragment, offset in 8-byte units.
 *   IPv6 outer: 40-byte header + an 8-byte fragment header (next header 44; RFC 8200 4.5).
 *
 * Every writer returns the header bytes written (20 or 48), or 0 when they do not fit in `out`.
 */
import { IPPROTO_IPIP, IPPROTO_IPV6 } from './parsed-packet.js';
import { OUTER_IPV4_LEN, OUTER_IPV6_LEN, writeOuterIpv4, writeOuterIpv6 } from './encap.js';
import { writeIpv4HeaderChecksum } from './checksum.js';

export const IPV6_FRAGMENT_HEADER_LEN = 8;
const IPPROTO_FRAGMENT = 44;
const IPV4_MF = 0x2000;

/** Outer header bytes of one fragment toward a backend of addrLen bytes (4 -> 20, 16 -> 48). */
export function encapFragmentHeaderLen(backendAddrLen: number): number {
  return backendAddrLen === 4 ? OUTER_IPV4_LEN : OUTER_IPV6_LEN + IPV6_FRAGMENT_HEADER_LEN;
}

/**
 * Inner bytes per fragment (all but the last) so a fragment fits `mtu`: a multiple of 8, or 0
 * when not even 8 bytes fit.
 */
export function encapFragmentPayload(mtu: number, backendAddrLen: number): number {
  const room = mtu - encapFragmentHeaderLen(backendAddrLen);
  return room < 8 ? 0 : room & ~7;
}

/**
 * One outer fragment header at `off`: the outer family follows the backend address length, the
 * protocol the inner IP version. IPv4 uses the low 16 bits of `id`, IPv6 all 32.
 */
export function writeEncapFragment(
  out: Uint8Array,
  off: number,
  src: Uint8Array,
  dst: Uint8Array,
  innerVersion: number,
  payloadLen: number,
  ttl: number,
  id: number,
  flowLabel: number,
  offsetBytes: number,
  more: boolean,
): number {
  if (innerVersion !== 4 && innerVersion !== 6) return 0;
  if ((offsetBytes & 7) !== 0 || offsetBytes < 0 || offsetBytes > 0xfff8) return 0;
  const protocol = innerVersion === 6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
  const units = offsetBytes >>> 3;
  if (dst.length === 4 && src.length === 4) {
    if (writeOuterIpv4(out, off, src, dst, payloadLen, ttl, id & 0xffff, protocol) === 0) return 0;
    const word = (more ? IPV4_MF : 0) | units;
    out[off + 6] = word >>> 8;
    out[off + 7] = word & 0xff;
    out[off + 10] = 0;
    out[off + 11] = 0;
    writeIpv4HeaderChecksum(out, off);
    return OUTER_IPV4_LEN;
  }
  if (dst.length === 16 && src.length === 16) {
    if (off + OUTER_IPV6_LEN + IPV6_FRAGMENT_HEADER_LEN > out.length) return 0;
    if (writeOuterIpv6(out, off, src, dst, IPV6_FRAGMENT_HEADER_LEN + payloadLen, ttl, IPPROTO_FRAGMENT, flowLabel) === 0) return 0;
    const f = off + OUTER_IPV6_LEN;
    out[f] = protocol;
    out[f + 1] = 0;
    out[f + 2] = (units >>> 5) & 0xff;
    out[f + 3] = ((units << 3) & 0xf8) | (more ? 1 : 0);
    out[f + 4] = (id >>> 24) & 0xff;
    out[f + 5] = (id >>> 16) & 0xff;
    out[f + 6] = (id >>> 8) & 0xff;
    out[f + 7] = id & 0xff;
    return OUTER_IPV6_LEN + IPV6_FRAGMENT_HEADER_LEN;
  }
  return 0;
}
