/**
 * The services of the generation in force, as one named record per service id (Cilium's
 * `lb4_service` with its `lb4_svc_is_*` predicates): the forwarder asks `isIpip(sid)`,
 * `isMptcp(sid)`, `tableOf(sid)` rather than indexing parallel arrays. Storage stays in typed
 * arrays sized MAX_SERVICES, filled once per generation; every accessor is allocation-free.
 */
import type { ServiceSpec } from './contract/spec.js';
import { MAX_SERVICES } from './contract/limits.js';
import { IPPROTO_TCP } from '../packet/parsed-packet.js';
import { echoPolicyCode } from './icmp-steer.js';

const FWD_DSR = 0;
const FWD_IPIP = 1;

export class ServiceRecords {
  /** Maglev table per service (backend ids, -1 where none takes new flows); null: no such service. */
  readonly #table: (Int32Array | null)[] = new Array<Int32Array | null>(MAX_SERVICES).fill(null);
  readonly #forwarding = new Uint8Array(MAX_SERVICES);
  readonly #mptcp = new Uint8Array(MAX_SERVICES);
  /** 1: an MP_JOIN with an unknown token is balanced like a new flow; 0: dropped. */
  readonly #hashUnknownJoin = new Uint8Array(MAX_SERVICES);
  /** A hash every instance agrees on for the service (the local service id does not). */
  readonly #stableHash = new Uint32Array(MAX_SERVICES);
  readonly #affinity = new Uint8Array(MAX_SERVICES);
  readonly #affinityTimeoutMs = new Float64Array(MAX_SERVICES);
  readonly #prefix4 = new Uint8Array(MAX_SERVICES);
  readonly #prefix6 = new Uint8Array(MAX_SERVICES);
  /** icmpEcho as ECHO_REPLY / ECHO_FORWARD / ECHO_DROP (icmp-steer.ts). */
  readonly #icmpEcho = new Uint8Array(MAX_SERVICES);
  /** 1: ICMP errors quoting this service's packets are dropped (icmpErrors: "drop"). */
  readonly #icmpErrorsOff = new Uint8Array(MAX_SERVICES);
  /** For AffinityTable.sweep: made once, so a sweep allocates no closure. */
  readonly affinityTimeoutOf = (sid: number): number => this.#affinityTimeoutMs[sid];

  /** Replace every record with the generation's services (ids absent from it read as "no service"). */
  load(services: readonly ServiceSpec[]): void {
    this.#table.fill(null);
    this.#forwarding.fill(FWD_DSR);
    this.#mptcp.fill(0);
    this.#hashUnknownJoin.fill(0);
    this.#stableHash.fill(0);
    this.#affinity.fill(0);
    this.#icmpEcho.fill(0);
    this.#icmpErrorsOff.fill(0);
    for (const s of services) {
      this.#icmpEcho[s.id] = echoPolicyCode(s.icmpEcho);
      this.#icmpErrorsOff[s.id] = s.icmpErrors === 'drop' ? 1 : 0;
      this.#table[s.id] = s.table;
      this.#forwarding[s.id] = s.forwarding === 'ipip' ? FWD_IPIP : FWD_DSR;
      this.#mptcp[s.id] = s.mptcp && s.protocol === IPPROTO_TCP ? 1 : 0;
      this.#hashUnknownJoin[s.id] = s.mptcpUnknownJoin === 'hash' ? 1 : 0;
      this.#stableHash[s.id] = s.stableHash >>> 0;
      if (s.affinity) {
        this.#affinity[s.id] = 1;
        this.#affinityTimeoutMs[s.id] = s.affinity.timeoutMs;
        this.#prefix4[s.id] = s.affinity.prefix4;
        this.#prefix6[s.id] = s.affinity.prefix6;
      }
    }
  }

  /** The service's Maglev table, or null when the id is not in this generation. */
  tableOf(sid: number): Int32Array | null {
    return this.#table[sid];
  }

  /** ipip: encapsulate toward the backend; otherwise dsr-l2 (rewrite the MAC addresses). */
  isIpip(sid: number): boolean {
    return this.#forwarding[sid] === FWD_IPIP;
  }

  /** MP_JOIN SYNs are steered by token (a TCP service with `mptcp` on). */
  isMptcp(sid: number): boolean {
    return this.#mptcp[sid] === 1;
  }

  /** `mptcpUnknownJoin: "hash"`: a join whose token nobody knows is balanced like a new flow. */
  hashesUnknownJoins(sid: number): boolean {
    return this.#hashUnknownJoin[sid] === 1;
  }

  stableHash(sid: number): number {
    return this.#stableHash[sid];
  }

  /** What an echo request to the service's VIP gets: ECHO_REPLY, ECHO_FORWARD or ECHO_DROP. */
  echoPolicy(sid: number): number {
    return this.#icmpEcho[sid];
  }

  /** ICMP errors for the service's flows go to their backend (icmpErrors: "forward", the default). */
  forwardsIcmpErrors(sid: number): boolean {
    return this.#icmpErrorsOff[sid] === 0;
  }

  /** Client affinity by source prefix is on. */
  hasAffinity(sid: number): boolean {
    return this.#affinity[sid] === 1;
  }

  affinityTimeoutMs(sid: number): number {
    return this.#affinityTimeoutMs[sid];
  }

  /** The affinity prefix length for a client address of addrLen bytes (4 or 16). */
  affinityPrefix(sid: number, addrLen: number): number {
    return addrLen === 4 ? this.#prefix4[sid] : this.#prefix6[sid];
  }
}
