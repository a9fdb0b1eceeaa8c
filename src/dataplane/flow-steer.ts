/**
 * The pipeline's steer step: a frame with no flow here gets its backend and its flow record. An
 * MP_JOIN follows its connection's token; a packet of a connection another instance may own asks
 * that owner (owner-hold.ts); anything else takes client affinity or the Maglev table. Also the
 * MPTCP token learned from a connection's key-carrying ACK, and the entries published at once to
 * the other instances. Everything per packet is preallocated: no allocation, promise or closure.
 */
import { Drop } from '../packet/drop-reasons.js';
import { IPPROTO_TCP, IPPROTO_UDP, TCP_SYN, type ParsedPacket } from '../packet/parsed-packet.js';
import type { MptcpInfo } from '../packet/mptcp-options.js';
import { tokenKey } from '../packet/token-key.js';
import { fmix32, FLOW_KEY_MAX_BYTES } from '../hash/murmur3.js';
import { DROPS_BASE, ENTITY, G, backendCounter, serviceCounter } from './contract/counters.js';
import type { FlowTable } from './flow-table.js';
import { maskedSource, type AffinityTable } from './affinity-table.js';
import type { ServiceRecords } from './service-records.js';
import type { BackendSlots } from './backend-slots.js';
import type { FlowTokens } from './flow-tokens.js';
import { QUERY_FLOW, QUERY_TOKEN, type OwnerHold, type PublishNowFn } from './owner-hold.js';
import { LEARN_COLLISION, LEARN_NEW, MPTCP_ACTION_JOIN_SYN, MPTCP_ACTION_LEARN_V1, mptcpActionToken, type MptcpTokenTable } from './mptcp-tokens.js';

/** What steer() returns when it ended the frame (dropped and counted, or held): send nothing. */
export const STEER_DONE = -1;

/** What the steer step needs of the forwarder it serves. */
export interface FlowSteerHost {
  readonly counters: Float64Array;
  readonly flows: FlowTable;
  readonly tokens: MptcpTokenTable;
  readonly flowTokens: FlowTokens;
  readonly affinity: AffinityTable;
  readonly services: ServiceRecords;
  readonly backends: BackendSlots;
  /** The forwarder's MPTCP option view, filled by mptcpInspect for the current frame. */
  readonly mptcp: MptcpInfo;
  readonly hold: OwnerHold;
  /** The generation's flow-hash seed and number. */
  hashSeed(): number;
  generation(): number;
}

export class FlowSteer {
  readonly #host: FlowSteerHost;
  #publishNow: PublishNowFn | null = null;
  readonly #affinityKey = new Uint32Array(4);
  readonly #keyScratch = new Uint8Array(FLOW_KEY_MAX_BYTES);

  constructor(host: FlowSteerHost) {
    this.#host = host;
  }

  /** Publish learned tokens and steered join subflows as they happen (cluster with sync), or not. */
  setPublishNow(fn: PublishNowFn | null): void {
    this.#publishNow = fn;
  }

  /**
   * A frame with no flow here: choose its backend and record the flow. In order: an MP_JOIN
   * follows its connection's token; a packet of a connection another instance may own asks that
   * owner (and is held); anything else takes client affinity or the Maglev table. Returns the new
   * flow's slot, or STEER_DONE when the frame was dropped or held.
   */
  steer(rx: Buffer, len: number, p: ParsedPacket, sid: number, mptcp: number, hash: number, nowMs: number): number {
    const c = this.#host.counters;
    let be = -1;
    let token = -1;
    if (mptcp === MPTCP_ACTION_JOIN_SYN) {
      // A new subflow of an MPTCP connection: it belongs wherever that connection lives.
      token = mptcpActionToken(rx, mptcp, this.#host.mptcp);
      const owner = this.#host.tokens.lookup(token, nowMs);
      if (owner >= 0 && this.#host.backends.belongsTo(owner, sid)) {
        be = owner;
        c[G.mptcpJoinsSteered]++;
      } else {
        // Another instance may have learned this connection: ask the token's owner.
        const q = this.#host.hold.ask(rx, p, hash, sid, QUERY_TOKEN, token, this.#host.generation(), nowMs);
        if (q >= 0) return this.#holdUntilAnswered(rx, len, q);
        c[G.mptcpJoinsUnknown]++;
        if (!this.#host.services.hashesUnknownJoins(sid)) return this.#done(Drop.mptcp_join_unknown_token);
        token = -1;
      }
    } else if (p.protocol === IPPROTO_TCP && (p.tcpFlags & TCP_SYN) === 0) {
      // Mid-connection packet we have no state for (ECMP moved it here, or we restarted): ask its owner.
      const q = this.#host.hold.ask(rx, p, hash, sid, QUERY_FLOW, 0, this.#host.generation(), nowMs);
      if (q >= 0) return this.#holdUntilAnswered(rx, len, q);
    } else if (p.protocol === IPPROTO_UDP && this.#host.hold.changeRecent(nowMs)) {
      // UDP has no first packet to tell a new flow from a moved one. In steady state every
      // instance's table picks a flow's backend of record, so UDP asks no one; only while a table
      // change is recent in the cluster may another instance hold this flow on another backend.
      const q = this.#host.hold.ask(rx, p, hash, sid, QUERY_FLOW, 0, this.#host.generation(), nowMs);
      if (q >= 0) {
        c[G.ownerQueriesUdp]++;
        return this.#holdUntilAnswered(rx, len, q);
      }
    }
    if (be < 0) {
      const table = this.#host.services.tableOf(sid);
      if (table === null) return this.#done(Drop.no_backend);
      be = this.#host.services.hasAffinity(sid) ? this.affinityBackend(rx, p, sid, table, nowMs) : table[(hash >>> 0) % table.length];
      if (be < 0) return this.#done(Drop.no_backend);
    }
    const slot = this.#host.flows.insert(rx, p, hash, nowMs, be, sid, this.#host.generation());
    this.#host.flows.touch(slot, nowMs, p.tcpFlags);
    this.#host.flowTokens.reset(slot, token, nowMs);
    this.flowCreated(slot, sid, be, token >= 0);
    return slot;
  }

  /** A flow just recorded on `be`: count it; a join steered by its token is published at once (its owner must know). */
  flowCreated(slot: number, sid: number, be: number, publishJoin: boolean): void {
    const c = this.#host.counters;
    c[G.flowsCreated]++;
    c[serviceCounter(sid, ENTITY.flowsCreated)]++;
    c[backendCounter(be, ENTITY.flowsCreated)]++;
    if (publishJoin && this.#publishNow !== null) {
      // Control-side work, once per subflow: the key is copied for the control process.
      const len = this.#host.flows.keyOf(slot, this.#keyScratch);
      this.#publishNow(QUERY_FLOW, this.#keyScratch.slice(0, len), be);
      c[G.flowsPublished]++;
    }
  }

  /** The key-carrying ACK of an MPTCP connection: learn its token for the flow's backend (a collision is decided once per flow). */
  learnToken(rx: Buffer, mptcp: number, slot: number, sid: number, be: number, nowMs: number): void {
    const token = mptcpActionToken(rx, mptcp, this.#host.mptcp);
    const r = this.#host.tokens.learn(token, be, sid, this.#host.mptcp.version, nowMs);
    this.#host.flowTokens.record(slot, token, r === LEARN_COLLISION, nowMs);
    if (r !== LEARN_NEW) return;
    this.#host.counters[mptcp === MPTCP_ACTION_LEARN_V1 ? G.mptcpLearnedV1 : G.mptcpLearnedV0]++;
    if (this.#publishNow !== null) {
      this.#publishNow(QUERY_TOKEN, tokenKey(token), be);
      this.#host.counters[G.flowsPublished]++;
    }
  }

  /**
   * Client affinity: the backend of record for the client's prefix, else Maglev over a hash of
   * the prefix (so every instance picks the same backend for a client without sharing state).
   */
  affinityBackend(rx: Buffer, p: ParsedPacket, sid: number, table: Int32Array, nowMs: number): number {
    const key = this.#affinityKey;
    maskedSource(rx, p.srcAddrOffset, p.addrLen, this.#host.services.affinityPrefix(sid, p.addrLen), key);
    const h = fmix32(fmix32(fmix32(fmix32(fmix32(this.#host.hashSeed() ^ this.#host.services.stableHash(sid)) ^ key[0]) ^ key[1]) ^ key[2]) ^ key[3]);
    const known = this.#host.affinity.lookup(sid, key, h, nowMs, this.#host.services.affinityTimeoutMs(sid));
    if (known >= 0 && this.#host.backends.belongsTo(known, sid) && this.#host.backends.isServing(known)) return known;
    const be = table[h % table.length];
    if (be >= 0) this.#host.affinity.set(sid, key, h, be, nowMs);
    return be;
  }

  /** The frame waits for its owner's answer (or is a counted hold_overflow). */
  #holdUntilAnswered(rx: Buffer, len: number, q: number): number {
    this.#host.hold.hold(rx, len, q);
    return STEER_DONE;
  }

  #done(reason: number): number {
    this.#host.counters[DROPS_BASE + reason]++;
    return STEER_DONE;
  }
}
