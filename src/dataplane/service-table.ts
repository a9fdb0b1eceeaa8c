/**
 * (VIP, protocol, port) -> service id, for the hot path. A small open-addressing table in typed
 * arrays; a service with port 0 ("all ports") is found when no exact-port service matches.
 */
const WORDS = 6; // family|protocol, port, 4 address words
// Words and hashes are kept signed (int32): on x64 Node an unsigned value of 2^31 or more (most
// VIPs' first word) is no small integer and would be boxed, a heap allocation per packet,
// wherever it leaves a function V8 did not inline.

export class ServiceTable {
  readonly #mask: number;
  readonly #keys: Int32Array;
  readonly #ids: Int32Array;
  #count = 0;

  constructor(maxServices: number) {
    let size = 16;
    while (size < maxServices * 4) size <<= 1;
    this.#mask = size - 1;
    this.#keys = new Int32Array(size * WORDS);
    this.#ids = new Int32Array(size).fill(-1);
  }

  get size(): number {
    return this.#count;
  }

  clear(): void {
    this.#ids.fill(-1);
    this.#keys.fill(0);
    this.#count = 0;
  }

  /** Config time: `vip` is 4 or 16 bytes. */
  add(vip: Uint8Array, protocol: number, port: number, serviceId: number): void {
    const family = vip.length === 4 ? 4 : 6;
    let h = this.#hash(vip, 0, vip.length, protocol, port);
    for (;;) {
      const slot = h & this.#mask;
      if (this.#ids[slot] < 0) {
        const k = slot * WORDS;
        this.#keys[k] = (family << 8) | protocol;
        this.#keys[k + 1] = port;
        for (let w = 0; w < 4; w++) this.#keys[k + 2 + w] = w * 4 < vip.length ? readWord(vip, w * 4) : 0;
        this.#ids[slot] = serviceId;
        this.#count++;
        return;
      }
      h++;
    }
  }

  /** Hot path: the destination address lives in `frame` at `addrOff` (addrLen 4 or 16). Returns the service id or -1. */
  match(frame: Uint8Array, addrOff: number, addrLen: number, protocol: number, port: number): number {
    const exact = this.#find(frame, addrOff, addrLen, protocol, port);
    return exact >= 0 ? exact : this.#find(frame, addrOff, addrLen, protocol, 0);
  }

  #find(frame: Uint8Array, addrOff: number, addrLen: number, protocol: number, port: number): number {
    const fp = ((addrLen === 4 ? 4 : 6) << 8) | protocol;
    let h = this.#hash(frame, addrOff, addrLen, protocol, port);
    for (let probes = 0; probes <= this.#mask; probes++) {
      const slot = h & this.#mask;
      const id = this.#ids[slot];
      if (id < 0) return -1;
      const k = slot * WORDS;
      if (
        this.#keys[k] === fp &&
        this.#keys[k + 1] === port &&
        this.#keys[k + 2] === readWord(frame, addrOff) &&
        (addrLen === 4 ||
          (this.#keys[k + 3] === readWord(frame, addrOff + 4) &&
            this.#keys[k + 4] === readWord(frame, addrOff + 8) &&
            this.#keys[k + 5] === readWord(frame, addrOff + 12)))
      ) {
        return id;
      }
      h++;
    }
    return -1;
  }

  #hash(bytes: Uint8Array, off: number, len: number, protocol: number, port: number): number {
    let h = Math.imul(protocol ^ (port << 8), 0x9e3779b1);
    for (let i = 0; i < len; i += 4) h = Math.imul(h ^ readWord(bytes, off + i), 0x85ebca6b) ^ (h >>> 15);
    return h ^ (h >>> 13);
  }
}

function readWord(b: Uint8Array, o: number): number {
  return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
}
