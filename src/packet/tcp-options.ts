/**
 * TCP option walking over the options area of a frame, in place. The rules are the ones a
 * receiving Linux stack applies (tcp_parse_options): kind 0 (EOL) ends the list and whatever
 * follows it is padding; kind 1 (NOP) is one byte; every other kind has a length byte that
 * must exist, be >= 2 and keep the option inside the area. The first violation stops the walk
 * with its own code. Options before a violation are still valid (Linux has already acted on
 * them by the time it stops), which is why findOption() returns a match found before a later
 * malformation.
 *
 * Hot path: plain integer code over the frame, no allocation, never throws.
 */

export const TCPOPT_EOL = 0;
export const TCPOPT_NOP = 1;
export const TCPOPT_MSS = 2;
export const TCPOPT_WSCALE = 3;
export const TCPOPT_SACK_PERMITTED = 4;
export const TCPOPT_SACK = 5;
export const TCPOPT_TIMESTAMP = 8;
export const TCPOPT_MPTCP = 30;

/** Longest options area a TCP header can carry (data offset 15 -> 60 - 20 bytes). */
export const TCP_OPTIONS_MAX = 40;

/** The area is well formed (walk reached its end or an EOL). */
export const OPT_OK = 0;
/** A kind other than EOL/NOP sits on the last byte: its length byte is missing. */
export const OPT_TRUNCATED = 1;
/** A length byte below 2 (0 or 1 would loop forever or overlap the kind byte). */
export const OPT_BAD_LENGTH = 2;
/** The option's length runs past the end of the options area. */
export const OPT_OVERRUN = 3;
/** The area itself is impossible: negative, longer than 40 bytes, or outside the frame. */
export const OPT_BAD_AREA = 4;

export const OPT_CODE_NAMES = ['ok', 'truncated', 'bad_length', 'overrun', 'bad_area'] as const;

/** findOption(): no option of that kind before the end of a well-formed area. */
export const FIND_NOT_FOUND = -1;
/** findOption(): the area is malformed before an option of that kind was found. */
export const FIND_MALFORMED = -2;

/** True if [off, off+len) is a possible options area inside the frame. */
function areaOk(frame: Uint8Array, off: number, len: number): boolean {
  return off >= 0 && len >= 0 && len <= TCP_OPTIONS_MAX && off + len <= frame.length;
}

/**
 * One step of the walk at `pos` (< end). Returns the size of the option there (1 for NOP,
 * >= 2 otherwise), 0 for EOL, or the negated OPT_* code of the violation.
 */
export function optionStep(frame: Uint8Array, pos: number, end: number): number {
  const kind = frame[pos];
  if (kind === TCPOPT_EOL) return 0;
  if (kind === TCPOPT_NOP) return 1;
  if (pos + 1 >= end) return -OPT_TRUNCATED;
  const size = frame[pos + 1];
  if (size < 2) return -OPT_BAD_LENGTH;
  if (pos + size > end) return -OPT_OVERRUN;
  return size;
}

/** Walks the whole area and returns OPT_OK or the code of the first violation. */
export function checkOptions(frame: Uint8Array, off: number, len: number): number {
  if (!areaOk(frame, off, len)) return OPT_BAD_AREA;
  const end = off + len;
  let pos = off;
  while (pos < end) {
    const step = optionStep(frame, pos, end);
    if (step === 0) return OPT_OK;
    if (step < 0) return -step;
    pos += step;
  }
  return OPT_OK;
}

/**
 * Offset (in the frame) of the first option of `kind` in the area, FIND_NOT_FOUND, or
 * FIND_MALFORMED if the walk hit a violation first. The returned option is guaranteed to lie
 * wholly inside the area with a length byte >= 2. `kind` must not be EOL or NOP.
 */
export function findOption(frame: Uint8Array, off: number, len: number, kind: number): number {
  if (!areaOk(frame, off, len)) return FIND_MALFORMED;
  const end = off + len;
  let pos = off;
  while (pos < end) {
    const step = optionStep(frame, pos, end);
    if (step === 0) return FIND_NOT_FOUND;
    if (step < 0) return FIND_MALFORMED;
    if (step >= 2 && frame[pos] === kind) return pos;
    pos += step;
  }
  return FIND_NOT_FOUND;
}

/**
 * A reusable cursor for code that wants every option (diagnostics, tests). Create once,
 * reset() per packet; next() returns false at the end, and `status` then says why.
 */
export class TcpOptionCursor {
  /** Offset of the current option's kind byte. */
  offset = 0;
  kind = 0;
  /** Size of the current option in bytes (1 for NOP). */
  size = 0;
  /** OPT_OK while walking and after a clean end; the violation code otherwise. */
  status = OPT_OK;
  #frame: Uint8Array = new Uint8Array(0);
  #pos = 0;
  #end = 0;

  reset(frame: Uint8Array, off: number, len: number): void {
    this.#frame = frame;
    this.offset = 0;
    this.kind = 0;
    this.size = 0;
    if (!areaOk(frame, off, len)) {
      this.status = OPT_BAD_AREA;
      this.#pos = 0;
      this.#end = 0;
      return;
    }
    this.status = OPT_OK;
    this.#pos = off;
    this.#end = off + len;
  }

  next(): boolean {
    if (this.#pos >= this.#end) return false;
    const step = optionStep(this.#frame, this.#pos, this.#end);
    if (step <= 0) {
      if (step < 0) this.status = -step;
      this.#pos = this.#end;
      return false;
    }
    this.offset = this.#pos;
    this.kind = this.#frame[this.#pos];
    this.size = step;
    this.#pos += step;
    return true;
  }
}
