/**
 * Ethernet MAC addresses: text <-> 6 bytes at config time, compare and write in the frame on
 * the hot path (L2 DSR rewrites the destination and source MAC).
 */

export const MAC_LEN = 6;

const MAC_TEXT = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/i;

/** Parses "aa:bb:cc:dd:ee:ff" (either case) into 6 bytes. Throws on anything else. Config time only. */
export function parseMac(text: string): Uint8Array {
  if (typeof text !== 'string' || !MAC_TEXT.test(text)) {
    throw new Error(
      `invalid MAC address ${JSON.stringify(text)}: expected six two-digit hex bytes separated by ':', e.g. "02:00:5e:10:00:01"`,
    );
  }
  const mac = new Uint8Array(MAC_LEN);
  for (let i = 0; i < MAC_LEN; i++) mac[i] = parseInt(text.slice(i * 3, i * 3 + 2), 16);
  return mac;
}

/** Formats the 6 bytes at buf[off] as lowercase "aa:bb:cc:dd:ee:ff". */
export function formatMac(buf: Uint8Array, off = 0): string {
  if (off < 0 || off + MAC_LEN > buf.length) {
    throw new Error(`formatMac: need ${MAC_LEN} bytes at offset ${off}, buffer has ${buf.length}`);
  }
  const parts: string[] = [];
  for (let i = 0; i < MAC_LEN; i++) parts.push(buf[off + i].toString(16).padStart(2, '0'));
  return parts.join(':');
}

/** Hot path: true when buf[off .. off+6) equals mac[0 .. 6). False if the buffer is too short. */
export function macEquals(buf: Uint8Array, off: number, mac: Uint8Array): boolean {
  if (off < 0 || off + MAC_LEN > buf.length) return false;
  return (
    buf[off] === mac[0] &&
    buf[off + 1] === mac[1] &&
    buf[off + 2] === mac[2] &&
    buf[off + 3] === mac[3] &&
    buf[off + 4] === mac[4] &&
    buf[off + 5] === mac[5]
  );
}

/** Hot path: copies mac[0 .. 6) to buf[off ..]. The caller guarantees the room (a parsed frame has it). */
export function writeMac(buf: Uint8Array, off: number, mac: Uint8Array): void {
  buf[off] = mac[0];
  buf[off + 1] = mac[1];
  buf[off + 2] = mac[2];
  buf[off + 3] = mac[3];
  buf[off + 4] = mac[4];
  buf[off + 5] = mac[5];
}
