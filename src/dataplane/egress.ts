/**
 * The forwarder's last step: the frame toward a backend, as the service's forwarding method
 * writes it. dsr-l2 rewrites the Ethernet header (and VLAN tagging) of the client's frame; ipip
 * puts a new Ethernet + outer IP header before the client's IP packet. Holds the generation's
 * egress facts (egress MAC and MTU, encapsulation sources, vlan.egress). Nothing is counted as
 * forwarded here: the caller counts what it sent.
 */
import { Drop } from '../packet/drop-reasons.js';
import type { ParsedPacket } from '../packet/parsed-packet.js';
import { encapHeaderLen, writeEncap } from '../packet/encap.js';
import { encapFragmentPayload, writeEncapFragment } from '../packet/encap-fragment.js';
import { copyBytes } from '../packet/copy-bytes.js';
import { DROPS_BASE, G } from './contract/counters.js';
import type { DataplaneSpec } from './contract/spec.js';
import type { ServiceRecords } from './service-records.js';
import type { BackendSlots } from './backend-slots.js';
import type { SendFn } from './owner-hold.js';

const ETH_HEADER = 14;
const ENCAP_TTL = 64;
/** vlan.egress as kept here: a VLAN id (0..4095), or one of these. */
const VLAN_UNTAGGED = -1;
const VLAN_KEEP = -2;
/** IPv4 flags byte: don't fragment. */
const IPV4_DF_BYTE = 0x40;

/** What the egress step needs of the forwarder it serves. */
export interface EgressHost {
  readonly counters: Float64Array;
  readonly services: ServiceRecords;
  readonly backends: BackendSlots;
  /** An ipip packet over the egress MTU: counted drop, and maybe a "too big" reply to the client written to tx (icmp-path.ts). */
  replyTooBig(rx: Buffer, p: ParsedPacket, tx: Buffer, mtu: number, nowMs: number): number;
}

export class Egress {
  readonly #host: EgressHost;
  readonly #egressMac = new Uint8Array(6);
  #egressMtu = 1500;
  readonly #src4 = new Uint8Array(4);
  readonly #src6 = new Uint8Array(16);
  #hasSrc4 = false;
  #hasSrc6 = false;
  #vlanEgress = VLAN_UNTAGGED;
  #ipId = 0;
  /** IPv6 outer fragments: a 32-bit identification per split packet. */
  #fragId6 = 0;
  /** Where the leading fragments of a split ipip packet are written and sent at once (set by the worker); null: no splitting. */
  #sinkTx: Buffer | null = null;
  #sinkSend: SendFn | null = null;

  constructor(host: EgressHost) {
    this.#host = host;
  }

  /** The generation's egress facts. */
  apply(spec: DataplaneSpec): void {
    this.#egressMac.set(spec.egressMac);
    this.#egressMtu = spec.egressMtu;
    this.#hasSrc4 = spec.encapSource4 !== null;
    if (spec.encapSource4) this.#src4.set(spec.encapSource4);
    this.#hasSrc6 = spec.encapSource6 !== null;
    if (spec.encapSource6) this.#src6.set(spec.encapSource6);
    const ve = spec.vlanEgress ?? 'untagged';
    this.#vlanEgress = ve === 'untagged' ? VLAN_UNTAGGED : ve === 'keep' ? VLAN_KEEP : ve & 0xfff;
  }

  /**
   * Where frames beyond the one returned go: the leading outer fragments of an ipip packet
   * split to fit the MTU are written to `tx` and sent by `send` at once, one after the other.
   */
  setSink(tx: Buffer | null, send: SendFn | null): void {
    this.#sinkTx = tx;
    this.#sinkSend = send;
  }

  /** dsr-l2 rewrite or ipip encapsulation toward backend `be` of service `sid`; returns bytes written to tx, or 0 (dropped, counted). */
  deliver(rx: Buffer, len: number, p: ParsedPacket, sid: number, be: number, tx: Buffer, hash: number, nowMs: number): number {
    if (!this.#host.backends.hasNextHop(be)) return this.#drop(Drop.no_neighbor);
    return this.#host.services.isIpip(sid) ? this.#encapsulate(rx, p, be, tx, hash, nowMs) : this.#rewrite(rx, len, p, be, tx);
  }

  /**
   * dsr-l2: the frame unchanged but for its MAC addresses and its VLAN tagging, which is the
   * egress segment's (vlan.egress): untagged (every tag removed), one configured tag, or the
   * frame's own tags kept.
   */
  #rewrite(rx: Buffer, len: number, p: ParsedPacket, be: number, tx: Buffer): number {
    // Never hand a frame back to the station it came from.
    if (this.#host.backends.isNextHopMac(be, rx, 6)) return this.#drop(Drop.loop);
    const tagged = p.l3Offset > ETH_HEADER;
    const policy = this.#vlanEgress;
    if (policy === VLAN_KEEP || (policy === VLAN_UNTAGGED && !tagged)) {
      copyBytes(rx, 0, tx, 0, len);
      this.#writeMacs(be, tx);
      return len;
    }
    // MACs, the egress tag if any, the frame's innermost EtherType (just before its IP header), the rest.
    const o = this.#writeEgressTag(tx, tagged);
    tx[o] = rx[p.l3Offset - 2];
    tx[o + 1] = rx[p.l3Offset - 1];
    copyBytes(rx, p.l3Offset, tx, o + 2, len - p.l3Offset);
    this.#writeMacs(be, tx);
    return o + 2 + len - p.l3Offset;
  }

  /**
   * Writes the egress 802.1Q tag at tx[12..16) when vlan.egress names a VLAN, and counts what
   * became of the ingress tags. Returns the offset of the EtherType that follows.
   */
  #writeEgressTag(tx: Buffer, ingressTagged: boolean): number {
    const vid = this.#vlanEgress;
    if (ingressTagged) this.#host.counters[G.vlanStripped]++;
    if (vid < 0) return 12;
    tx[12] = 0x81;
    tx[13] = 0x00;
    tx[14] = (vid >>> 8) & 0x0f;
    tx[15] = vid & 0xff;
    this.#host.counters[G.vlanTagged]++;
    return 16;
  }

  /** ipip: a new Ethernet + outer IP header toward the backend, then the client's IP packet. */
  #encapsulate(rx: Buffer, p: ParsedPacket, be: number, tx: Buffer, hash: number, nowMs: number): number {
    const dst = this.#host.backends.address(be);
    const v4 = dst !== null && dst.length === 4;
    if (dst === null || (v4 ? !this.#hasSrc4 : !this.#hasSrc6)) return this.#drop(Drop.no_backend);
    const outerLen = encapHeaderLen(dst.length);
    const innerLen = p.l3Length;
    // The new Ethernet header: untagged, or the egress VLAN's tag ('keep' has no tag to keep here).
    const ethLen = this.#vlanEgress >= 0 ? ETH_HEADER + 4 : ETH_HEADER;
    if (outerLen + innerLen > this.#egressMtu) {
      // IPv4 without DF may be fragmented on its way (RFC 791): the outer packet is, and the backend's kernel reassembles it.
      if (p.ipVersion === 4 && (rx[p.l3Offset + 6] & IPV4_DF_BYTE) === 0 && this.#sinkTx !== null) return this.#split(rx, p, be, dst, tx, ethLen, hash);
      return this.#host.replyTooBig(rx, p, tx, this.#egressMtu - outerLen, nowMs);
    }
    if (ethLen + outerLen + innerLen > tx.length) return this.#drop(Drop.encap_too_big);
    this.#writeEncapEth(p, be, tx, v4, true);
    // IPv4: a fresh identification per packet; IPv6: a flow label per flow, so routers keep a flow on one path.
    this.#ipId = (this.#ipId + 1) & 0xffff;
    writeEncap(tx, ethLen, v4 ? this.#src4 : this.#src6, dst, p.ipVersion, innerLen, ENCAP_TTL, v4 ? this.#ipId : hash & 0xfffff);
    copyBytes(rx, p.l3Offset, tx, ethLen + outerLen, innerLen);
    return ethLen + outerLen + innerLen;
  }

  /** The Ethernet header of an encapsulated frame: MACs, the egress tag if any, the outer EtherType. `count`: count the VLAN work (once per packet). */
  #writeEncapEth(p: ParsedPacket, be: number, buf: Buffer, v4: boolean, count: boolean): void {
    this.#writeMacs(be, buf);
    const tagged = p.l3Offset > ETH_HEADER;
    const o = this.#vlanEgress >= 0 || tagged ? this.#writeEgressTag(buf, count && tagged) : 12;
    buf[o] = v4 ? 0x08 : 0x86;
    buf[o + 1] = v4 ? 0x00 : 0xdd;
  }

  /**
   * ipip of an IPv4 packet without DF that does not fit the egress MTU once encapsulated: the
   * outer packet in fragments (packet/encap-fragment.ts). Every fragment but the last is written
   * to the sink's buffer and sent at once; the last is written to tx and returned. Counted.
   */
  #split(rx: Buffer, p: ParsedPacket, be: number, dst: Uint8Array, tx: Buffer, ethLen: number, hash: number): number {
    const sinkTx = this.#sinkTx;
    const sinkSend = this.#sinkSend;
    const v4 = dst.length === 4;
    const step = encapFragmentPayload(this.#egressMtu, dst.length);
    if (sinkTx === null || sinkSend === null || step === 0) return this.#drop(Drop.encap_too_big);
    const innerLen = p.l3Length;
    const src = v4 ? this.#src4 : this.#src6;
    let id: number;
    if (v4) {
      this.#ipId = (this.#ipId + 1) & 0xffff;
      id = this.#ipId;
    } else {
      this.#fragId6 = (this.#fragId6 + 1) >>> 0;
      id = this.#fragId6;
    }
    const c = this.#host.counters;
    c[G.encapSplitPackets]++;
    for (let off = 0; ; off += step) {
      const last = off + step >= innerLen;
      const chunk = last ? innerLen - off : step;
      const buf = last ? tx : sinkTx;
      this.#writeEncapEth(p, be, buf, v4, off === 0);
      const hl = writeEncapFragment(buf, ethLen, src, dst, 4, chunk, ENCAP_TTL, id, hash & 0xfffff, off, !last);
      if (hl === 0 || ethLen + hl + chunk > buf.length) return this.#drop(Drop.encap_too_big);
      copyBytes(rx, p.l3Offset + off, buf, ethLen + hl, chunk);
      c[G.encapFragments]++;
      if (last) return ethLen + hl + chunk;
      sinkSend(ethLen + hl + chunk);
    }
  }

  /** Ethernet addresses of an outgoing frame: to the backend's next hop, from the egress interface. */
  #writeMacs(be: number, tx: Buffer): void {
    this.#host.backends.writeNextHopMac(be, tx, 0);
    const mac = this.#egressMac;
    for (let i = 0; i < 6; i++) tx[6 + i] = mac[i];
  }

  #drop(reason: number): number {
    this.#host.counters[DROPS_BASE + reason]++;
    return 0;
  }
}
