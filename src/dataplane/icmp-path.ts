/**
 * The forwarder's ICMP branch: ICMP for a VIP (icmp-steer.ts builds the views, packet/icmp-build.ts
 * the replies), and the rate-limited "too big" reply to a client whose packet cannot be
 * encapsulated within the egress MTU. Everything is preallocated: no allocation, promise or
 * closure per packet.
 */
import { Drop } from '../packet/drop-reasons.js';
import { IPPROTO_ICMP, IPPROTO_ICMPV6, ParsedPacket } from '../packet/parsed-packet.js';
import { writeEchoReply, writeTooBig } from '../packet/icmp-build.js';
import { flowHashBits } from '../hash/murmur3.js';
import { DROPS_BASE, ENTITY, G, backendCounter, serviceCounter } from './contract/counters.js';
import type { FlowTable } from './flow-table.js';
import type { ServiceTable } from './service-table.js';
import type { ServiceRecords } from './service-records.js';
import type { BackendSlots } from './backend-slots.js';
import { isPending, pendingQuery, type OwnerHold } from './owner-hold.js';
import { ECHO_DROP, ECHO_REPLY, ICMP_ECHO, ICMP_ERROR, ICMP_OTHER, TooBigLimiter, echoFlow, errorCounter, icmpKind, quotedFlow } from './icmp-steer.js';

/** What the ICMP branch needs of the forwarder it serves. */
export interface IcmpPathHost {
  readonly counters: Float64Array;
  readonly match: ServiceTable;
  readonly services: ServiceRecords;
  readonly backends: BackendSlots;
  readonly flows: FlowTable;
  readonly hold: OwnerHold;
  /** The generation's flow-hash seed. */
  hashSeed(): number;
  /** Client affinity's backend for the flow `p` describes (Forwarder's pick for a data packet). */
  affinityBackend(rx: Buffer, p: ParsedPacket, sid: number, table: Int32Array, nowMs: number): number;
  /** dsr-l2 rewrite or ipip encapsulation toward `be`, uncounted; returns bytes written to tx, or 0 (dropped, counted). */
  deliver(rx: Buffer, len: number, p: ParsedPacket, sid: number, be: number, tx: Buffer, hash: number, nowMs: number): number;
}

export class IcmpPath {
  readonly #host: IcmpPathHost;
  /** The flow an ICMP message belongs to (quoted flow of an error, echo key), as a parsed-packet view into the frame. */
  readonly #view = new ParsedPacket();
  readonly #tooBig = new TooBigLimiter();
  /** Set when the frame written to tx goes back to the client (Sluice's "too big" reply), not to a backend. */
  #toClient = false;

  constructor(host: IcmpPathHost) {
    this.#host = host;
  }

  /**
   * An ICMP message to a VIP. An error goes to the backend of the flow it quotes: the tracked
   * flow, else the pick a data packet of that flow would get (affinity or Maglev over the same
   * 5-tuple hash), so every instance agrees; no flow is created for it. An echo request is
   * answered here, forwarded (hashed on addresses + echo id) or dropped, per the VIP's first
   * service. Either is forwarded like data (dsr-l2 or ipip).
   */
  forward(rx: Buffer, len: number, p: ParsedPacket, tx: Buffer, nowMs: number): number {
    const host = this.#host;
    const c = host.counters;
    const kind = icmpKind(p);
    if (kind === ICMP_OTHER) return this.#drop(Drop.icmp_unhandled_type);
    const v = this.#view;
    let sid: number;
    let be = -1;
    if (kind === ICMP_ECHO) {
      sid = host.match.match(rx, p.dstAddrOffset, p.addrLen, p.protocol, 0);
      if (sid < 0) return this.#drop(Drop.no_service);
      const policy = host.services.echoPolicy(sid);
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
      sid = host.match.match(rx, v.dstAddrOffset, v.addrLen, v.protocol, v.dstPort);
      if (sid < 0) return this.#drop(Drop.icmp_no_service);
      if (!host.services.forwardsIcmpErrors(sid)) return this.#drop(Drop.icmp_errors_off);
    }
    const hash = flowHashBits(rx, v, host.hashSeed());
    if (kind === ICMP_ERROR) {
      const slot = host.flows.lookup(rx, v, hash, nowMs);
      if (slot >= 0) {
        const known = host.flows.backendOf(slot);
        // Its flow's owner is being asked: the message waits with the flow's own packets.
        if (isPending(known)) return host.hold.hold(rx, len, pendingQuery(known));
        if (host.backends.keepsFlows(known, sid)) be = known;
      }
    }
    if (be < 0) {
      const table = host.services.tableOf(sid);
      if (table === null) return this.#drop(Drop.no_backend);
      be = kind === ICMP_ERROR && host.services.hasAffinity(sid) ? host.affinityBackend(rx, v, sid, table, nowMs) : table[(hash >>> 0) % table.length];
      if (be < 0) return this.#drop(Drop.no_backend);
    }
    const out = host.deliver(rx, len, p, sid, be, tx, hash, nowMs);
    if (out === 0 || this.backToClient()) return out;
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
   * fragmentation needed as routers send it; IPv4 without DF is normally sent as outer
   * fragments instead (egress.ts) and gets it only where that is not possible. No reply to an
   * ICMP error (RFC 1122 3.2.2).
   */
  replyTooBig(rx: Buffer, p: ParsedPacket, tx: Buffer, mtu: number, nowMs: number): number {
    const c = this.#host.counters;
    this.#drop(Drop.encap_too_big);
    if ((p.protocol === IPPROTO_ICMP || p.protocol === IPPROTO_ICMPV6) && icmpKind(p) !== ICMP_ECHO) return 0;
    if (!this.#tooBig.take(nowMs)) {
      c[G.icmpTooBigRateLimited]++;
      return 0;
    }
    const out = writeTooBig(rx, p, mtu, tx);
    if (out === 0) return 0;
    c[G.icmpTooBigSent]++;
    this.#toClient = true;
    return out;
  }

  /** True (once) when the frame just written goes back to the client rather than to a backend. */
  backToClient(): boolean {
    const r = this.#toClient;
    this.#toClient = false;
    return r;
  }

  #drop(reason: number): number {
    this.#host.counters[DROPS_BASE + reason]++;
    return 0;
  }
}
