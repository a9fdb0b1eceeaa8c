import { Drop } from '../packet/drop-reasons.js';
import { ParsedPacket } from '../packet/parsed-packet.js';
import { parseFrame } from '../packet/parse.js';
import { flowHash } from '../hash/murmur3.js';
import { FLOW_KIND_CLOSING, FLOW_KIND_ESTABLISHED, FLOW_KIND_HALF_OPEN, FLOW_KIND_OTHER, FLOW_TOKEN_COLLIDED, FLOW_TOKEN_HELD, FLOW_TOKEN_NONE, FlowTable } from './flow-table.js';
import { ServiceTable } from './service-table.js';
import { AffinityTable, maskedSource } from './affinity-table.js';
import { DEFAULT_AFFINITY_CAPACITY, DEFAULT_HOLD_PACKETS, DEFAULT_TOKEN_CAPACITY, MAX_BACKENDS, MAX_SERVICES } from './contract/limits.js';
import { DROPS_BASE, ENTITY, G, backendCounter, newCounters, serviceCounter } from './contract/counters.js';
import type { DataplaneSpec } from './contract/spec.js';
import { encapHeaderLen, writeEncap } from '../packet/encap.js';
import { IPPROTO_TCP, TCP_SYN } from '../packet/parsed-packet.js';
import { copyFlowKey } from '../hash/murmur3.js';
import { MptcpInfo } from '../packet/mptcp-options.js';
import {
  LEARN_COLLISION,
  LEARN_NEW,
  MPTCP_ACTION_JOIN_SYN,
  MPTCP_ACTION_LEARN_V0,
  MPTCP_ACTION_LEARN_V1,
  MPTCP_ACTION_MALFORMED,
  MPTCP_ACTION_NONE,
  MptcpTokenTable,
  mptcpActionToken,
  mptcpInspect,
} from './mptcp-tokens.js';

const FWD_DSR = 0;
const FWD_IPIP = 1;
const ETH_HEADER = 14;
const ENCAP_TTL = 64;

export interface ForwarderOptions {
  flowCapacity: number;
  tcpIdleMs: number;
  tcpClosingMs: number;
  udpIdleMs: number;
  /** Idle timeout of a half-open TCP flow (only SYNs seen). Default 10 s. */
  halfOpenIdleMs?: number;
  /** MPTCP token table capacity (entries). Default 262144. */
  tokenCapacity?: number;
  /** Client-affinity table capacity (entries). Default 262144. */
  affinityCapacity?: number;
}

/** murmur3's finalizer: a cheap, well-mixed integer hash step. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** How often a flow that holds an MPTCP token refreshes it (the token lives while any subflow does). */
const TOKEN_TOUCH_MS = 1000;

/** Owner queries in flight at once, frames held for them, and the longest a frame waits. */
export const MAX_PENDING_QUERIES = 256;
export const HOLD_SLOTS = 1024;
const HOLD_SLOT_BYTES = 2048;
export const QUERY_DEADLINE_MS = 50;
/** A flow whose owner is being asked records backend PENDING - qid (always < -1). */
const PENDING = -2;
/** Query ids are seq * MAX_PENDING_QUERIES + slot; seq wraps here (ids stay exact integers). */
const QUERY_SEQ_MASK = 0x3fffff;
export const QUERY_FLOW = 0;
export const QUERY_TOKEN = 1;

/** How the data plane asks the control plane who owns a flow or a token (set by the worker); the answer names queryId. */
export type OwnerQueryFn = (queryId: number, kind: number, key: Uint8Array) => void;
/**
 * How the data plane hands the control plane an entry other instances need at once, not at the
 * next generation change or refresh: an MPTCP token just learned (its joins arrive ~1 ms later,
 * usually at other instances) and a join subflow just steered (its 5-tuple says nothing of its
 * backend). Once per MPTCP connection or subflow, never per packet.
 */
export type PublishNowFn = (kind: number, key: Uint8Array, backendId: number) => void;

/**
 * The per-packet path: parse -> match service -> flow lookup -> Maglev on a miss -> rewrite or
 * encapsulate into the transmit slot. Everything it touches is preallocated; a frame that cannot be
 * forwarded returns 0 and is counted under its drop reason.
 */
export class Forwarder {
  readonly counters: Float64Array = newCounters();
  readonly flows: FlowTable;
  readonly tokens: MptcpTokenTable;
  readonly #p = new ParsedPacket();
  readonly #mptcp = new MptcpInfo();
  readonly #services = new ServiceTable(MAX_SERVICES);

  // Per service id.
  readonly #svcTables: (Int32Array | null)[] = new Array<Int32Array | null>(MAX_SERVICES).fill(null);
  readonly #svcForwarding = new Uint8Array(MAX_SERVICES);
  readonly #svcMptcp = new Uint8Array(MAX_SERVICES);
  /** 1: an MP_JOIN with an unknown token is balanced like a new flow; 0: dropped. */
  readonly #svcJoinHash = new Uint8Array(MAX_SERVICES);
  readonly #svcAffinity = new Uint8Array(MAX_SERVICES);
  readonly #svcAffinityTimeout = new Float64Array(MAX_SERVICES);
  /** Per service: a hash every instance agrees on (the local service id does not). */
  readonly #svcStableHash = new Uint32Array(MAX_SERVICES);
  readonly #svcPrefix4 = new Uint8Array(MAX_SERVICES);
  readonly #svcPrefix6 = new Uint8Array(MAX_SERVICES);
  readonly affinity: AffinityTable;
  readonly #affinityKey = new Uint32Array(4);
  readonly #affinityTimeoutOf = (sid: number): number => this.#svcAffinityTimeout[sid];

  // Owner queries (several instances): a miss for a packet that belongs to an existing connection
  // (a TCP non-SYN, an MP_JOIN with an unknown token) asks the flow's owner while its frames wait.
  #ownerQuery: OwnerQueryFn | null = null;
  #publishNow: PublishNowFn | null = null;
  #holdPerQuery = DEFAULT_HOLD_PACKETS;
  readonly #qActive = new Uint8Array(MAX_PENDING_QUERIES);
  readonly #qSlot = new Int32Array(MAX_PENDING_QUERIES);
  readonly #qService = new Int32Array(MAX_PENDING_QUERIES);
  readonly #qHash = new Uint32Array(MAX_PENDING_QUERIES);
  readonly #qKind = new Uint8Array(MAX_PENDING_QUERIES);
  readonly #qToken = new Uint32Array(MAX_PENDING_QUERIES);
  readonly #qDeadline = new Float64Array(MAX_PENDING_QUERIES);
  readonly #qHeld = new Int32Array(MAX_PENDING_QUERIES);
  /** Per query slot, bumped on every reuse: a late answer for an earlier query of the slot is ignored. */
  readonly #qSeq = new Uint32Array(MAX_PENDING_QUERIES);
  #qCursor = 0;
  #qCount = 0;
  readonly #hold = Buffer.alloc(HOLD_SLOTS * HOLD_SLOT_BYTES);
  readonly #holdViews: Buffer[] = [];
  readonly #holdQuery = new Int32Array(HOLD_SLOTS).fill(-1);
  readonly #holdLen = new Int32Array(HOLD_SLOTS);
  #holdCursor = 0;
  readonly #keyScratch = new Uint8Array(40);

  // Per backend id.
  readonly #beService = new Int32Array(MAX_BACKENDS).fill(-1);
  readonly #beHasMac = new Uint8Array(MAX_BACKENDS);
  readonly #beMac = new Uint8Array(MAX_BACKENDS * 6);
  readonly #beAddr = new Uint8Array(MAX_BACKENDS * 16);
  readonly #beFamily = new Uint8Array(MAX_BACKENDS);
  /** 1 while the backend is in its service's current Maglev table (affinity entries to others are redone). */
  readonly #beServing = new Uint8Array(MAX_BACKENDS);
  /** 1 while the backend is down (health, next hop): its flows move to the current table. */
  readonly #beDown = new Uint8Array(MAX_BACKENDS);
  /** Per backend id, a view of its address (4 or 16 bytes), made at apply time for the encapsulator. */
  readonly #beAddrView: (Uint8Array | null)[] = new Array<Uint8Array | null>(MAX_BACKENDS).fill(null);

  readonly #egressMac = new Uint8Array(6);
  #egressMtu = 1500;
  readonly #src4 = new Uint8Array(4);
  readonly #src6 = new Uint8Array(16);
  #hasSrc4 = false;
  #hasSrc6 = false;
  #hashSeed = 0;
  #generation = 0;
  #ipId = 0;
  #maxBackendId = 0;

  constructor(opts: ForwarderOptions) {
    this.flows = new FlowTable(opts.flowCapacity, {
      tcpIdleMs: opts.tcpIdleMs,
      tcpClosingMs: opts.tcpClosingMs,
      udpIdleMs: opts.udpIdleMs,
      halfOpenMs: opts.halfOpenIdleMs,
    });
    this.counters[G.flowCapacity] = this.flows.capacity;
    this.tokens = new MptcpTokenTable({ capacity: opts.tokenCapacity ?? DEFAULT_TOKEN_CAPACITY, idleTimeoutMs: opts.tcpIdleMs });
    this.affinity = new AffinityTable(opts.affinityCapacity ?? DEFAULT_AFFINITY_CAPACITY);
    for (let i = 0; i < HOLD_SLOTS; i++) this.#holdViews.push(this.#hold.subarray(i * HOLD_SLOT_BYTES, (i + 1) * HOLD_SLOT_BYTES));
  }

  /** Turn owner queries on (cluster with sync) or off. */
  setOwnerQuery(fn: OwnerQueryFn | null, holdPerQuery = 8): void {
    this.#ownerQuery = fn;
    this.#holdPerQuery = Math.max(1, Math.min(64, holdPerQuery));
  }

  /** Publish learned tokens and steered join subflows as they happen (cluster with sync), or not. */
  setPublishNow(fn: PublishNowFn | null): void {
    this.#publishNow = fn;
  }

  get pendingQueries(): number {
    return this.#qCount;
  }

  get generation(): number {
    return this.#generation;
  }

  get maxBackendId(): number {
    return this.#maxBackendId;
  }

  /** Swap in a new generation. Flows whose backend left the config are forgotten so their next packet takes the new table. */
  apply(spec: DataplaneSpec): void {
    this.#services.clear();
    this.#svcTables.fill(null);
    this.#beService.fill(-1);
    this.#beHasMac.fill(0);
    this.#beServing.fill(0);
    this.#beDown.fill(0);
    this.#svcAffinity.fill(0);
    for (const s of spec.services) {
      this.#services.add(s.vip, s.protocol, s.port, s.id);
      this.#svcTables[s.id] = s.table;
      this.#svcForwarding[s.id] = s.forwarding === 'ipip' ? FWD_IPIP : FWD_DSR;
      this.#svcMptcp[s.id] = s.mptcp && s.protocol === IPPROTO_TCP ? 1 : 0;
      this.#svcJoinHash[s.id] = s.mptcpUnknownJoin === 'hash' ? 1 : 0;
      this.#svcStableHash[s.id] = s.stableHash >>> 0;
      if (s.affinity) {
        this.#svcAffinity[s.id] = 1;
        this.#svcAffinityTimeout[s.id] = s.affinity.timeoutMs;
        this.#svcPrefix4[s.id] = s.affinity.prefix4;
        this.#svcPrefix6[s.id] = s.affinity.prefix6;
      }
    }
    for (const b of spec.backends) {
      this.#beService[b.id] = b.serviceId;
      this.#beServing[b.id] = b.serving ? 1 : 0;
      this.#beDown[b.id] = b.down ? 1 : 0;
      this.#beFamily[b.id] = b.addr.length === 4 ? 4 : 6;
      this.#beAddr.set(b.addr, b.id * 16);
      this.#beAddrView[b.id] = this.#beAddr.subarray(b.id * 16, b.id * 16 + b.addr.length);
      if (b.nextHopMac) {
        this.#beMac.set(b.nextHopMac, b.id * 6);
        this.#beHasMac[b.id] = 1;
      }
      if (b.id > this.#maxBackendId) this.#maxBackendId = b.id;
    }
    this.#egressMac.set(spec.egressMac);
    this.#egressMtu = spec.egressMtu;
    this.#hasSrc4 = spec.encapSource4 !== null;
    if (spec.encapSource4) this.#src4.set(spec.encapSource4);
    this.#hasSrc6 = spec.encapSource6 !== null;
    if (spec.encapSource6) this.#src6.set(spec.encapSource6);
    this.#hashSeed = spec.hashSeed >>> 0;
    this.flows.setHashSeed(this.#hashSeed);
    this.#generation = spec.generation;
    this.counters[G.generation] = spec.generation;

    const beService = this.#beService;
    let dropped = 0;
    this.flows.forEachSlot((slot) => {
      const be = this.flows.backendOf(slot);
      if (be <= PENDING) return; // its owner query is in flight
      if (be < 0 || be >= MAX_BACKENDS || beService[be] !== this.flows.serviceOf(slot)) {
        this.flows.remove(slot);
        dropped++;
      }
    });
    this.counters[G.flowsRemapped] += dropped;
    this.counters[G.flowsActive] = this.flows.size;
  }

  /**
   * Forward one frame: `rx[0..len)` in, the frame to send written at `tx[0..)`. Returns the
   * number of bytes to send, or 0 when the frame was dropped (and counted).
   */
  forward(rx: Buffer, len: number, tx: Buffer, nowMs: number): number {
    const c = this.counters;
    const p = this.#p;
    c[G.rxFrames]++;
    c[G.rxBytes] += len;

    const reason = parseFrame(rx, len, p);
    if (reason !== Drop.ok) return this.#drop(reason);

    const sid = this.#services.match(rx, p.dstAddrOffset, p.addrLen, p.protocol, p.dstPort);
    if (sid < 0) return this.#drop(Drop.no_service);

    const mptcp = p.protocol === IPPROTO_TCP && this.#svcMptcp[sid] === 1 ? mptcpInspect(rx, p, this.#mptcp) : MPTCP_ACTION_NONE;
    if (mptcp === MPTCP_ACTION_MALFORMED) c[G.mptcpMalformed]++;

    const hash = flowHash(rx, p, this.#hashSeed);
    let slot = this.flows.lookup(rx, p, hash, nowMs);
    let be = -1;
    if (slot >= 0) {
      be = this.flows.backendOf(slot);
      if (be <= PENDING) return this.#holdFrame(rx, len, PENDING - be);
      if (this.#beService[be] !== sid || this.#beDown[be] === 1) {
        // The backend of record left the config or went down: this flow moves to the current table.
        this.flows.remove(slot);
        c[G.flowsRemapped]++;
        slot = -1;
        be = -1;
      } else {
        this.flows.touch(slot, nowMs, p.tcpFlags);
        if (this.flows.tokenRefreshDue(slot, nowMs, TOKEN_TOUCH_MS)) this.tokens.touch(this.flows.tokenOf(slot), nowMs);
      }
    }
    if (be < 0) {
      let token = -1;
      if (mptcp === MPTCP_ACTION_JOIN_SYN) {
        // A new subflow of an MPTCP connection: it belongs wherever that connection lives.
        token = mptcpActionToken(rx, mptcp, this.#mptcp);
        const owner = this.tokens.lookup(token, nowMs);
        if (owner >= 0 && this.#beService[owner] === sid) {
          be = owner;
          c[G.mptcpJoinsSteered]++;
        } else if (this.#ownerQuery !== null) {
          // Another instance may have learned this connection: ask the token's owner.
          const q = this.#startQuery(rx, p, hash, sid, QUERY_TOKEN, token, nowMs);
          if (q >= 0) return this.#holdFrame(rx, len, q);
          c[G.mptcpJoinsUnknown]++;
          if (this.#svcJoinHash[sid] === 0) return this.#drop(Drop.mptcp_join_unknown_token);
          token = -1;
        } else {
          c[G.mptcpJoinsUnknown]++;
          if (this.#svcJoinHash[sid] === 0) return this.#drop(Drop.mptcp_join_unknown_token);
          token = -1;
        }
      } else if (this.#ownerQuery !== null && p.protocol === IPPROTO_TCP && (p.tcpFlags & TCP_SYN) === 0) {
        // Mid-connection packet we have no state for (ECMP moved it here, or we restarted): ask its owner.
        const q = this.#startQuery(rx, p, hash, sid, QUERY_FLOW, 0, nowMs);
        if (q >= 0) return this.#holdFrame(rx, len, q);
      }
      if (be < 0) {
        const table = this.#svcTables[sid];
        if (table === null) return this.#drop(Drop.no_backend);
        if (this.#svcAffinity[sid] === 1) {
          be = this.#affinityBackend(rx, p, sid, table, nowMs);
        } else {
          be = table[hash % table.length];
        }
        if (be < 0) return this.#drop(Drop.no_backend);
      }
      slot = this.flows.insert(rx, p, hash, nowMs, be, sid, this.#generation);
      this.flows.touch(slot, nowMs, p.tcpFlags);
      this.flows.setToken(slot, token >= 0 ? FLOW_TOKEN_HELD : FLOW_TOKEN_NONE, token >= 0 ? token : 0, nowMs);
      c[G.flowsCreated]++;
      c[serviceCounter(sid, ENTITY.flowsCreated)]++;
      c[backendCounter(be, ENTITY.flowsCreated)]++;
      if (token >= 0 && this.#publishNow !== null) this.#publishJoin(slot, be);
    }

    // Learn the connection's token before this packet leaves: the client opens joins ~1 ms later.
    if ((mptcp === MPTCP_ACTION_LEARN_V1 || mptcp === MPTCP_ACTION_LEARN_V0) && this.flows.tokenStateOf(slot) === FLOW_TOKEN_NONE) {
      const token = mptcpActionToken(rx, mptcp, this.#mptcp);
      const r = this.tokens.learn(token, be, sid, this.#mptcp.version, nowMs);
      // A collision is decided once per flow: Linux repeats MP_CAPABLE until the server's first DSS.
      this.flows.setToken(slot, r === LEARN_COLLISION ? FLOW_TOKEN_COLLIDED : FLOW_TOKEN_HELD, token, nowMs);
      if (r === LEARN_NEW) {
        c[mptcp === MPTCP_ACTION_LEARN_V1 ? G.mptcpLearnedV1 : G.mptcpLearnedV0]++;
        if (this.#publishNow !== null) {
          this.#publishNow(QUERY_TOKEN, new Uint8Array([token >>> 24, (token >>> 16) & 255, (token >>> 8) & 255, token & 255]), be);
          c[G.flowsPublished]++;
        }
      }
    }

    if (this.#beHasMac[be] === 0) return this.#drop(Drop.no_neighbor);
    const out = this.#svcForwarding[sid] === FWD_IPIP ? this.#encapsulate(rx, p, be, tx, hash) : this.#rewrite(rx, len, be, tx);
    if (out === 0) return 0;

    c[serviceCounter(sid, ENTITY.packets)]++;
    c[serviceCounter(sid, ENTITY.bytes)] += len;
    c[backendCounter(be, ENTITY.packets)]++;
    c[backendCounter(be, ENTITY.bytes)] += len;
    return out;
  }

  /** Open an owner query for this packet's flow (or token); -1 when every query slot is busy. */
  #startQuery(rx: Buffer, p: ParsedPacket, hash: number, sid: number, kind: number, token: number, nowMs: number): number {
    if (this.#qCount >= MAX_PENDING_QUERIES) return -1;
    let q = this.#qCursor;
    while (this.#qActive[q] === 1) q = (q + 1) % MAX_PENDING_QUERIES;
    this.#qCursor = (q + 1) % MAX_PENDING_QUERIES;
    const slot = this.flows.insert(rx, p, hash, nowMs, PENDING - q, sid, this.#generation);
    this.#qActive[q] = 1;
    this.#qCount++;
    this.#qSlot[q] = slot;
    this.#qService[q] = sid;
    this.#qHash[q] = hash;
    this.#qKind[q] = kind;
    this.#qToken[q] = token >>> 0;
    this.#qDeadline[q] = nowMs + QUERY_DEADLINE_MS;
    this.#qHeld[q] = 0;
    this.flows.setToken(slot, FLOW_TOKEN_NONE, 0, nowMs);
    this.counters[G.ownerQueries]++;
    const key = this.#keyScratch;
    let keyLen: number;
    if (kind === QUERY_TOKEN) {
      key[0] = token >>> 24;
      key[1] = (token >>> 16) & 255;
      key[2] = (token >>> 8) & 255;
      key[3] = token & 255;
      keyLen = 4;
    } else {
      keyLen = copyFlowKey(rx, p, key);
    }
    // The control process gets a copy; a query is one per flow miss, not per packet.
    this.#qSeq[q] = (this.#qSeq[q] + 1) & QUERY_SEQ_MASK;
    (this.#ownerQuery as OwnerQueryFn)(this.#qSeq[q] * MAX_PENDING_QUERIES + q, kind, key.slice(0, keyLen));
    return q;
  }

  /** A join subflow was just given its connection's backend: its owner must know (control-side work, once per subflow). */
  #publishJoin(slot: number, be: number): void {
    const key = new Uint8Array(40);
    const len = this.flows.keyOf(slot, key);
    (this.#publishNow as PublishNowFn)(QUERY_FLOW, key.slice(0, len), be);
    this.counters[G.flowsPublished]++;
  }

  /** Keep a frame until its flow's owner answers; counted, bounded per query and overall. */
  #holdFrame(rx: Buffer, len: number, q: number): number {
    if (this.#qActive[q] === 0 || this.#qHeld[q] >= this.#holdPerQuery || len > HOLD_SLOT_BYTES) return this.#drop(Drop.hold_overflow);
    for (let i = 0; i < HOLD_SLOTS; i++) {
      const h = (this.#holdCursor + i) % HOLD_SLOTS;
      if (this.#holdQuery[h] < 0) {
        rx.copy(this.#holdViews[h], 0, 0, len);
        this.#holdQuery[h] = q;
        this.#holdLen[h] = len;
        this.#holdCursor = (h + 1) % HOLD_SLOTS;
        this.#qHeld[q]++;
        this.counters[G.heldPackets]++;
        return 0;
      }
    }
    return this.#drop(Drop.hold_overflow);
  }

  /**
   * The owner's answer (a backend id of this instance, or -1: unknown / no answer): record the
   * flow, then forward every frame it held through the normal path; `send` transmits each.
   */
  answer(queryId: number, backendId: number, nowMs: number, tx: Buffer, send: (len: number) => void): void {
    if (!Number.isInteger(queryId) || queryId < 0) return;
    const q = queryId % MAX_PENDING_QUERIES;
    if (this.#qActive[q] === 0 || Math.floor(queryId / MAX_PENDING_QUERIES) !== this.#qSeq[q]) return;
    this.#settle(q, backendId, nowMs, tx, send);
  }

  #settle(q: number, backendId: number, nowMs: number, tx: Buffer, send: (len: number) => void): void {
    this.#qActive[q] = 0;
    this.#qCount--;
    const c = this.counters;
    const slot = this.#qSlot[q];
    const sid = this.#qService[q];
    const pendingHere = this.flows.backendOf(slot) === PENDING - q;
    let be = backendId >= 0 && backendId < MAX_BACKENDS && this.#beService[backendId] === sid ? backendId : -1;
    c[be >= 0 ? G.ownerHits : G.ownerMisses]++;
    let dropHeld = false;
    if (be < 0) {
      if (this.#qKind[q] === QUERY_TOKEN) {
        c[G.mptcpJoinsUnknown]++;
        if (this.#svcJoinHash[sid] === 0) dropHeld = true;
      }
      const table = this.#svcTables[sid];
      be = table === null ? -1 : table[this.#qHash[q] % table.length];
      if (be < 0) dropHeld = true;
    } else if (this.#qKind[q] === QUERY_TOKEN) {
      c[G.mptcpJoinsSteered]++;
      // Learn it here too, so the connection's next joins need no query.
      this.tokens.learn(this.#qToken[q], be, sid, 1, nowMs);
    }
    if (pendingHere) {
      if (dropHeld) {
        this.flows.remove(slot);
      } else {
        this.flows.setBackend(slot, be);
        if (this.#qKind[q] === QUERY_TOKEN) {
          this.flows.setToken(slot, FLOW_TOKEN_HELD, this.#qToken[q], nowMs);
          if (this.#publishNow !== null && backendId === be) this.#publishJoin(slot, be);
        }
        c[G.flowsCreated]++;
        c[serviceCounter(sid, ENTITY.flowsCreated)]++;
        c[backendCounter(be, ENTITY.flowsCreated)]++;
      }
    }
    for (let h = 0; h < HOLD_SLOTS; h++) {
      if (this.#holdQuery[h] !== q) continue;
      this.#holdQuery[h] = -1;
      if (dropHeld || !pendingHere) {
        this.#drop(dropHeld ? (this.#qKind[q] === QUERY_TOKEN ? Drop.mptcp_join_unknown_token : Drop.no_backend) : Drop.hold_overflow);
        continue;
      }
      // Counted once already when it arrived; the replay is the same frame.
      c[G.rxFrames]--;
      c[G.rxBytes] -= this.#holdLen[h];
      const out = this.forward(this.#holdViews[h], this.#holdLen[h], tx, nowMs);
      if (out > 0) send(out);
    }
  }

  /** Queries past their deadline get the table's answer (the control plane did not reply in time). */
  expireQueries(nowMs: number, tx: Buffer, send: (len: number) => void): void {
    if (this.#qCount === 0) return;
    for (let q = 0; q < MAX_PENDING_QUERIES; q++) {
      if (this.#qActive[q] === 1 && nowMs >= this.#qDeadline[q]) {
        this.counters[G.ownerQueryTimeouts]++;
        this.#settle(q, -1, nowMs, tx, send);
      }
    }
  }

  /**
   * Client affinity: the backend of record for the client's prefix, else Maglev over a hash of
   * the prefix (so every instance picks the same backend for a client without sharing state).
   */
  #affinityBackend(rx: Buffer, p: ParsedPacket, sid: number, table: Int32Array, nowMs: number): number {
    const key = this.#affinityKey;
    maskedSource(rx, p.srcAddrOffset, p.addrLen, p.addrLen === 4 ? this.#svcPrefix4[sid] : this.#svcPrefix6[sid], key);
    const h = fmix(fmix(fmix(fmix(fmix(this.#hashSeed ^ this.#svcStableHash[sid]) ^ key[0]) ^ key[1]) ^ key[2]) ^ key[3]);
    const known = this.affinity.lookup(sid, key, h, nowMs, this.#svcAffinityTimeout[sid]);
    if (known >= 0 && this.#beService[known] === sid && this.#beServing[known] === 1) return known;
    const be = table[h % table.length];
    if (be >= 0) this.affinity.set(sid, key, h, be, nowMs);
    return be;
  }

  /** dsr-l2: the frame unchanged but for its MAC addresses. */
  #rewrite(rx: Buffer, len: number, be: number, tx: Buffer): number {
    const mac = this.#beMac;
    const m = be * 6;
    // Never hand a frame back to the station it came from.
    if (
      rx[6] === mac[m] &&
      rx[7] === mac[m + 1] &&
      rx[8] === mac[m + 2] &&
      rx[9] === mac[m + 3] &&
      rx[10] === mac[m + 4] &&
      rx[11] === mac[m + 5]
    ) {
      return this.#drop(Drop.loop);
    }
    rx.copy(tx, 0, 0, len);
    for (let i = 0; i < 6; i++) {
      tx[i] = mac[m + i];
      tx[6 + i] = this.#egressMac[i];
    }
    return len;
  }

  /** ipip: a new Ethernet + outer IP header toward the backend, then the client's IP packet. */
  #encapsulate(rx: Buffer, p: ParsedPacket, be: number, tx: Buffer, hash: number): number {
    const family = this.#beFamily[be];
    const dst = this.#beAddrView[be];
    if (dst === null || (family === 4 ? !this.#hasSrc4 : !this.#hasSrc6)) return this.#drop(Drop.no_backend);
    const outerLen = encapHeaderLen(dst.length);
    const innerLen = p.l3Length;
    if (outerLen + innerLen > this.#egressMtu || ETH_HEADER + outerLen + innerLen > tx.length) {
      return this.#drop(Drop.encap_too_big);
    }
    const mac = this.#beMac;
    const m = be * 6;
    for (let i = 0; i < 6; i++) {
      tx[i] = mac[m + i];
      tx[6 + i] = this.#egressMac[i];
    }
    tx[12] = family === 4 ? 0x08 : 0x86;
    tx[13] = family === 4 ? 0x00 : 0xdd;
    // IPv4: a fresh identification per packet; IPv6: a flow label per flow, so routers keep a flow on one path.
    this.#ipId = (this.#ipId + 1) & 0xffff;
    writeEncap(tx, ETH_HEADER, family === 4 ? this.#src4 : this.#src6, dst, p.ipVersion, innerLen, ENCAP_TTL, family === 4 ? this.#ipId : hash & 0xfffff);
    rx.copy(tx, ETH_HEADER + outerLen, p.l3Offset, p.l3Offset + innerLen);
    return ETH_HEADER + outerLen + innerLen;
  }

  #drop(reason: number): number {
    this.counters[DROPS_BASE + reason]++;
    return 0;
  }

  /** Count a drop decided outside the forwarder (capture truncation, transmit errors). */
  countDrop(reason: number): void {
    this.counters[DROPS_BASE + reason]++;
  }

  /**
   * Entries other instances need around a change (DESIGN.md "Several instances"): every live flow
   * whose backend differs from what the current table would pick for it, and every MPTCP token.
   * Control-side work (allocates); called after a generation change and on a refresh timer.
   */
  publishable(nowMs: number, emit: (kind: number, key: Uint8Array, backendId: number) => void): number {
    let n = 0;
    const key = new Uint8Array(40);
    this.flows.forEachSlot((slot) => {
      const be = this.flows.backendOf(slot);
      if (be < 0) return;
      const sid = this.flows.serviceOf(slot);
      const table = this.#svcTables[sid];
      if (table !== null && this.#svcAffinity[sid] === 0 && table[this.flows.flowHashOf(slot, this.#hashSeed) % table.length] === be) return;
      const len = this.flows.keyOf(slot, key);
      emit(QUERY_FLOW, key.slice(0, len), be);
      n++;
    }, nowMs);
    for (const t of this.tokens.entries(nowMs)) {
      const tk = new Uint8Array([t.token >>> 24, (t.token >>> 16) & 255, (t.token >>> 8) & 255, t.token & 255]);
      emit(QUERY_TOKEN, tk, t.backendId);
      n++;
    }
    this.counters[G.flowsPublished] += n;
    return n;
  }

  /** Timer work: expire idle flows a bounded slice at a time; refresh gauges. */
  tick(nowMs: number, sweepSlots: number): void {
    this.flows.sweep(nowMs, sweepSlots);
    const c = this.counters;
    c[G.flowsActive] = this.flows.size;
    c[G.flowEvictions] = this.flows.evictions;
    c[G.flowExpirations] = this.flows.expirations;
    c[G.flowsHalfOpen] = this.flows.halfOpen;
    c[G.flowEvictionsHalfOpen] = this.flows.evictionsOf(FLOW_KIND_HALF_OPEN);
    c[G.flowEvictionsEstablished] = this.flows.evictionsOf(FLOW_KIND_ESTABLISHED);
    c[G.flowEvictionsClosing] = this.flows.evictionsOf(FLOW_KIND_CLOSING);
    c[G.flowEvictionsOther] = this.flows.evictionsOf(FLOW_KIND_OTHER);
    c[G.flowsUntracked] = this.flows.untracked;
    this.tokens.sweep(nowMs, sweepSlots >>> 2);
    this.affinity.sweep(nowMs, sweepSlots >>> 2, this.#affinityTimeoutOf);
    c[G.affinityEntries] = this.affinity.size;
    c[G.mptcpTokensActive] = this.tokens.active;
    c[G.mptcpCollisions] = this.tokens.collisions;
    c[G.mptcpEvictions] = this.tokens.evictions;
    c[G.mptcpRefreshed] = this.tokens.refreshed;
  }
}
