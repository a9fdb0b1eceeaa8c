/**
 * The Internet checksum (RFC 1071): full computation, IPv4 header check, RFC 1624 incremental
 * update, and TCP/UDP checksums with the IPv4/IPv6 pseudo-header.
 *
 * Sums are carried unfolded in a JS number (exact up to 2^53, far beyond any IP packet) and
 * folded once at the end. Nothing here allocates or throws.
 */

/** Offset of the checksum field inside a TCP and a UDP header. */
export const TCP_CHECKSUM_OFFSET = 16;
export const UDP_CHECKSUM_OFFSET = 6;

/**
 * Adds the bytes buf[off .. off+len) as big-endian 16-bit words to `initial` (an odd last byte
 * is padded with a zero byte) and returns the unfolded sum. Chain calls to sum several ranges;
 * every range except the last must have an even length.
 */
export function sumWords(buf: Uint8Array, off: number, len: number, initial: number): number {
  let sum = initial;
  const end = off + len;
  const evenEnd = end - (len & 1);
  let i = off;
  for (; i < evenEnd; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (i < end) sum += buf[i] << 8;
  return sum;
}

/** Folds an unfolded sum into a 16-bit one's-complement sum (end-around carry). */
export function foldSum(sum: number): number {
  let s = sum;
  // Beyond 32 bits the integer ops would truncate; only sums over ~128 KiB get here.
  while (s > 0xffffffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** The Internet checksum of buf[off .. off+len): the one's complement of the folded sum. */
export function internetChecksum(buf: Uint8Array, off: number, len: number): number {
  return ~foldSum(sumWords(buf, off, len, 0)) & 0xffff;
}

/**
 * IPv4 header checksum of the hdrLen-byte header at `off`, computed as if its checksum field
 * (bytes 10-11) were zero; the field itself is neither read nor written.
 */
export function ipv4HeaderChecksum(buf: Uint8Array, off: number, hdrLen: number): number {
  let sum = sumWords(buf, off, 10, 0);
  sum = sumWords(buf, off + 12, hdrLen - 12, sum);
  return ~foldSum(sum) & 0xffff;
}

/** Computes and stores the checksum of the IPv4 header at `off` (length from its IHL). */
export function writeIpv4HeaderChecksum(buf: Uint8Array, off: number): void {
  const csum = ipv4HeaderChecksum(buf, off, (buf[off] & 0x0f) << 2);
  buf[off + 10] = csum >>> 8;
  buf[off + 11] = csum & 0xff;
}

/** True when the hdrLen-byte IPv4 header at `off`, checksum field included, sums to 0xffff. */
export function verifyIpv4HeaderChecksum(buf: Uint8Array, off: number, hdrLen: number): boolean {
  return foldSum(sumWords(buf, off, hdrLen, 0)) === 0xffff;
}

/**
 * RFC 1624 eqn. 3: the new checksum after one 16-bit word covered by `oldChecksum` changes from
 * oldWord to newWord: HC' = ~(~HC + ~m + m'). Equals a full recomputation (never yields the
 * 0xffff form a full computation cannot produce). For UDP over IPv4 the caller keeps a
 * checksum of 0 ("none") as 0, and sends a result of 0 as 0xffff.
 */
export function checksumUpdate16(oldChecksum: number, oldWord: number, newWord: number): number {
  const sum = (~oldChecksum & 0xffff) + (~oldWord & 0xffff) + (newWord & 0xffff);
  return ~foldSum(sum) & 0xffff;
}

/** As checksumUpdate16 for a 32-bit field (an IPv4 address, a TCP sequence number). */
export function checksumUpdate32(oldChecksum: number, oldValue: number, newValue: number): number {
  const sum =
    (~oldChecksum & 0xffff) +
    (~(oldValue >>> 16) & 0xffff) +
    (~oldValue & 0xffff) +
    (newValue >>> 16) +
    (newValue & 0xffff);
  return ~foldSum(sum) & 0xffff;
}

/**
 * Unfolded sum of the TCP/UDP pseudo-header: source and destination address (addrLen 4 or
 * 16 bytes each, read from the frame), the protocol and the L4 length. The IPv4 and IPv6
 * forms have the same one's-complement sum, so one function serves both.
 */
export function pseudoHeaderSum(
  buf: Uint8Array,
  srcAddrOff: number,
  dstAddrOff: number,
  addrLen: number,
  protocol: number,
  l4Len: number,
): number {
  let sum = sumWords(buf, srcAddrOff, addrLen, 0);
  sum = sumWords(buf, dstAddrOff, addrLen, sum);
  return sum + protocol + (l4Len >>> 16) + (l4Len & 0xffff);
}

/**
 * TCP/UDP checksum of the l4Len-byte segment at l4Off, computed as if its checksum field were
 * zero (the field is neither read nor written). Returns the value as computed; a UDP sender
 * transmits a computed 0 as 0xffff (writeTransportChecksum does).
 */
export function transportChecksum(
  buf: Uint8Array,
  srcAddrOff: number,
  dstAddrOff: number,
  addrLen: number,
  protocol: number,
  l4Off: number,
  l4Len: number,
): number {
  const fieldOff = l4Off + (protocol === 17 ? UDP_CHECKSUM_OFFSET : TCP_CHECKSUM_OFFSET);
  let sum = pseudoHeaderSum(buf, srcAddrOff, dstAddrOff, addrLen, protocol, l4Len);
  sum = sumWords(buf, l4Off, fieldOff - l4Off, sum);
  sum = sumWords(buf, fieldOff + 2, l4Len - (fieldOff + 2 - l4Off), sum);
  return ~foldSum(sum) & 0xffff;
}

/** Computes and stores the TCP (protocol 6) or UDP (17) checksum of a segment. */
export function writeTransportChecksum(
  buf: Uint8Array,
  srcAddrOff: number,
  dstAddrOff: number,
  addrLen: number,
  protocol: number,
  l4Off: number,
  l4Len: number,
): void {
  let csum = transportChecksum(buf, srcAddrOff, dstAddrOff, addrLen, protocol, l4Off, l4Len);
  if (protocol === 17 && csum === 0) csum = 0xffff;
  const fieldOff = l4Off + (protocol === 17 ? UDP_CHECKSUM_OFFSET : TCP_CHECKSUM_OFFSET);
  buf[fieldOff] = csum >>> 8;
  buf[fieldOff + 1] = csum & 0xff;
}

/**
 * True when the TCP/UDP segment's stored checksum is correct. A UDP checksum of 0 over IPv4
 * means "not computed" and passes; over IPv6 it is invalid (RFC 8200 section 8.1).
 */
export function verifyTransportChecksum(
  buf: Uint8Array,
  srcAddrOff: number,
  dstAddrOff: number,
  addrLen: number,
  protocol: number,
  l4Off: number,
  l4Len: number,
): boolean {
  if (protocol === 17 && buf[l4Off + 6] === 0 && buf[l4Off + 7] === 0) return addrLen === 4;
  let sum = pseudoHeaderSum(buf, srcAddrOff, dstAddrOff, addrLen, protocol, l4Len);
  sum = sumWords(buf, l4Off, l4Len, sum);
  return foldSum(sum) === 0xffff;
}

/**
 * Completes a partial TCP/UDP checksum in place: what a NIC does for a frame the kernel handed
 * it with CHECKSUM_PARTIAL (checksum offload). The ring engine has this done by its addon, in C
 * (complete_partial in native/sluice_ring.c); this is the reference its golden tests compare with. The frame is buf[off .. off+len); the checksum
 * covers frame bytes [csumStart, len) and goes at csumStart + csumOffset, where the sender's
 * kernel already stored the (uncomplemented) pseudo-header sum. Only call it for a frame the
 * kernel marked as partial (TP_STATUS_CSUMNOTREADY / VIRTIO_NET_HDR_F_NEEDS_CSUM): the field of
 * any other frame is a finished checksum, right or wrong, and must be left alone.
 *
 * Writes 0xffff for a computed 0, as the kernel does (a UDP 0 would read as "no checksum").
 * Returns false and writes nothing when the offsets do not fit the frame.
 */
export function completePartialChecksum(buf: Uint8Array, off: number, len: number, csumStart: number, csumOffset: number): boolean {
  if (csumStart < 0 || csumOffset < 0 || csumStart + csumOffset + 2 > len || off < 0 || off + len > buf.length) return false;
  const start = off + csumStart;
  let csum = ~foldSum(sumWords(buf, start, len - csumStart, 0)) & 0xffff;
  if (csum === 0) csum = 0xffff;
  buf[start + csumOffset] = csum >>> 8;
  buf[start + csumOffset + 1] = csum & 0xff;
  return true;
}
