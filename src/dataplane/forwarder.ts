/**
 * The per-packet pipeline: parse -> match service -> flow lookup -> steer a new flow -> learn its
 * MPTCP token -> send. `forward()` counts the arrival; `#pipeline()` reads top to bottom in that
 * order, each step that ends the frame returning its counted drop (packet/drop-reasons.ts) or its
 * hold. Its steps and branches live beside it, each a small class constructed here with a typed
 * host of what it needs: steering a new flow (flow-steer.ts), the last step toward a backend
 * (egress.ts), ICMP for a VIP (icmp-path.ts), fragments (fragment-path.ts), owner queries and
 * held frames (owner-hold.ts). The generation is kept as named records (service-records.ts,
 * backend-slots.ts), per-flow MPTCP tokens in the flow table's entries (flow-tokens.ts).
 * Everything the path touches is preallocated: no allocation, promise or closure per packet.
 */
import { Drop } from '../packet/drop-reasons.js';
import { FRAG_FIRST, FRAG_LATER, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, ParsedPacket } from '../packet/parsed-packet.js';
import { parseFrame } from '../packet/parse.js';
import { MptcpInfo } from '../packet/mptcp-options.js';
import { tokenKey } from '../packet/token-key.js';
import { flowHashBits, FLOW_KEY_MAX_BYTES } from '../hash/murmur3.js';
import { DEFAULT_AFFINITY_CAPACITY, DEFAULT_HOLD_PACKETS, DEFAULT_TOKEN_CAPACITY, MAX_SERVICES } from './contract/limits.js';
import { COUNTER_LENGTH, DROPS_BASE, ENTITY, G, backendCounter, newCounters, serviceCounter } from './contract/counters.js';
import type { DataplaneSpec } from './contract/spec.js';
import { FLOW_KIND_CLOSING, FLOW_KIND_ESTABLISHED, FLOW_KIND_HALF_OPEN, FLOW_KIND_OTHER, FlowTable } from './flow-table.js';
import { ServiceTable } from './service-table.js';
import { AffinityTable } from './affinity-table.js';
import { ServiceRecords } from './service-records.js';
import { BackendSlots } from './backend-slots.js';
import { FlowTokens } from './flow-tokens.js';
import { FragmentPath } from './fragment-path.js';
import { FRAGMENT_QUERY_BASE } from './fragment-owner.js';
import { IcmpPath } from './icmp-path.js';
import { Egress } from './egress.js';
import { FlowSteer, STEER_DONE } from './flow-steer.js';
import { OwnerHold, QUERY_FLOW, QUERY_TOKEN, isPending, pendingQuery, type OwnerQueryFn, type PublishNowFn, type SendFn } from './owner-hold.js';
import { MptcpTokenTable, mptcpInspect } from './mptcp-tokens.js';
import { MPTCP_ACTION_LEARN_V0, MPTCP_ACTION_LEARN_V1, MPTCP_ACTION_MALFORMED, MPTCP_ACTION_NONE } from './mptcp-tokens.js';

export { MAX_PENDING_QUERIES, HOLD_SLOTS, QUERY_DEADLINE_MS, QUERY_FLOW, QUERY_TOKEN, type OwnerQueryFn, type PublishNowFn } from './owner-hold.js';

export interface ForwarderOptions {
  flowCapacity: number;
  tcpIdleMs: number;
  tcpClosingMs: number;
  udpIdleMs: number;
  /** Idle timeout of a half-open TCP flow (only SYNs seen) while a flood fills the half-open share. Default 10 s. */
  halfOpenIdleMs?: number;
  /** false: the flow table's plain eviction (no half-open share), for comparison. Default true. */
  floodProtection?: boolean;
  /** MPTCP token table capacity (entries). Default DEFAULT_TOKEN_CAPACITY. */
  tokenCapacity?: number;
  /** Client-affinity table capacity (entries). Default DEFAULT_AFFINITY_CAPACITY. */
  affinityCapacity?: number;
  /** A flow table opened by the caller (a shared one a restart keeps: shared-flow-table.ts); default a new private one. */
  flows?: FlowTable;
  /** Where the counters live (COUNTER_LENGTH entries): a worker's, over a SharedArrayBuffer its pool reads. Default a new array. */
  counters?: Float64Array;
  /**
   * The MPTCP token table of all data-plane workers (MptcpTokenTable.sharedBuffer(), made once by
   * the thread that starts them): a join hashed to another worker finds its connection's token.
   * Default a private table of tokenCapacity.
   */
  sharedTokens?: SharedArrayBuffer;
  /** The client-affinity table of all workers (AffinityTable.sharedBuffer()); default a private table of affinityCapacity. */
  sharedAffinity?: SharedArrayBuffer;
  /** This worker's mark in the shared tables' lock words (its index + 1), for releaseLockOf() after it exits. Default 1. */
  sharedWriterId?: number;
}

/** What explain.ts reads of a forwarder beyond its public tables. */
export interface ForwarderView {
  readonly match: ServiceTable;
  readonly services: ServiceRecords;
  readonly backends: BackendSlots;
  readonly flowTokens: FlowTokens;
  readonly hashSeed: number;
  readonly generation: number;
  readonly ownerQueries: boolean;
}

export class Forwarder {
  readonly counters: Float64Array;
  readonly flows: FlowTable;
  readonly tokens: MptcpTokenTable;
  readonly affinity: AffinityTable;
  readonly #p = new ParsedPacket();
  readonly #mptcp = new MptcpInfo();
  readonly #match = new ServiceTable(MAX_SERVICES);
  readonly #services = new ServiceRecords();
  readonly #backends = new BackendSlots();
  readonly #flowTokens: FlowTokens;
  readonly #hold: OwnerHold;
  /** Steps of the pipeline: a new flow's backend (flow-steer.ts), the ICMP branch (icmp-path.ts), the last step (egress.ts), the fragments branch (fragment-path.ts). */
  readonly #steer: FlowSteer;
  readonly #icmp: IcmpPath;
  readonly #egress: Egress;
  readonly #frag: FragmentPath;

  // Generation-wide facts.
  #hashSeed = 0;
  #generation = 0;

  constructor(opts: ForwarderOptions) {
    if (opts.counters && opts.counters.length < COUNTER_LENGTH) throw new RangeError(`counters must hold ${COUNTER_LENGTH} entries, got ${opts.counters.length}`);
    this.counters = opts.counters ?? newCounters();
    this.flows = opts.flows ?? new FlowTable(opts.flowCapacity, { tcpIdleMs: opts.tcpIdleMs, tcpClosingMs: opts.tcpClosingMs, udpIdleMs: opts.udpIdleMs, halfOpenMs: opts.halfOpenIdleMs }, { floodProtection: opts.floodProtection });
    this.counters[G.flowCapacity] = this.flows.capacity;
    this.tokens =
      opts.sharedTokens === undefined
        ? new MptcpTokenTable({ capacity: opts.tokenCapacity ?? DEFAULT_TOKEN_CAPACITY, idleTimeoutMs: opts.tcpIdleMs })
        : MptcpTokenTable.over(opts.sharedTokens, { idleTimeoutMs: opts.tcpIdleMs, writerId: opts.sharedWriterId });
    this.affinity = opts.sharedAffinity === undefined ? new AffinityTable(opts.affinityCapacity ?? DEFAULT_AFFINITY_CAPACITY) : AffinityTable.over(opts.sharedAffinity, { writerId: opts.sharedWriterId });
    this.#flowTokens = new FlowTokens(this.flows);
    this.#hold = new OwnerHold({
      counters: this.counters,
      flows: this.flows,
      tokens: this.tokens,
      flowTokens: this.#flowTokens,
      services: this.#services,
      backends: this.#backends,
      flowCreated: (slot, sid, be, publishJoin) => this.#steer.flowCreated(slot, sid, be, publishJoin),
      replay: (frame, len, tx, nowMs) => this.#pipeline(frame, len, tx, nowMs),
    });
    // Each step's callbacks are bound here, once.
    this.#steer = new FlowSteer({
      counters: this.counters,
      flows: this.flows,
      tokens: this.tokens,
      flowTokens: this.#flowTokens,
      affinity: this.affinity,
      services: this.#services,
      backends: this.#backends,
      mptcp: this.#mptcp,
      hold: this.#hold,
      hashSeed: () => this.#hashSeed,
      generation: () => this.#generation,
    });
    this.#icmp = new IcmpPath({
      counters: this.counters,
      match: this.#match,
      services: this.#services,
      backends: this.#backends,
      flows: this.flows,
      hold: this.#hold,
      hashSeed: () => this.#hashSeed,
      affinityBackend: (rx, p, sid, table, nowMs) => this.#steer.affinityBackend(rx, p, sid, table, nowMs),
      deliver: (rx, len, p, sid, be, tx, hash, nowMs) => this.#egress.deliver(rx, len, p, sid, be, tx, hash, nowMs),
    });
    this.#egress = new Egress({
      counters: this.counters,
      services: this.#services,
      backends: this.#backends,
      replyTooBig: (rx, p, tx, mtu, nowMs) => this.#icmp.replyTooBig(rx, p, tx, mtu, nowMs),
    });
    this.#frag = new FragmentPath({
      counters: this.counters,
      backends: this.#backends,
      parsed: this.#p,
      send: (rx, len, p, sid, be, tx, hash, nowMs) => this.#send(rx, len, p, sid, be, tx, hash, nowMs),
    });
  }

  /** Turn owner queries on (cluster with sync) or off. */
  setOwnerQuery(fn: OwnerQueryFn | null, holdPerQuery = DEFAULT_HOLD_PACKETS): void {
    this.#hold.configure(fn, holdPerQuery);
    // Later fragments of a datagram this instance never saw ask too (fragment-owner.ts).
    this.#frag.setOwnerQuery(fn);
  }

  /** A table change is recent in the cluster until untilMs (this process's Date.now clock; 0: not): UDP with no local flow asks its owner until then (owner-hold.ts). */
  setChangeRecent(untilMs: number): void {
    this.#hold.setChangeRecent(untilMs);
  }

  /** Publish learned tokens and steered join subflows as they happen (cluster with sync), or not. */
  setPublishNow(fn: PublishNowFn | null): void {
    this.#steer.setPublishNow(fn);
    // And each first fragment's datagram, for its later fragments that reach other instances.
    this.#frag.setPublishNow(fn);
  }

  /**
   * Where frames beyond the one forward() returns go, written to `tx` and sent by `send` at once:
   * early fragments when their first fragment arrives (the first fragment itself leaves through
   * the engine's batch), and the leading outer fragments of an ipip packet without DF split to
   * fit the egress MTU (egress.ts). Without it, such packets get "too big" replies instead.
   */
  setFragmentRelease(tx: Buffer | null, send: SendFn | null): void {
    this.#frag.setRelease(tx, send);
    this.#egress.setSink(tx, send);
  }

  get pendingQueries(): number {
    return this.#hold.pending + this.#frag.pendingQueries;
  }

  get generation(): number {
    return this.#generation;
  }

  get maxBackendId(): number {
    return this.#backends.maxId;
  }

  /** The generation's records as `sluice explain` reads them (dataplane/explain.ts); read-only use only. */
  explainView(): ForwarderView {
    return {
      match: this.#match,
      services: this.#services,
      backends: this.#backends,
      flowTokens: this.#flowTokens,
      hashSeed: this.#hashSeed,
      generation: this.#generation,
      ownerQueries: this.#hold.enabled,
    };
  }

  /** Swap in a new generation. Flows whose backend left the config are forgotten so their next packet takes the new table. */
  apply(spec: DataplaneSpec): void {
    this.#match.clear();
    for (const s of spec.services) this.#match.add(s.vip, s.protocol, s.port, s.id);
    // ICMP has no port: each VIP's echo policy is its first service's (entry keyed protocol ICMP, port 0).
    for (const s of spec.services) {
      const icmp = s.vip.length === 4 ? IPPROTO_ICMP : IPPROTO_ICMPV6;
      if (this.#match.match(s.vip, 0, s.vip.length, icmp, 0) < 0) this.#match.add(s.vip, icmp, 0, s.id);
    }
    this.#services.load(spec.services);
    this.#backends.load(spec.backends);
    this.#hashSeed = spec.hashSeed >>> 0;
    this.flows.setHashSeed(this.#hashSeed);
    this.#generation = spec.generation;
    this.#egress.apply(spec);
    this.#frag.configure(spec.fragments);
    this.counters[G.generation] = spec.generation;

    let moved = 0;
    this.flows.forEachSlot((slot) => {
      const be = this.flows.backendOf(slot);
      if (isPending(be)) return; // its owner query is in flight
      if (!this.#backends.belongsTo(be, this.flows.serviceOf(slot))) {
        this.#remap(slot, this.flows.serviceOf(slot), this.flows.flowHashOf(slot, this.#hashSeed));
        moved++;
      }
    });
    this.counters[G.flowsRemapped] += moved;
    this.counters[G.flowsActive] = this.flows.size;
  }

  /**
   * Forward one frame: `rx[0..len)` in, the frame to send written at `tx[0..)`. Returns the
   * number of bytes to send, or 0 when the frame was dropped (and counted) or held.
   */
  forward(rx: Buffer, len: number, tx: Buffer, nowMs: number): number {
    this.counters[G.rxFrames]++;
    this.counters[G.rxBytes] += len;
    return this.#pipeline(rx, len, tx, nowMs);
  }

  /**
   * A flow whose backend left (or went down) takes the current table's pick in place; true if it
   * did. Removing it instead made its next packet, a TCP non-SYN, ask the cluster for an owner
   * that can only name the backend that left: after a reload every such connection queried at
   * once, on every instance, while the control processes were busiest. A service with client
   * affinity (whose pick is per client) or no table: removed, and the next packet steers anew.
   */
  #remap(slot: number, sid: number, hash: number): boolean {
    const table = this.#services.hasAffinity(sid) ? null : this.#services.tableOf(sid);
    const be = table === null ? -1 : table[(hash >>> 0) % table.length];
    if (be < 0) {
      this.flows.remove(slot);
      return false;
    }
    this.flows.setBackend(slot, be);
    return true;
  }

  /** Every step after arrival; a held frame released by its owner's answer re-runs it from here. */
  #pipeline(rx: Buffer, len: number, tx: Buffer, nowMs: number): number {
    const p = this.#p;
    // parse
    const reason = parseFrame(rx, len, p);
    if (reason !== Drop.ok) return this.#drop(reason);
    // A later fragment has no ports: it follows its datagram's first fragment (fragment-table.ts).
    if (p.fragment === FRAG_LATER) return this.#frag.later(rx, len, p, tx, nowMs);
    // ICMP for a VIP: its own branch (icmp-path.ts).
    if (p.protocol === IPPROTO_ICMP || p.protocol === IPPROTO_ICMPV6) return this.#icmp.forward(rx, len, p, tx, nowMs);
    // match
    const sid = this.#match.match(rx, p.dstAddrOffset, p.addrLen, p.protocol, p.dstPort);
    if (sid < 0) return this.#drop(Drop.no_service);
    const mptcp = p.protocol === IPPROTO_TCP && this.#services.isMptcp(sid) ? mptcpInspect(rx, p, this.#mptcp) : MPTCP_ACTION_NONE;
    if (mptcp === MPTCP_ACTION_MALFORMED) this.counters[G.mptcpMalformed]++;
    // flow
    // Signed (flowHashBits): an unsigned hash of 2^31 or more would be boxed, a heap allocation per frame.
    const hash = flowHashBits(rx, p, this.#hashSeed);
    let slot = this.flows.lookup(rx, p, hash, nowMs);
    if (slot >= 0) {
      const be = this.flows.backendOf(slot);
      if (isPending(be)) return this.#hold.hold(rx, len, pendingQuery(be));
      if (this.#backends.keepsFlows(be, sid)) {
        this.flows.touch(slot, nowMs, p.tcpFlags);
        this.#flowTokens.refresh(slot, nowMs, this.tokens);
      } else {
        // The backend of record left the config or went down: this flow moves to the current table.
        this.counters[G.flowsRemapped]++;
        if (this.#remap(slot, sid, hash)) this.flows.touch(slot, nowMs, p.tcpFlags);
        else slot = -1;
      }
    }
    // steer
    if (slot < 0) {
      slot = this.#steer.steer(rx, len, p, sid, mptcp, hash, nowMs);
      if (slot === STEER_DONE) return 0;
    }
    const be = this.flows.backendOf(slot);
    // Learn the connection's token before this packet leaves: the client opens joins ~1 ms later.
    if ((mptcp === MPTCP_ACTION_LEARN_V1 || mptcp === MPTCP_ACTION_LEARN_V0) && this.#flowTokens.wantsToken(slot)) {
      this.#steer.learnToken(rx, mptcp, slot, sid, be, nowMs);
    }
    // A first fragment records its datagram's backend for the fragments that follow it.
    if (p.fragment === FRAG_FIRST && !this.#frag.record(rx, p, sid, be, hash, nowMs)) return this.#drop(Drop.fragment_table_full);
    const out = this.#send(rx, len, p, sid, be, tx, hash, nowMs);
    if (out > 0 && p.fragment === FRAG_FIRST && this.#frag.holding) this.#frag.release(sid, be, hash, nowMs);
    return out;
  }

  /** The last step of every forwarded frame: toward backend `be` of service `sid`, counted. */
  #send(rx: Buffer, len: number, p: ParsedPacket, sid: number, be: number, tx: Buffer, hash: number, nowMs: number): number {
    const out = this.#egress.deliver(rx, len, p, sid, be, tx, hash, nowMs);
    if (out === 0 || this.#icmp.backToClient()) return out;
    const c = this.counters;
    c[serviceCounter(sid, ENTITY.packets)]++;
    c[serviceCounter(sid, ENTITY.bytes)] += len;
    c[backendCounter(be, ENTITY.packets)]++;
    c[backendCounter(be, ENTITY.bytes)] += len;
    return out;
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
   * The owner's answer to query `queryId` (a backend id of this instance, -1: unknown, -2: no owner answered in time): the
   * flow is recorded and the frames it held are forwarded; `send` transmits each one written to `tx`.
   */
  answer(queryId: number, backendId: number, nowMs: number, tx: Buffer, send: SendFn): void {
    // A fragment query's held fragments leave through the fragment release sink (setFragmentRelease).
    if (queryId >= FRAGMENT_QUERY_BASE) this.#frag.answer(queryId, backendId, nowMs);
    else this.#hold.answer(queryId, backendId, nowMs, tx, send);
  }

  /** Queries past their deadline get the table's answer (the control plane did not reply in time). */
  expireQueries(nowMs: number, tx: Buffer, send: SendFn): void {
    this.#hold.expire(nowMs, tx, send);
    this.expireFragments(nowMs);
  }

  /** Early fragments whose first fragment did not come within the hold time: counted drops. */
  expireFragments(nowMs: number): void {
    this.#frag.expire(nowMs);
  }

  /**
   * Entries other instances need around a change (DESIGN.md "Several instances"): every live flow
   * whose backend differs from what the current table would pick for it, and every MPTCP token.
   * Control-side work (allocates); called after a generation change and on a refresh timer.
   */
  publishable(nowMs: number, emit: (kind: number, key: Uint8Array, backendId: number) => void, withTokens = true): number {
    let n = 0;
    const key = new Uint8Array(FLOW_KEY_MAX_BYTES);
    this.flows.forEachSlot((slot) => {
      const be = this.flows.backendOf(slot);
      if (be < 0) return;
      const sid = this.flows.serviceOf(slot);
      const table = this.#services.tableOf(sid);
      if (table !== null && !this.#services.hasAffinity(sid) && table[this.flows.flowHashOf(slot, this.#hashSeed) % table.length] === be) return;
      const len = this.flows.keyOf(slot, key);
      emit(QUERY_FLOW, key.slice(0, len), be);
      n++;
    }, nowMs);
    // A token table shared by several workers is published by one of them (withTokens).
    if (withTokens) {
      for (const t of this.tokens.entries(nowMs)) {
        emit(QUERY_TOKEN, tokenKey(t.token), t.backendId);
        n++;
      }
    }
    this.counters[G.flowsPublished] += n;
    return n;
  }

  /** Timer work: expire idle flows a bounded slice at a time; refresh gauges. */
  tick(nowMs: number, sweepSlots: number): void {
    this.flows.sweep(nowMs, sweepSlots);
    const c = this.counters;
    this.#frag.sweep(nowMs, sweepSlots >>> 2);
    c[G.fragTableEntries] = this.#frag.size;
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
    this.affinity.sweep(nowMs, sweepSlots >>> 2, this.#services.affinityTimeoutOf);
    c[G.affinityEntries] = this.affinity.size;
    c[G.mptcpTokensActive] = this.tokens.active;
    c[G.mptcpCollisions] = this.tokens.collisions;
    c[G.mptcpEvictions] = this.tokens.evictions;
    c[G.mptcpRefreshed] = this.tokens.refreshed;
  }
}
