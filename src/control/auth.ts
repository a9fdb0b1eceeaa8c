/**
 * Authentication of control messages (docs/DESIGN.md invariant 6: nothing a peer sends is trusted
 * unless authenticated with the cluster key).
 *
 * - MessageAuthenticator: HMAC-SHA256 with the cluster key, truncated to MAC_BYTES (16), and a
 *   constant-time comparison (timingSafeEqual).
 * - ReplayWindow: IPsec-style anti-replay over the sequence numbers of one sender incarnation
 *   (RFC 4303 section 3.4.3): a bitmap `size` wide below the highest sequence seen.
 * - ReplayGuard: per sender, the incarnation it currently trusts, that incarnation's window,
 *   the newest timestamp seen and the clock-skew window. A new incarnation (a restarted peer)
 *   replaces the old one only if its timestamp is newer than anything seen from that peer, so a
 *   recorded message of an earlier incarnation cannot reset the window.
 *
 * The guard is split into check() and commit(): the decoder checks first, parses the body, and
 * commits only a fully valid message, so a rejected datagram never changes any state.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

/** Bytes of the truncated HMAC-SHA256 trailer. 128 bits, as in RFC 4868's HMAC-SHA-256-128. */
export const MAC_BYTES = 16;
/** Shortest cluster key accepted (bytes after decoding). */
export const MIN_KEY_BYTES = 32;
/** Default anti-replay window (sequence numbers). */
export const DEFAULT_REPLAY_WINDOW = 1024;
/** Default accepted difference between a message's timestamp and the local wall clock. */
export const DEFAULT_CLOCK_SKEW_MS = 5000;

export class MessageAuthenticator {
  readonly #key: Buffer;

  constructor(key: Uint8Array) {
    if (key.length < MIN_KEY_BYTES) {
      throw new RangeError(`cluster key has ${key.length} bytes; at least ${MIN_KEY_BYTES} are needed`);
    }
    this.#key = Buffer.from(key); // a private copy: the caller may clear or reuse theirs
  }

  /** Write the MAC of data[off, off + len) into out[outOff, outOff + MAC_BYTES). */
  sign(data: Uint8Array, off: number, len: number, out: Uint8Array, outOff: number): void {
    const digest = createHmac('sha256', this.#key).update(data.subarray(off, off + len)).digest();
    out.set(digest.subarray(0, MAC_BYTES), outOff);
  }

  /** True if mac[macOff, macOff + MAC_BYTES) is the MAC of data[off, off + len). Constant time. */
  verify(data: Uint8Array, off: number, len: number, mac: Uint8Array, macOff: number): boolean {
    if (macOff < 0 || macOff + MAC_BYTES > mac.length || off < 0 || off + len > data.length) return false;
    const digest = createHmac('sha256', this.#key).update(data.subarray(off, off + len)).digest();
    return timingSafeEqual(digest.subarray(0, MAC_BYTES), mac.subarray(macOff, macOff + MAC_BYTES));
  }
}

/** Outcome of a window check. */
export type WindowVerdict = 'ok' | 'duplicate' | 'too-old';

/**
 * Anti-replay window over u64 sequence numbers: accepts a sequence above the highest seen
 * (`top`), or one at most size-1 below it that has not been seen. Bit (seq mod size) of the
 * ring marks seq as seen while seq is inside the window.
 */
export class ReplayWindow {
  readonly size: number;
  readonly #bits: Uint32Array;
  #top = -1n; // -1: nothing seen yet

  constructor(size = DEFAULT_REPLAY_WINDOW) {
    if (!Number.isInteger(size) || size < 32 || size > 65536 || (size & (size - 1)) !== 0) {
      throw new RangeError(`replay window ${size}: must be a power of two in 32..65536`);
    }
    this.size = size;
    this.#bits = new Uint32Array(size >>> 5);
  }

  /** Highest sequence accepted so far, or -1n. */
  get top(): bigint {
    return this.#top;
  }

  check(seq: bigint): WindowVerdict {
    if (seq > this.#top) return 'ok';
    const behind = this.#top - seq;
    if (behind >= BigInt(this.size)) return 'too-old';
    const bit = Number(seq & BigInt(this.size - 1));
    return (this.#bits[bit >>> 5] & (1 << (bit & 31))) !== 0 ? 'duplicate' : 'ok';
  }

  /** Mark seq seen. Call only after check(seq) returned 'ok'. */
  commit(seq: bigint): void {
    const mask = BigInt(this.size - 1);
    if (seq > this.#top) {
      const ahead = this.#top < 0n ? BigInt(this.size) : seq - this.#top;
      if (ahead >= BigInt(this.size)) {
        this.#bits.fill(0);
      } else {
        // Forget the sequence numbers that slide out: they share ring bits with top+1..seq.
        for (let s = this.#top + 1n; s <= seq; s++) {
          const b = Number(s & mask);
          this.#bits[b >>> 5] &= ~(1 << (b & 31));
        }
      }
      this.#top = seq;
    }
    const bit = Number(seq & mask);
    this.#bits[bit >>> 5] |= 1 << (bit & 31);
  }
}

export type ReplayVerdict = 'ok' | 'stale' | 'replayed';

interface SenderState {
  incarnation: bigint;
  window: ReplayWindow;
  /** Newest timestamp of any accepted message from this sender (any incarnation). */
  lastTimestampMs: number;
}

export interface ReplayGuardOptions {
  windowSize?: number;
  skewMs?: number;
}

/**
 * Replay and freshness state per sender (keyed by the sender's 32-bit id hash). Holds one entry
 * per sender that ever got a message accepted; the caller only admits configured peers, so the
 * map is bounded by the peer list.
 */
export class ReplayGuard {
  readonly windowSize: number;
  readonly skewMs: number;
  readonly #senders = new Map<number, SenderState>();

  constructor(opts: ReplayGuardOptions = {}) {
    this.windowSize = opts.windowSize ?? DEFAULT_REPLAY_WINDOW;
    this.skewMs = opts.skewMs ?? DEFAULT_CLOCK_SKEW_MS;
    new ReplayWindow(this.windowSize); // validates the size now, not at the first message
    if (!Number.isFinite(this.skewMs) || this.skewMs <= 0) throw new RangeError(`clock skew ${this.skewMs} ms: must be > 0`);
  }

  /** Would a message (sender, incarnation, seq, timestamp) be accepted now? Changes nothing. */
  check(sender: number, incarnation: bigint, seq: bigint, timestampMs: number, nowMs: number): ReplayVerdict {
    if (!(Math.abs(timestampMs - nowMs) <= this.skewMs)) return 'stale';
    const st = this.#senders.get(sender);
    if (st === undefined) return 'ok';
    if (st.incarnation !== incarnation) return timestampMs > st.lastTimestampMs ? 'ok' : 'replayed';
    return st.window.check(seq) === 'ok' ? 'ok' : 'replayed';
  }

  /** Record an accepted message. Call only after check() returned 'ok' for the same values. */
  commit(sender: number, incarnation: bigint, seq: bigint, timestampMs: number): void {
    let st = this.#senders.get(sender);
    if (st === undefined || st.incarnation !== incarnation) {
      st = { incarnation, window: new ReplayWindow(this.windowSize), lastTimestampMs: st?.lastTimestampMs ?? -Infinity };
      this.#senders.set(sender, st);
    }
    st.window.commit(seq);
    if (timestampMs > st.lastTimestampMs) st.lastTimestampMs = timestampMs;
  }

  /** The incarnation currently trusted for a sender, if any. */
  incarnationOf(sender: number): bigint | undefined {
    return this.#senders.get(sender)?.incarnation;
  }

  /** Highest accepted sequence of the sender's current incarnation (-1n if none). */
  topOf(sender: number): bigint {
    return this.#senders.get(sender)?.window.top ?? -1n;
  }
}
