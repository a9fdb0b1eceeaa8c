/**
 * MPTCP token table: token (uint32, the server's token) -> the backend of that MPTCP
 * connection, so that every later MP_JOIN SYN (which carries the token, on a new 5-tuple)
 * reaches the backend that owns the connection (docs/DESIGN.md invariant 4).
 *
 * Sluice sees client->server packets only, so the token is learned from the client's third
 * ACK (or first data segment), whose MP_CAPABLE carries the server's key: token =
 * SHA-256(key)[0..3] (SHA-1 for v0). Learning must happen inline, before that packet is
 * forwarded: Linux clients open joins ~1 ms later (docs/PROTOCOLS.md).
 *
 * Lifetime: an entry lives while any subflow of its connection lives. The table does not count
 * subflows (a missed release would leak an entry forever); instead each entry has a last-seen
 * time that the forwarder refreshes with touch() whenever it sees a subflow of the connection
 * (it keeps the token beside the flow in the flow table), and an idle timeout (default: the TCP
 * idle timeout) removes entries whose subflows all went quiet. remove() is for an explicit end
 * (for example MP_FASTCLOSE, or a control-plane withdrawal).
 *
 * Storage: open addressing in typed arrays, capacity a power of two. A token probes a window
 * of `probeWindow` consecutive slots starting at a seeded mix of the token (tokens are SHA
 * outputs, but a client chooses its keys, so the seed keeps it from aiming at one window).
 * Lookups scan the whole window, so removal leaves no tombstones. A full window evicts its
 * least recently seen entry (counted). Tokens collide across backends (~N^2/2^33 pairs for N
 * connections): the first owner is kept and the collision counted, never overwritten.
 *
 * Hot path (learn, lookup, touch): no allocation, no closures, no exceptions.
 *
 * How the forwarder uses it per packet: docs/DESIGN.md section 3 ("MPTCP tokens in the path").
 */
import { randomInt } from 'node:crypto';
import type { ParsedPacket } from '../packet/parsed-packet.js';
import {
  MPTCP_ABSENT,
  MPTCP_FORM_CAPABLE_ACK,
  MPTCP_FORM_CAPABLE_DATA,
  MPTCP_FORM_JOIN_SYN,
  MPTCP_OK,
  MPTCP_UNKNOWN_SUBTYPE,
  type MptcpInfo,
  decodeMptcp,
  readToken,
} from '../packet/mptcp-options.js';
import { mptcpToken } from '../hash/sha-small.js';

/** learn(): a new entry was stored. */
export const LEARN_NEW = 0;
/** learn(): the token is already owned by the same backend (retransmission, repeated MP_CAPABLE). */
export const LEARN_REFRESHED = 1;
/** learn(): the token is owned by another backend; the first owner is kept. */
export const LEARN_COLLISION = 2;

export const DEFAULT_TOKEN_IDLE_TIMEOUT_MS = 300_000;
export const DEFAULT_PROBE_WINDOW = 8;

export interface MptcpTokenTableOptions {
  /** Number of slots, a power of two >= probeWindow. */
  capacity: number;
  /** An entry not learned or touched for this long is gone. Default 300 000 (TCP idle). */
  idleTimeoutMs?: number;
  /** Slots probed per token. Default 8. */
  probeWindow?: number;
  /** Seed of the slot mix; default random per table. Tests pass one to be deterministic. */
  seed?: number;
}

export interface MptcpTokenEntry {
  token: number;
  backendId: number;
  serviceIndex: number;
  version: number;
  lastSeenMs: number;
}

export class MptcpTokenTable {
  readonly capacity: number;
  readonly idleTimeoutMs: number;
  readonly probeWindow: number;

  readonly #mask: number;
  readonly #seed: number;
  readonly #token: Uint32Array;
  readonly #backend: Int32Array;
  readonly #service: Int32Array;
  readonly #lastSeen: Float64Array;
  /** 0 = empty slot; otherwise MPTCP version + 1. */
  readonly #state: Uint8Array;
  #sweepCursor = 0;

  #learnedV0 = 0;
  #learnedV1 = 0;
  #refreshed = 0;
  #collisions = 0;
  #evictions = 0;
  #expired = 0;
  #active = 0;
  #hits = 0;
  #misses = 0;

  constructor(options: MptcpTokenTableOptions) {
    const capacity = options.capacity;
    const probeWindow = options.probeWindow ?? DEFAULT_PROBE_WINDOW;
    const idleTimeoutMs = options.idleTimeoutMs ?? DEFAULT_TOKEN_IDLE_TIMEOUT_MS;
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 2 ** 30 || (capacity & (capacity - 1)) !== 0) {
      throw new RangeError(`MptcpTokenTable: capacity must be a power of two in 1..2^30, got ${capacity}`);
    }
    if (!Number.isInteger(probeWindow) || probeWindow < 1 || probeWindow > capacity) {
      throw new RangeError(`MptcpTokenTable: probeWindow must be an integer in 1..capacity (${capacity}), got ${probeWindow}`);
    }
    if (!(idleTimeoutMs > 0)) {
      throw new RangeError(`MptcpTokenTable: idleTimeoutMs must be > 0, got ${idleTimeoutMs}`);
    }
    this.capacity = capacity;
    this.probeWindow = probeWindow;
    this.idleTimeoutMs = idleTimeoutMs;
    this.#mask = capacity - 1;
    this.#seed = (options.seed ?? randomInt(0, 2 ** 32 - 1)) | 0;
    this.#token = new Uint32Array(capacity);
    this.#backend = new Int32Array(capacity);
    this.#service = new Int32Array(capacity);
    this.#lastSeen = new Float64Array(capacity);
    this.#state = new Uint8Array(capacity);
  }

  /** First slot of the token's probe window. */
  bucketOf(token: number): number {
    let h = Math.imul(token ^ this.#seed, 0x9e3779b1);
    h ^= h >>> 15;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    return h & this.#mask;
  }

  /**
   * Records that `token` belongs to `backendId` (>= 0, a stable global backend id).
   * Returns LEARN_NEW, LEARN_REFRESHED (same backend; its last-seen time is refreshed) or
   * LEARN_COLLISION (another backend owns the token; nothing changes).
   */
  learn(token: number, backendId: number, serviceIndex: number, version: number, nowMs: number): number {
    token = token >>> 0;
    const mask = this.#mask;
    const start = this.bucketOf(token);
    let free = -1;
    let oldest = -1;
    let oldestSeen = Infinity;
    for (let i = 0; i < this.probeWindow; i++) {
      const s = (start + i) & mask;
      if (this.#state[s] === 0) {
        if (free < 0) free = s;
        continue;
      }
      if (nowMs - this.#lastSeen[s] > this.idleTimeoutMs) {
        this.#clear(s);
        this.#expired++;
        if (free < 0) free = s;
        continue;
      }
      if (this.#token[s] === token) {
        if (this.#backend[s] === backendId) {
          if (nowMs > this.#lastSeen[s]) this.#lastSeen[s] = nowMs;
          this.#refreshed++;
          return LEARN_REFRESHED;
        }
        this.#collisions++;
        return LEARN_COLLISION;
      }
      if (this.#lastSeen[s] < oldestSeen) {
        oldestSeen = this.#lastSeen[s];
        oldest = s;
      }
    }
    if (free < 0) {
      free = oldest;
      this.#clear(free);
      this.#evictions++;
    }
    this.#token[free] = token;
    this.#backend[free] = backendId;
    this.#service[free] = serviceIndex;
    this.#lastSeen[free] = nowMs;
    this.#state[free] = version === 0 ? 1 : 2;
    this.#active++;
    if (version === 0) this.#learnedV0++;
    else this.#learnedV1++;
    return LEARN_NEW;
  }

  /** Slot of the live entry for `token`, or -1. An expired entry found on the way is removed. */
  lookupSlot(token: number, nowMs: number): number {
    token = token >>> 0;
    const mask = this.#mask;
    const start = this.bucketOf(token);
    for (let i = 0; i < this.probeWindow; i++) {
      const s = (start + i) & mask;
      if (this.#state[s] !== 0 && this.#token[s] === token) {
        if (nowMs - this.#lastSeen[s] > this.idleTimeoutMs) {
          this.#clear(s);
          this.#expired++;
          break;
        }
        this.#hits++;
        return s;
      }
    }
    this.#misses++;
    return -1;
  }

  /** Slot of the live entry for `token`, or -1, changing nothing (no expiry, no hit/miss count). */
  peekSlot(token: number, nowMs: number): number {
    token = token >>> 0;
    const mask = this.#mask;
    const start = this.bucketOf(token);
    for (let i = 0; i < this.probeWindow; i++) {
      const s = (start + i) & mask;
      if (this.#state[s] !== 0 && this.#token[s] === token) return nowMs - this.#lastSeen[s] > this.idleTimeoutMs ? -1 : s;
    }
    return -1;
  }

  /** Backend id owning `token`, or -1 if unknown or expired. */
  lookup(token: number, nowMs: number): number {
    const s = this.lookupSlot(token, nowMs);
    return s < 0 ? -1 : this.#backend[s];
  }

  backendAt(slot: number): number {
    return this.#backend[slot];
  }

  serviceAt(slot: number): number {
    return this.#service[slot];
  }

  /** MPTCP version (0 or 1) of the entry in `slot`. */
  versionAt(slot: number): number {
    return this.#state[slot] - 1;
  }

  lastSeenAt(slot: number): number {
    return this.#lastSeen[slot];
  }

  /**
   * A subflow of the token's connection was seen at `nowMs` (never moves last-seen back).
   * Returns false if the token is not in the table (expired, evicted or never learned).
   */
  touch(token: number, nowMs: number): boolean {
    const s = this.lookupSlot(token, nowMs);
    if (s < 0) return false;
    if (nowMs > this.#lastSeen[s]) this.#lastSeen[s] = nowMs;
    return true;
  }

  /** Removes the token's entry; false if it was not there. */
  remove(token: number): boolean {
    token = token >>> 0;
    const mask = this.#mask;
    const start = this.bucketOf(token);
    for (let i = 0; i < this.probeWindow; i++) {
      const s = (start + i) & mask;
      if (this.#state[s] !== 0 && this.#token[s] === token) {
        this.#clear(s);
        return true;
      }
    }
    return false;
  }

  /**
   * Examines up to `maxSlots` slots from where the last sweep stopped and removes expired
   * entries. Returns how many were removed. Call it from a timer with a small budget.
   */
  sweep(nowMs: number, maxSlots: number): number {
    const n = maxSlots < this.capacity ? maxSlots : this.capacity;
    let removed = 0;
    let s = this.#sweepCursor;
    for (let i = 0; i < n; i++) {
      if (this.#state[s] !== 0 && nowMs - this.#lastSeen[s] > this.idleTimeoutMs) {
        this.#clear(s);
        this.#expired++;
        removed++;
      }
      s = (s + 1) & this.#mask;
    }
    this.#sweepCursor = s;
    return removed;
  }

  /** Empties the table; counters other than `active` are kept. */
  clear(): void {
    this.#state.fill(0);
    this.#active = 0;
    this.#sweepCursor = 0;
  }

  /** Live entries, for the control plane (owner sync) and `sluice flows`. Not for the hot path. */
  *entries(nowMs: number): Generator<MptcpTokenEntry> {
    for (let s = 0; s < this.capacity; s++) {
      if (this.#state[s] === 0 || nowMs - this.#lastSeen[s] > this.idleTimeoutMs) continue;
      yield {
        token: this.#token[s],
        backendId: this.#backend[s],
        serviceIndex: this.#service[s],
        version: this.#state[s] - 1,
        lastSeenMs: this.#lastSeen[s],
      };
    }
  }

  get learnedV0(): number {
    return this.#learnedV0;
  }
  get learnedV1(): number {
    return this.#learnedV1;
  }
  get refreshed(): number {
    return this.#refreshed;
  }
  get collisions(): number {
    return this.#collisions;
  }
  /** Live entries pushed out because their probe window was full. */
  get evictions(): number {
    return this.#evictions;
  }
  /** Entries removed by the idle timeout (sweep, or found stale by learn/lookup). */
  get expired(): number {
    return this.#expired;
  }
  get active(): number {
    return this.#active;
  }
  get lookupHits(): number {
    return this.#hits;
  }
  get lookupMisses(): number {
    return this.#misses;
  }

  #clear(s: number): void {
    this.#state[s] = 0;
    this.#active--;
  }
}

// Actions of mptcpInspect().
/** No MPTCP option, or one the balancer has no use for: forward normally. */
export const MPTCP_ACTION_NONE = 0;
/** v1 MP_CAPABLE carrying the server's key (info.receiverKeyOffset): learn its SHA-256 token. */
export const MPTCP_ACTION_LEARN_V1 = 1;
/** v0 MP_CAPABLE carrying the server's key: learn its SHA-1 token. */
export const MPTCP_ACTION_LEARN_V0 = 2;
/** MP_JOIN SYN: steer by the token at info.tokenOffset. */
export const MPTCP_ACTION_JOIN_SYN = 3;
/** Malformed TCP options or MPTCP option: count it, forward the packet as plain TCP. */
export const MPTCP_ACTION_MALFORMED = 4;

export const MPTCP_ACTION_NAMES = ['none', 'learn_v1', 'learn_v0', 'join_syn', 'malformed'] as const;

const TCP_RST = 0x04;
const TCP_ACK = 0x10;

/**
 * What the forwarder should do with this client->server TCP packet for MPTCP's sake.
 * Decodes into `info` (reused). Learning needs an ACK without RST: the third ACK (20 bytes)
 * or, if that was lost, the first data segment (22/24 bytes). Pure, no allocation.
 */
export function mptcpInspect(frame: Uint8Array, p: ParsedPacket, info: MptcpInfo): number {
  if (p.protocol !== 6 || p.tcpOptionsLen === 0) {
    info.reset();
    return MPTCP_ACTION_NONE;
  }
  const status = decodeMptcp(frame, p.tcpOptionsOffset, p.tcpOptionsLen, p.tcpFlags, p.payloadLen, info);
  if (status !== MPTCP_OK) {
    return status === MPTCP_ABSENT || status === MPTCP_UNKNOWN_SUBTYPE ? MPTCP_ACTION_NONE : MPTCP_ACTION_MALFORMED;
  }
  const form = info.form;
  if (form === MPTCP_FORM_CAPABLE_ACK || form === MPTCP_FORM_CAPABLE_DATA) {
    if ((p.tcpFlags & (TCP_ACK | TCP_RST)) !== TCP_ACK) return MPTCP_ACTION_NONE;
    return info.version === 0 ? MPTCP_ACTION_LEARN_V0 : MPTCP_ACTION_LEARN_V1;
  }
  if (form === MPTCP_FORM_JOIN_SYN) return MPTCP_ACTION_JOIN_SYN;
  return MPTCP_ACTION_NONE;
}

/**
 * The token an inspected packet is about: for LEARN_* the server key's token (one SHA
 * compression: call it only when the flow has no token yet), for JOIN_SYN the token it
 * carries. -1 for other actions.
 */
export function mptcpActionToken(frame: Uint8Array, action: number, info: MptcpInfo): number {
  if (action === MPTCP_ACTION_LEARN_V1) return mptcpToken(frame, info.receiverKeyOffset, 1);
  if (action === MPTCP_ACTION_LEARN_V0) return mptcpToken(frame, info.receiverKeyOffset, 0);
  if (action === MPTCP_ACTION_JOIN_SYN) return readToken(frame, info.tokenOffset);
  return -1;
}
