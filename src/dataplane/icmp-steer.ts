/**
 * ICMP for a VIP: what the forwarder does with each message, and the views it steers them by.
 *
 * - An error (v4 destination unreachable incl. fragmentation needed, time exceeded; v6 packet
 *   too big, destination unreachable, time exceeded) quotes a packet that left a VIP. It belongs
 *   to that packet's flow: `quotedFlow()` turns the quote around into the flow as the client
 *   sent it (client -> VIP), so the flow table and the Maglev hash see exactly the key a data
 *   packet of that flow has, and every instance picks the same backend.
 * - An echo request is answered, forwarded (hashed on addresses + echo id) or dropped, per the
 *   first service configured on the VIP (ICMP has no port: the VIP decides, through its first
 *   service).
 * - Anything else (echo replies, redirects, router advertisements to a VIP...) is not for us.
 *
 * Sluice's own "too big" replies for ipip are rate-limited by TooBigLimiter.
 */
import {
  ICMP4_CODE_FRAG_NEEDED,
  ICMP4_DEST_UNREACH,
  ICMP4_ECHO_REQUEST,
  ICMP4_TIME_EXCEEDED,
  ICMP6_DEST_UNREACH,
  ICMP6_ECHO_REQUEST,
  ICMP6_PACKET_TOO_BIG,
  ICMP6_TIME_EXCEEDED,
  ParsedPacket,
} from '../packet/parsed-packet.js';
import { G } from './contract/counters.js';

/** What an ICMP message to a VIP is. */
export const ICMP_OTHER = 0;
export const ICMP_ERROR = 1;
export const ICMP_ECHO = 2;

/** Per-service echo policy (`icmpEcho`), as stored in ServiceRecords. */
export const ECHO_REPLY = 0;
export const ECHO_FORWARD = 1;
export const ECHO_DROP = 2;

export function echoPolicyCode(policy: 'reply' | 'forward' | 'drop' | undefined): number {
  return policy === 'forward' ? ECHO_FORWARD : policy === 'drop' ? ECHO_DROP : ECHO_REPLY;
}

/** Classify a parsed ICMP/ICMPv6 message. An error counts as one only when the parser read its quote. */
export function icmpKind(p: ParsedPacket): number {
  const t = p.icmpType;
  if (p.ipVersion === 4) {
    if (t === ICMP4_ECHO_REQUEST) return ICMP_ECHO;
    if ((t === ICMP4_DEST_UNREACH || t === ICMP4_TIME_EXCEEDED) && p.innerL3Offset !== 0) return ICMP_ERROR;
    return ICMP_OTHER;
  }
  if (t === ICMP6_ECHO_REQUEST) return ICMP_ECHO;
  if ((t === ICMP6_DEST_UNREACH || t === ICMP6_PACKET_TOO_BIG || t === ICMP6_TIME_EXCEEDED) && p.innerL3Offset !== 0) return ICMP_ERROR;
  return ICMP_OTHER;
}

/** The counter an error forwarded to a backend adds to: too-big (v4 frag needed, v6 packet too big), unreachable or time exceeded. */
export function errorCounter(p: ParsedPacket): number {
  const t = p.icmpType;
  if (p.ipVersion === 4) {
    if (t === ICMP4_TIME_EXCEEDED) return G.icmpTimeExceededForwarded;
    return p.icmpCode === ICMP4_CODE_FRAG_NEEDED ? G.icmpTooBigForwarded : G.icmpUnreachForwarded;
  }
  if (t === ICMP6_TIME_EXCEEDED) return G.icmpTimeExceededForwarded;
  return t === ICMP6_PACKET_TOO_BIG ? G.icmpTooBigForwarded : G.icmpUnreachForwarded;
}

/**
 * Write into `view` the flow an ICMP error quotes, as the client sends it: source = the quote's
 * destination (the client), destination = the quote's source (the VIP), ports likewise swapped.
 * Only the fields flowHash, FlowTable.lookup and the affinity key read are set.
 */
export function quotedFlow(p: ParsedPacket, view: ParsedPacket): void {
  view.ipVersion = p.ipVersion;
  view.addrLen = p.addrLen;
  view.protocol = p.innerProtocol;
  view.srcAddrOffset = p.innerDstAddrOffset;
  view.dstAddrOffset = p.innerSrcAddrOffset;
  view.srcPort = p.innerDstPort;
  view.dstPort = p.innerSrcPort;
  view.tcpFlags = 0;
}

/** Write into `view` the key an echo request is hashed on: its addresses, its protocol and the echo id (in the source port). */
export function echoFlow(p: ParsedPacket, view: ParsedPacket): void {
  view.ipVersion = p.ipVersion;
  view.addrLen = p.addrLen;
  view.protocol = p.protocol;
  view.srcAddrOffset = p.srcAddrOffset;
  view.dstAddrOffset = p.dstAddrOffset;
  view.srcPort = p.icmpId;
  view.dstPort = 0;
  view.tcpFlags = 0;
}

/** Default rate of Sluice's own "too big" replies, per instance. */
export const TOO_BIG_PER_SECOND = 100;

/**
 * Token bucket for the "too big" replies (RFC 4443 2.4(f) asks every ICMP error source to limit
 * its rate): `perSecond` tokens a second, a burst of as many. No allocation per call.
 */
export class TooBigLimiter {
  #tokens: number;
  #lastMs = 0;
  readonly #perSecond: number;

  constructor(perSecond = TOO_BIG_PER_SECOND) {
    this.#perSecond = perSecond;
    this.#tokens = perSecond;
  }

  /** True if a reply may be sent at nowMs (and takes its token). */
  take(nowMs: number): boolean {
    const elapsed = nowMs - this.#lastMs;
    if (elapsed > 0) {
      this.#tokens = Math.min(this.#perSecond, this.#tokens + (elapsed * this.#perSecond) / 1000);
      this.#lastMs = nowMs;
    }
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}
