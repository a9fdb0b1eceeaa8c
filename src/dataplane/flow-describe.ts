/**
 * A stored flow read back: its canonical key bytes (what murmur3.flowHash hashes) and its
 * decoded entry for the admin API and the CLI. Control side: describeFlow allocates.
 */
import { formatAddress } from '../packet/address.js';
import { R, R_BACKEND, R_LAST, R_PORTS } from './flow-layout.js';
import { CTL_V6, FLOW_CLOSING, FLOW_KIND_NAMES, STATE_MASK, type FlowEntryInfo } from './flow-entry.js';
import type { FlowSlots } from './flow-slots.js';

/**
 * Write the slot's canonical flow key (src ++ dst ++ sport BE ++ dport BE ++ protocol) into out
 * (>= 37 bytes); returns its length, 13 or 37.
 */
export function writeFlowKey(t: FlowSlots, slot: number, out: Uint8Array): number {
  const rec = t.rec;
  const words = (t.ctlOf(slot) & CTL_V6) !== 0 ? 4 : 1;
  const addrLen = words * 4;
  const sb = slot * R;
  const db = t.dstOf(slot) * 4;
  for (let w = 0; w < words; w++) {
    const s = rec[sb + w];
    const d = t.destAddr[db + w];
    const o = w * 4;
    out[o] = s >>> 24;
    out[o + 1] = (s >>> 16) & 255;
    out[o + 2] = (s >>> 8) & 255;
    out[o + 3] = s & 255;
    out[addrLen + o] = d >>> 24;
    out[addrLen + o + 1] = (d >>> 16) & 255;
    out[addrLen + o + 2] = (d >>> 8) & 255;
    out[addrLen + o + 3] = d & 255;
  }
  const o = 2 * addrLen;
  const ports = rec[slot * R + R_PORTS];
  out[o] = ports >>> 24;
  out[o + 1] = (ports >>> 16) & 255;
  out[o + 2] = (ports >>> 8) & 255;
  out[o + 3] = ports & 255;
  out[o + 4] = t.protoOf(slot);
  return o + 5;
}

/** One occupied slot decoded; `scratch` (>= 37 bytes) holds its key meanwhile. Ages wrap after 49.7 days. */
export function describeFlow(t: FlowSlots, slot: number, nowMs: number, scratch: Uint8Array): FlowEntryInfo {
  const rec = t.rec;
  const v6 = (t.ctlOf(slot) & CTL_V6) !== 0;
  const addrLen = v6 ? 16 : 4;
  writeFlowKey(t, slot, scratch);
  const now = t.rel(nowMs);
  const ports = rec[slot * R + R_PORTS];
  return {
    slot,
    ipVersion: v6 ? 6 : 4,
    protocol: t.protoOf(slot),
    src: formatAddress(scratch, 0, addrLen),
    dst: formatAddress(scratch, addrLen, addrLen),
    srcPort: ports >>> 16,
    dstPort: ports & 0xffff,
    backendId: rec[slot * R + R_BACKEND] | 0,
    serviceIndex: t.service[slot],
    generation: t.generation[slot],
    ageMs: (now - t.created[slot]) >>> 0,
    idleMs: (now - rec[slot * R + R_LAST]) | 0,
    state: (t.ctlOf(slot) & STATE_MASK) === FLOW_CLOSING ? 'closing' : 'active',
    kind: FLOW_KIND_NAMES[t.kindOf(slot)],
  };
}
