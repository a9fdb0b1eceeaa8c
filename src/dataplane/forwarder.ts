/**
 * The per-packet pipeline: parse -> match service -> flow lookup -> steer a new flow -> learn its
 * MPTCP token -> send. `forward()` counts the arrival; `#pipeline()` reads top to bottom in that
 * order, each step that ends the frame returning its counted drop (packet/drop-reasons.ts) or its
 * hold. Beside it: the generation as named records (service-records.ts, backend-slots.ts), owner
 * queries and held frames (owner-hold.ts), per-flow MPTCP tokens (flow-tokens.ts, stored in the flow table's entries). Everything the
 * path touches is preallocated: no allocation, promise or closure per packet.
 */
import { Drop } from '../packet/drop-reasons.js';
import { FRAG_FIRST, FRAG_LATER, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP, ParsedPacket, TCP_SYN } from '../packet/parsed-packet.js';
import { parseFrame } from '../packet/parse.js';
import { encapHeaderLen, writeEncap } from '../packet/encap.js';
import { MptcpInfo } from '../packet/mptcp-options.js';
import { tokenKey } from '../packet/token-key.js';
import { flowHash, fmix32, FLOW_KEY_MAX_BYTES } from '../hash/murmur3.js';
import { DEFAULT_AFFINITY_CAPACITY, DEFAULT_HOLD_PACKETS, DEFAULT_TOKEN_CAPACITY, MAX_SERVICES } from './contract/limits.js';
import { DROPS_BASE, ENTITY, G, backendCounter, newCounters, serviceCounter } from './contract/counters.js';
import type { DataplaneSpec } from './contract/spec.js';
import { FLOW_KIND_CLOSING, FLOW_KIND_ESTABLISHED, FLOW_KIND_HALF_OPEN, FLOW_KIND_OTHER, FlowTable } from './flow-table.js';
import { ServiceTable } from './service-table.js';
import { AffinityTable, maskedSource } from './affinity-table.js';
import { ServiceRecords } from './service-records.js';
import { BackendSlots } from './backend-slots.js';
import { FlowTokens } from './flow-tokens.js';
import { DEFAULT_FRAGMENT_CAPACITY, DEFAULT_FRAGMENT_TIMEOUT_MS, FRAGMENT_KEY_WORDS, FragmentTable, datagramKey } from './fragment-table.js';
import { DEFAULT_FRAGMENT_HOLD_MS, FragmentHold } from './fragment-hold.js';
import { OwnerHold, QUERY_FLOW, QUERY_TOKEN, isPending, pendingQuery, type OwnerQueryFn, type PublishNowFn, type SendFn } from './owner-hold.js';
import { LEARN_COLLISION, LEARN_NEW, MptcpTokenTable, mptcpActionToken, mptcpInspect } from './mptcp-tokens.js';
import { ECHO_DROP, ECHO_REPLY, ICMP_ECHO, ICMP_ERROR, ICMP_OTHER, TooBigLimiter, echoFlow, errorCounter, icmpKind, quotedFlow } from './icmp-steer.js';
import { writeEchoReply, writeTooBig } from '../packet/icmp-build.js';
import { MPTCP_ACTION_JOIN_SYN, MPTCP_ACTION_LEARN_V0, MPTCP_ACTION_LEARN_V1, MPTCP_ACTION_MALFORMED, MPTCP_ACTION_NONE } from './mptcp-tokens.js';

export { MAX_PENDING_QUERIES, HOLD_SLOTS, QUERY_DEADLINE_MS, QUERY_FLOW, QUERY_TOKEN, type OwnerQueryFn, type PublishNowFn } from './owner-hold.js';

const ETH_HEADER = 14;
const ENCAP_TTL = 64;
/** What a pipeline step returns when it ended the frame (dropped and counted, or held): send nothing. */
const DONE = -1;
/** vlan.egress as the forwarder keeps it: a VLAN id (0..4095), or one of these. */
const VLAN_UNTAGGED = -1;
const VLAN_KEEP = -2;

export interface ForwarderOptions {
  flowCapacity: number;
  tcpIdleMs: number;
  tcpClosingMs: number;
  udpIdleMs: number;
  /** Idle timeout of a half-open TCP flow (only SYNs seen) while a flood fills the half-open share. Default 10 s. */
  halfOpenIdleMs?: number;
  /** MPTCP token table capacity (entries). Default DEFAULT_TOKEN_CAPACITY. */
  tokenCapacity?: number;
  /** Client-affinity table capacity (entries). Default DEFAULT_AFFINITY_CAPACITY. */
  affinityCapacity?: number;
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
  readonly counters: Float64Array = newCounters();
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
  #publishNow: PublishNowFn | null = null;
  readonly #affinityKey = new Uint32Array(4);
  readonly #keyScratch = new Uint8Array(FLOW_KEY_MAX_BYTES);
  /** The flow an ICMP message belongs to (quoted flow of an error, echo key), as a parsed-packet view into the frame. */
  readonly #icmpView = new ParsedPacket();
  readonly #tooBig = new TooBigLimiter();
  /** Set when the frame written to tx goes back to the client (Sluice's "too big" reply), not to a backend. */
  #toClient = false;
  // Fragments: datagram -> backend (first fragment decides), early fragments waiting for it.
  #fragments = new FragmentTable(DEFAULT_FRAGMENT_CAPACITY, DEFAULT_FRAGMENT_TIMEOUT_MS);
  #fragHold = new FragmentHold(DEFAULT_FRAGMENT_HOLD_MS);
  readonly #datagram = new Uint32Array(FRAGMENT_KEY_WORDS);
  #datagramHash = 0;
  /** Where released early fragments are written and how they are sent (set by the worker); null: they wait for their deadline. */
  #releaseTx: Buffer | null = null;
  #releaseSend: SendFn | null = null;
  #vlanEgress = VLAN_UNTAGGED;

  // Generation-wide egress facts.
  readonly #egressMac = new Uint8Array(6);
  #egressMtu = 1500;
  readonly #src4 = new Uint8Array(4);
  readonly #src6 = new Uint8Array(16);
  #hasSrc4 = false;
  #hasSrc6 = false;
  #hashSeed = 0;
  #generation = 0;
  #ipId = 0;

  constructor(opts: ForwarderOptions) {
    this.flows = new FlowTable(opts.flowCapacity, { tcpIdleMs: opts.tcpIdleMs, tcpClosingMs: opts.tcpClosingMs, udpIdleMs: opts.udpIdleMs, halfOpenMs: opts.halfOpenIdleMs });
    this.counters[G.flowCapacity] = this.flows.capacity;
    this.tokens = new MptcpTokenTable({ capacity: opts.tokenCapacity ?? DEFAULT_TOKEN_CAPACITY, idleTimeoutMs: opts.tcpIdleMs });
    this.affinity = new AffinityTable(opts.affinityCapacity ?? DEFAULT_AFFINITY_CAPACITY);
    this.#flowTokens = new FlowTokens(this.flows);
    this.#hold = new OwnerHold({
      counters: this.counters,
      flows: this.flows,
      tokens: this.tokens,
      flowTokens: this.#flowTokens,
      services: this.#services,
      backends: this.#backends,
      flowCreated: (slot, sid, be, publishJoin) => this.#flowCreated(slot, sid, be, publishJoin),
      replay: (frame, len, tx, nowMs) => this.#pipeline(frame, len, tx, nowMs),
    });
  }

  /** Turn owner queries on (cluster with sync) or off. */
  setOwnerQuery(fn: OwnerQueryFn | null, holdPerQuery = DEFAULT_HOLD_PACKETS): void {
    this.#hold.configure(fn, holdPerQuery);
  }

  /** Publish learned tokens and steered join subflows as they happen (cluster with sync), or not. */
  setPublishNow(fn: PublishNowFn | null): void {
    this.#publishNow = fn;
  }

  /**
   * Where early fragments go when their first fragment arrives: written to `tx`, sent by `send`
   * at once (the first fragment itself leaves through the engine's batch).
   */
  setFragmentRelease(tx: Buffer | null, send: SendFn | null): void {
    this.#releaseTx = tx;
    this.#releaseSend = send;
  }

  get pendingQueries(): number {
    return this.#hold.pending;
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
    this.#egressMac.set(spec.egressMac);
    this.#egressMtu = spec.egressMtu;
    this.#hasSrc4 = spec.encapSource4 !== null;
    if (spec.encapSource4) this.#src4.set(spec.encapSource4);
    this.#hasSrc6 = spec.encapSource6 !== null;
    if (spec.encapSource6) this.#src6.set(spec.encapSource6);
    this.#hashSeed = spec.hashSeed >>> 0;
    this.flows.setHashSeed(this.#hashSeed);
    this.#generation = spec.generation;
    const ve = spec.vlanEgress ?? 'untagged';
    this.#vlanEgress = ve === 'untagged' ? VLAN_UNTAGGED : ve === 'keep' ? VLAN_KEEP : ve & 0xfff;
    const fc = spec.fragments;
    if (fc !== undefined && (fc.capacity !== this.#fragments.capacity || fc.timeoutMs !== this.#fragments.timeoutMs)) {
      this.#fragments = new FragmentTable(fc.capacity, fc.timeoutMs);
    }
    if (fc !== undefined && fc.holdMs !== this.#fragHold.holdMs && this.#fragHold.count === 0) this.#fragHold = new FragmentHold(fc.holdMs);
    // Datagrams in flight keep their entries: a later fragment checks that its backend still belongs to the service.
    this.counters[G.generation] = spec.generation;

    let dropped = 0;
    this.flows.forEachSlot((slot) => {
      const be = this.flows.backendOf(slot);
      if (isPending(be)) return; // its owner query is in flight
      if (!this.#backends.belongsTo(be, this.flows.serviceOf(slot))) {
        this.flows.remove(slot);
        dropped++;
      }
    });
    this.counters[G.flowsRemapped] += dropped;
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

  /** Every step after arrival; a held frame released by its owner's answer re-runs it from here. */
  #pipeline(rx: Buffer, len: number, tx: Buffer, nowMs: number): number {
    const p = this.#p;
    // parse
    const reason = parseFrame(rx, len, p);
    if (reason !== Drop.ok) return this.#drop(reason);
    // A later fragment has no ports: it follows its datagram's first fragment (fragment-table.ts).
    if (p.fragment === FRAG_LATER) return this.#laterFragment(rx, len, p, tx, nowMs);
    // ICMP for a VIP: its own branch (#icmp).
    if (p.protocol === IPPROTO_ICMP || p.protocol === IPPROTO_ICMPV6) return this.#icmp(rx, len, tx, nowMs);
    // match
    const sid = this.#match.match(rx, p.dstAddrOffset, p.addrLen, p.protocol, p.dstPort);
    if (sid < 0) return this.#drop(Drop.no_service);
    const mptcp = p.protocol === IPPROTO_TCP && this.#services.isMptcp(sid) ? mptcpInspect(rx, p, this.#mptcp) : MPTCP_ACTION_NONE;
    if (mptcp === MPTCP_ACTION_MALFORMED) this.counters[G.mptcpMalformed]++;
    // flow
    const hash = flowHash(rx, p, this.#hashSeed);
    let slot = this.flows.lookup(rx, p, hash, nowMs);
    if (slot >= 0) {
      const be = this.flows.backendOf(slot);
      if (isPending(be)) return this.#hold.hold(rx, len, pendingQuery(be));
      if (this.#backends.keepsFlows(be, sid)) {
        this.flows.touch(slot, nowMs, p.tcpFlags);
        this.#flowTokens.refresh(slot, nowMs, this.tokens);
      } else {
        // The backend of record left the config or went down: this flow moves to the current table.
        this.flows.remove(slot);
        this.counters[G.flowsRemapped]++;
        slot = -1;
      }
    }
    // steer
    if (slot < 0) {
      slot = this.#steer(rx, len, p, sid, mptcp, hash, nowMs);
      if (slot === DONE) return 0;
    }
    const be = this.flows.backendOf(slot);
    // Learn the connection's token before this packet leaves: the client opens joins ~1 ms later.
    if ((mptcp === MPTCP_ACTION_LEARN_V1 || mptcp === MPTCP_ACTION_LEARN_V0) && this.#flowTokens.wantsToken(slot)) {
      this.#learnToken(rx, mptcp, slot, sid, be, nowMs);
    }
    // A first fragment records its datagram's backend for the fragments that follow it.
    if (p.fragment === FRAG_FIRST && !this.#recordDatagram(rx, p, sid, be, hash, nowMs)) return this.#drop(Drop.fragment_table_full);
    const out = this.#send(rx, len, p, sid, be, tx, hash, nowMs);
    if (out > 0 && p.fragment === FRAG_FIRST && this.#fragHold.count > 0) this.#releaseEarlyFragments(sid, be, hash, nowMs);
    return out;
  }

  /** The last step of every forwarded frame: toward backend `be` of service `sid`, counted. */
  #send(rx: Buffer, len: number, p: ParsedPacket, sid: number, be: number, tx: Buffer, hash: number, nowMs: number): number {
    if (!this.#backends.hasNextHop(be)) return this.#drop(Drop.no_neighbor);
    const out = this.#services.isIpip(sid) ? this.#encapsulate(rx, p, be, tx, hash, nowMs) : this.#rewrite(rx, len, p, be, tx);
    if (out === 0 || this.#backToClient()) return out;
    const c = this.counters;
    c[serviceCounter(sid, ENTITY.packets)]++;
    c[serviceCounter(sid, ENTITY.bytes)] += len;
    c[backendCounter(be, ENTITY.packets)]++;
    c[backendCounter(be, ENTITY.bytes)] += len;
    return out;
  }

  // ---- fragments ------------------------------------------------------------------------------

  /** A first fragment was steered to `be`: remember it for the datagram. False: the table window is full. */
  #recordDatagram(rx: Buffer, p: ParsedPacket, sid: number, be: number, hash: number, nowMs: number): boolean {
    const key = this.#datagram;
    const h = datagramKey(rx, p, key);
    this.#datagramHash = h;
    if (this.#fragments.insert(key, h, nowMs, be, sid, hash) < 0) {
      this.counters[G.fragOverflow]++;
      return false;
    }
    this.counters[G.fragDatagrams]++;
    return true;
  }

  /** A fragment without ports: to its datagram's backend, or held until its first fragment comes. */
  #laterFragment(rx: Buffer, len: number, p: ParsedPacket, tx: Buffer, nowMs: number): number {
    const key = this.#datagram;
    const h = datagramKey(rx, p, key);
    const slot = this.#fragments.lookup(key, h, nowMs);
    if (slot < 0) {
      if (!this.#fragHold.hold(rx, len, key, h, nowMs)) return this.#drop(Drop.fragment_hold_full);
      this.counters[G.fragHeld]++;
      return 0;
    }
    const be = this.#fragments.backendOf(slot);
    const sid = this.#fragments.serviceOf(slot);
    if (!this.#backends.belongsTo(be, sid)) return this.#drop(Drop.no_backend);
    this.counters[G.fragMatched]++;
    return this.#send(rx, len, p, sid, be, tx, this.#fragments.flowHashOf(slot), nowMs);
  }

  /**
   * The first fragment just left for `be`: the datagram's early fragments follow it, sent at once
   * through the release sink. Re-parses each held frame into the shared ParsedPacket (the first
   * fragment's output is already written).
   */
  #releaseEarlyFragments(sid: number, be: number, hash: number, nowMs: number): void {
    const tx = this.#releaseTx;
    const send = this.#releaseSend;
    if (tx === null || send === null) return;
    const hold = this.#fragHold;
    // #recordDatagram left the datagram's key and hash in #datagram / #datagramHash.
    const key = this.#datagram;
    const h = this.#datagramHash;
    let s = hold.nextMatch(key, h, 0);
    while (s >= 0) {
      const frame = hold.frame(s);
      const len = hold.length(s);
      hold.free(s);
      if (parseFrame(frame, len, this.#p) === Drop.ok) {
        this.counters[G.fragReleased]++;
        const out = this.#send(frame, len, this.#p, sid, be, tx, hash, nowMs);
        if (out > 0) send(out);
      }
      s = hold.nextMatch(key, h, s + 1);
    }
  }

  /**
   * A frame with no flow here: choose its backend and record the flow. In order: an MP_JOIN
   * follows its connection's token; a packet of a connection another instance may own asks that
   * owner (and is held); anything else takes client affinity or the Maglev table. Returns the new
   * flow's slot, or DONE when the frame was dropped or held.
   */
  #steer(rx: Buffer, len: number, p: ParsedPacket, sid: number, mptcp: number, hash: number, nowMs: number): number {
    const c = this.counters;
    let be = -1;
    let token = -1;
    if (mptcp === MPTCP_ACTION_JOIN_SYN) {
      // A new subflow of an MPTCP connection: it belongs wherever that connection lives.
      token = mptcpActionToken(rx, mptcp, this.#mptcp);
      const owner = this.tokens.lookup(token, nowMs);
      if (owner >= 0 && this.#backends.belongsTo(owner, sid)) {
        be = owner;
        c[G.mptcpJoinsSteered]++;
      } else {
        // Another instance may have learned this connection: ask the token's owner.
        const q = this.#hold.ask(rx, p, hash, sid, QUERY_TOKEN, token, this.#generation, nowMs);
        if (q >= 0) return this.#holdUntilAnswered(rx, len, q);
        c[G.mptcpJoinsUnknown]++;
        if (!this.#services.hashesUnknownJoins(sid)) return this.#done(Drop.mptcp_join_unknown_token);
        token = -1;
      }
    } else if (p.protocol === IPPROTO_TCP && (p.tcpFlags & TCP_SYN) === 0) {
      // Mid-connection packet we have no state for (ECMP moved it here, or we restarted): ask its owner.
      const q = this.#hold.ask(rx, p, hash, sid, QUERY_FLOW, 0, this.#generation, nowMs);
      if (q >= 0) return this.#holdUntilAnswered(rx, len, q);
    }
    if (be < 0) {
      const table = this.#services.tableOf(sid);
      if (table === null) return this.#done(Drop.no_backend);
      be = this.#services.hasAffinity(sid) ? this.#affinityBackend(rx, p, sid, table, nowMs) : table[hash % table.length];
      if (be < 0) return this.#done(Drop.no_backend);
    }
    const slot = this.flows.insert(rx, p, hash, nowMs, be, sid, this.#generation);
    this.flows.touch(slot, nowMs, p.tcpFlags);
    this.#flowTokens.reset(slot, token, nowMs);
    this.#flowCreated(slot, sid, be, token >= 0);
    return slot;
  }

  /** A flow just recorded on `be`: count it; a join steered by its token is published at once (its owner must know). */
  #flowCreated(slot: number, sid: number, be: number, publishJoin: boolean): void {
    const c = this.counters;
    c[G.flowsCreated]++;
    c[serviceCounter(sid, ENTITY.flowsCreated)]++;
    c[backendCounter(be, ENTITY.flowsCreated)]++;
    if (publishJoin && this.#publishNow !== null) {
      // Control-side work, once per subflow: the key is copied for the control process.
      const len = this.flows.keyOf(slot, this.#keyScratch);
      this.#publishNow(QUERY_FLOW, this.#keyScratch.slice(0, len), be);
      c[G.flowsPublished]++;
    }
  }

  /** The key-carrying ACK of an MPTCP connection: learn its token for the flow's backend (a collision is decided once per flow). */
  #learnToken(rx: Buffer, mptcp: number, slot: number, sid: number, be: number, nowMs: number): void {
    const token = mptcpActionToken(rx, mptcp, this.#mptcp);
    const r = this.tokens.learn(token, be, sid, this.#mptcp.version, nowMs);
    this.#flowTokens.record(slot, token, r === LEARN_COLLISION, nowMs);
    if (r !== LEARN_NEW) return;
    this.counters[mptcp === MPTCP_ACTION_LEARN_V1 ? G.mptcpLearnedV1 : G.mptcpLearnedV0]++;
    if (this.#publishNow !== null) {
      this.#publishNow(QUERY_TOKEN, tokenKey(token), be);
      this.counters[G.flowsPublished]++;
    }
  }

  /**
   * Client affinity: the backend of record for the client's prefix, else Maglev over a hash of
   * the prefix (so every instance picks the same backend for a client without sharing state).
   */
  #affinityBackend(rx: Buffer, p: ParsedPacket, sid: number, table: Int32Array, nowMs: number): number {
    const key = this.#affinityKey;
    maskedSource(rx, p.srcAddrOffset, p.addrLen, this.#services.affinityPrefix(sid, p.addrLen), key);
    const h = fmix32(fmix32(fmix32(fmix32(fmix32(this.#hashSeed ^ this.#services.stableHash(sid)) ^ key[0]) ^ key[1]) ^ key[2]) ^ key[3]);
    const known = this.affinity.lookup(sid, key, h, nowMs, this.#services.affinityTimeoutMs(sid));
    if (known >= 0 && this.#backends.belongsTo(known, sid) && this.#backends.isServing(known)) return known;
    const be = table[h % table.length];
    if (be >= 0) this.affinity.set(sid, key, h, be, nowMs);
    return be;
  }

  /**
   * dsr-l2: the frame unchanged but for its MAC addresses and its VLAN tagging, which is the
   * egress segment's (vlan.egress): untagged (every tag removed), one configured tag, or the
   * frame's own tags kept.
   */
  #rewrite(rx: Buffer, len: number, p: ParsedPacket, be: number, tx: Buffer): number {
    // Never hand a frame back to the station it came from.
    if (this.#backends.isNextHopMac(be, rx, 6)) return this.#drop(Drop.loop);
    const tagged = p.l3Offset > ETH_HEADER;
    const policy = this.#vlanEgress;
    if (policy === VLAN_KEEP || (policy === VLAN_UNTAGGED && !tagged)) {
      rx.copy(tx, 0, 0, len);
      this.#writeMacs(be, tx);
      return len;
    }
    // MACs, the egress tag if any, the frame's innermost EtherType (just before its IP header), the rest.
    const o = this.#writeEgressTag(tx, tagged);
    tx[o] = rx[p.l3Offset - 2];
    tx[o + 1] = rx[p.l3Offset - 1];
    rx.copy(tx, o + 2, p.l3Offset, len);
    this.#writeMacs(be, tx);
    return o + 2 + len - p.l3Offset;
  }

  /**
   * Writes the egress 802.1Q tag at tx[12..16) when vlan.egress names a VLAN, and counts what
   * became of the ingress tags. Returns the offset of the EtherType that follows.
   */
  #writeEgressTag(tx: Buffer, ingressTagged: boolean): number {
    const vid = this.#vlanEgress;
    if (ingressTagged) this.counters[G.vlanStripped]++;
    if (vid < 0) return 12;
    tx[12] = 0x81;
    tx[13] = 0x00;
    tx[14] = (vid >>> 8) & 0x0f;
    tx[15] = vid & 0xff;
    this.counters[G.vlanTagged]++;
    return 16;
  }

  /** ipip: a new Ethernet + outer IP header toward the backend, then the client's IP packet. */
  #encapsulate(rx: Buffer, p: ParsedPacket, be: number, tx: Buffer, hash: number, nowMs: number): number {
    const dst = this.#backends.address(be);
    const v4 = dst !== null && dst.length === 4;
    if (dst === null || (v4 ? !this.#hasSrc4 : !this.#hasSrc6)) return this.#drop(Drop.no_backend);
    const outerLen = encapHeaderLen(dst.length);
    const innerLen = p.l3Length;
    // The new Ethernet header: untagged, or the egress VLAN's tag ('keep' has no tag to keep here).
    const ethLen = this.#vlanEgress >= 0 ? ETH_HEADER + 4 : ETH_HEADER;
    if (outerLen + innerLen > this.#egressMtu) return this.#replyTooBig(rx, p, tx, this.#egressMtu - outerLen, nowMs);
    if (ethLen + outerLen + innerLen > tx.length) return this.#drop(Drop.encap_too_big);
    this.#writeMacs(be, tx);
    const o = this.#vlanEgress >= 0 || p.l3Offset > ETH_HEADER ? this.#writeEgressTag(tx, p.l3Offset > ETH_HEADER) : 12;
    tx[o] = v4 ? 0x08 : 0x86;
    tx[o + 1] = v4 ? 0x00 : 0xdd;
    // IPv4: a fresh identification per packet; IPv6: a flow label per flow, so routers keep a flow on one path.
    this.#ipId = (this.#ipId + 1) & 0xffff;
    writeEncap(tx, ethLen, v4 ? this.#src4 : this.#src6, dst, p.ipVersion, innerLen, ENCAP_TTL, v4 ? this.#ipId : hash & 0xfffff);
    rx.copy(tx, ethLen + outerLen, p.l3Offset, p.l3Offset + innerLen);
    return ethLen + outerLen + innerLen;
  }

  // ---- ICMP for a VIP (icmp-steer.ts builds the views, packet/icmp-build.ts the replies) ----

  /**
   * An ICMP message to a VIP. An error goes to the backend of the flow it quotes: the tracked
   * flow, else the pick a data packet of that flow would get (affinity or Maglev over the same
   * 5-tuple hash), so every instance agrees; no flow is created for it. An echo request is
   * answered here, forwarded (hashed on addresses + echo id) or dropped, per the VIP's first
   * service. Either is forwarded like data (dsr-l2 or ipip).
   */
  #icmp(rx: Buffer, len: number, tx: Buffer, nowMs: number): number {
    const p = this.#p;
    const c = this.counters;
    const kind = icmpKind(p);
    if (kind === ICMP_OTHER) return this.#drop(Drop.icmp_unhandled_type);
    const v = this.#icmpView;
    let sid: number;
    let be = -1;
    if (kind === ICMP_ECHO) {
      sid = this.#match.match(rx, p.dstAddrOffset, p.addrLen, p.protocol, 0);
      if (sid < 0) return this.#drop(Drop.no_service);
      const policy = this.#services.echoPolicy(sid);
      if (policy === ECHO_DROP) {
        c[G.icmpEchoDropped]++;
        return this.#drop(Drop.icmp_echo_refused);
      }
      if (policy === ECHO_REPLY) {
        const out = writeEchoReply(rx, p, tx);
        if (out === 0) return this.#drop(Drop.oversize_frame);
        c[G.icmpEchoReplied]++;
        return out;
      }
      echoFlow(p, v);
    } else {
      quotedFlow(p, v);
      sid = this.#match.match(rx, v.dstAddrOffset, v.addrLen, v.protocol, v.dstPort);
      if (sid < 0) return this.#drop(Drop.icmp_no_service);
      if (!this.#services.forwardsIcmpErrors(sid)) return this.#drop(Drop.icmp_errors_off);
    }
    const hash = flowHash(rx, v, this.#hashSeed);
    if (kind === ICMP_ERROR) {
      const slot = this.flows.lookup(rx, v, hash, nowMs);
      if (slot >= 0) {
        const known = this.flows.backendOf(slot);
        // Its flow's owner is being asked: the message waits with the flow's own packets.
        if (isPending(known)) return this.#hold.hold(rx, len, pendingQuery(known));
        if (this.#backends.keepsFlows(known, sid)) be = known;
      }
    }
    if (be < 0) {
      const table = this.#services.tableOf(sid);
      if (table === null) return this.#drop(Drop.no_backend);
      be = kind === ICMP_ERROR && this.#services.hasAffinity(sid) ? this.#affinityBackend(rx, v, sid, table, nowMs) : table[hash % table.length];
      if (be < 0) return this.#drop(Drop.no_backend);
    }
    if (!this.#backends.hasNextHop(be)) return this.#drop(Drop.no_neighbor);
    const out = this.#services.isIpip(sid) ? this.#encapsulate(rx, p, be, tx, hash, nowMs) : this.#rewrite(rx, len, p, be, tx);
    if (out === 0 || this.#backToClient()) return out;
    c[kind === ICMP_ECHO ? G.icmpEchoForwarded : errorCounter(p)]++;
    c[serviceCounter(sid, ENTITY.packets)]++;
    c[serviceCounter(sid, ENTITY.bytes)] += len;
    c[backendCounter(be, ENTITY.packets)]++;
    c[backendCounter(be, ENTITY.bytes)] += len;
    return out;
  }

  /**
   * An ipip packet too big for the egress MTU once encapsulated: the packet is dropped
   * (encap_too_big) and its sender told the usable MTU, rate-limited. IPv4 with DF gets
   * fragmentation needed as routers send it; IPv4 without DF gets it too (a sender's kernel
   * records the path MTU and fragments its next datagrams itself), rather than Sluice emitting
   * two outer fragments per frame. No reply to an ICMP error (RFC 1122 3.2.2).
   */
  #replyTooBig(rx: Buffer, p: ParsedPacket, tx: Buffer, mtu: number, nowMs: number): number {
    this.#drop(Drop.encap_too_big);
    if ((p.protocol === IPPROTO_ICMP || p.protocol === IPPROTO_ICMPV6) && icmpKind(p) !== ICMP_ECHO) return 0;
    if (!this.#tooBig.take(nowMs)) {
      this.counters[G.icmpTooBigRateLimited]++;
      return 0;
    }
    const out = writeTooBig(rx, p, mtu, tx);
    if (out === 0) return 0;
    this.counters[G.icmpTooBigSent]++;
    this.#toClient = true;
    return out;
  }

  /** True (once) when the frame just written goes back to the client rather than to a backend. */
  #backToClient(): boolean {
    const r = this.#toClient;
    this.#toClient = false;
    return r;
  }

  /** Ethernet addresses of an outgoing frame: to the backend's next hop, from the egress interface. */
  #writeMacs(be: number, tx: Buffer): void {
    this.#backends.writeNextHopMac(be, tx, 0);
    const mac = this.#egressMac;
    for (let i = 0; i < 6; i++) tx[6 + i] = mac[i];
  }

  /** The frame waits for its owner's answer (or is a counted hold_overflow). */
  #holdUntilAnswered(rx: Buffer, len: number, q: number): number {
    this.#hold.hold(rx, len, q);
    return DONE;
  }

  #done(reason: number): number {
    this.#drop(reason);
    return DONE;
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
   * The owner's answer to query `queryId` (a backend id of this instance, or -1: unknown): the
   * flow is recorded and the frames it held are forwarded; `send` transmits each one written to `tx`.
   */
  answer(queryId: number, backendId: number, nowMs: number, tx: Buffer, send: SendFn): void {
    this.#hold.answer(queryId, backendId, nowMs, tx, send);
  }

  /** Queries past their deadline get the table's answer (the control plane did not reply in time). */
  expireQueries(nowMs: number, tx: Buffer, send: SendFn): void {
    this.#hold.expire(nowMs, tx, send);
    this.expireFragments(nowMs);
  }

  /** Early fragments whose first fragment did not come within the hold time: counted drops. */
  expireFragments(nowMs: number): void {
    const n = this.#fragHold.expire(nowMs);
    if (n === 0) return;
    this.counters[G.fragExpired] += n;
    this.counters[DROPS_BASE + Drop.fragment_unmatched] += n;
  }

  /**
   * Entries other instances need around a change (DESIGN.md "Several instances"): every live flow
   * whose backend differs from what the current table would pick for it, and every MPTCP token.
   * Control-side work (allocates); called after a generation change and on a refresh timer.
   */
  publishable(nowMs: number, emit: (kind: number, key: Uint8Array, backendId: number) => void): number {
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
    for (const t of this.tokens.entries(nowMs)) {
      emit(QUERY_TOKEN, tokenKey(t.token), t.backendId);
      n++;
    }
    this.counters[G.flowsPublished] += n;
    return n;
  }

  /** Timer work: expire idle flows a bounded slice at a time; refresh gauges. */
  tick(nowMs: number, sweepSlots: number): void {
    this.flows.sweep(nowMs, sweepSlots);
    const c = this.counters;
    this.#fragments.sweep(nowMs, sweepSlots >>> 2);
    c[G.fragTableEntries] = this.#fragments.size;
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
