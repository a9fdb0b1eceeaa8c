/**
 * Where a flow lives in the table (bucketized cuckoo hashing, see flow-table.ts): finding it
 * (lookupFlow), and placing a new one (insertFlow): a free slot of the less loaded of its two
 * buckets, else one made by moving entries to their other bucket (two levels at most), else a
 * stash slot, else an eviction chosen by kind, else the discard slot. Per-packet: allocates
 * nothing, never throws.
 */
import { IPPROTO_TCP, TCP_ACK, TCP_SYN, type ParsedPacket } from '../packet/parsed-packet.js';
import { R, R_BACKEND, R_LAST, R_PORTS, R_TTOUCH, FLOW_BUCKET_SLOTS, H32, H64 } from './flow-layout.js';
import { CTL_HALF_OPEN, CTL_V6, FLOW_ACTIVE, FLOW_CLOSING, FLOW_EMPTY, STATE_MASK } from './flow-entry.js';
import { readBE32, type FlowSlots } from './flow-slots.js';

/** Slots examined per lookup/insert (two buckets), the stash aside. */
export const FLOW_PROBE_WINDOW = 2 * FLOW_BUCKET_SLOTS;

/** Slot of the packet's flow, or -1. An expired entry is freed and reported as absent. */
export function lookupFlow(t: FlowSlots, frame: Uint8Array, p: ParsedPacket, hash: number, nowMs: number): number {
  const s = findFlow(t, frame, p, hash);
  return s < 0 ? -1 : t.live(s, nowMs);
}

/** The slot holding the packet's key, expired or not, or -1; changes nothing. */
export function findFlow(t: FlowSlots, frame: Uint8Array, p: ParsedPacket, hash: number): number {
  // h (unsigned) is compared here only; calls get `hash` as given, signed on the packet path, so it is never boxed.
  const h = hash >>> 0;
  const hashes = t.hash;
  const b1 = t.bucket1(hash);
  let s = b1 * FLOW_BUCKET_SLOTS;
  for (const end = s + FLOW_BUCKET_SLOTS; s < end; s++) {
    if (hashes[s] === h && (t.ctlOf(s) & STATE_MASK) !== FLOW_EMPTY && t.keyMatches(s, frame, p)) return s;
  }
  s = t.bucket2(hash, b1) * FLOW_BUCKET_SLOTS;
  for (const end = s + FLOW_BUCKET_SLOTS; s < end; s++) {
    if (hashes[s] === h && (t.ctlOf(s) & STATE_MASK) !== FLOW_EMPTY && t.keyMatches(s, frame, p)) return s;
  }
  return t.h32[H32.stashUsed] > 0 ? t.findInStash(hash, frame, p) : -1;
}

/**
 * Record the packet's flow and return its slot (see FlowTable.insert). `protect`: flood
 * protection (half-open share, eviction by kind); `discardSlot`: the slot of an untracked flow.
 */
export function insertFlow(
  t: FlowSlots,
  protect: boolean,
  capacity: number,
  discardSlot: number,
  frame: Uint8Array,
  p: ParsedPacket,
  hash: number,
  nowMs: number,
  backendId: number,
  serviceIndex: number,
  generation: number,
): number {
  const h = hash >>> 0;
  const now = t.rel(nowMs);
  const hashes = t.hash;
  const rec = t.rec;
  const hd = t.h64;
  hd[H64.clockMs] = nowMs;
  const b1 = t.bucket1(hash);
  const base1 = b1 * FLOW_BUCKET_SLOTS;
  const base2 = t.bucket2(hash, b1) * FLOW_BUCKET_SLOTS;
  const v6 = p.addrLen === 16;
  const halfOpen = p.protocol === IPPROTO_TCP && (p.tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_SYN;

  let target = -1;
  let free1 = -1;
  let free2 = -1;
  let live1 = 0;
  let live2 = 0;
  let oldHalf = -1;
  let oldHalfAge = -1;
  let oldClosing = -1;
  let oldClosingAge = -1;
  let oldOther = -1;
  let oldOtherAge = -1;
  for (let i = 0; i < FLOW_PROBE_WINDOW; i++) {
    const first = i < FLOW_BUCKET_SLOTS;
    const s = first ? base1 + i : base2 + i - FLOW_BUCKET_SLOTS;
    const c = t.ctlOf(s);
    if ((c & STATE_MASK) !== FLOW_EMPTY) {
      if (hashes[s] === h && t.keyMatches(s, frame, p)) {
        target = s;
        break;
      }
      if (!t.expired(s, now)) {
        if (first) live1++;
        else live2++;
        if ((rec[s * R + R_BACKEND] | 0) < -1) continue; // pinned by its caller: never evicted
        const age = (now - rec[s * R + R_LAST]) | 0;
        if ((c & STATE_MASK) === FLOW_CLOSING) {
          if (age > oldClosingAge) {
            oldClosingAge = age;
            oldClosing = s;
          }
        } else if ((c & CTL_HALF_OPEN) !== 0) {
          if (age > oldHalfAge) {
            oldHalfAge = age;
            oldHalf = s;
          }
        } else if (age > oldOtherAge) {
          oldOtherAge = age;
          oldOther = s;
        }
        continue;
      }
      t.expire(s);
    }
    if (first) {
      if (free1 < 0) free1 = s;
    } else if (free2 < 0) free2 = s;
  }
  if (target < 0 && t.h32[H32.stashUsed] > 0) target = t.findInStash(hash, frame, p);

  if (target >= 0) {
    // Same flow already recorded: replace its values in place (an expired one counts as expired).
    if (t.expired(target, now)) hd[H64.expirations]++;
    if ((t.ctlOf(target) & CTL_HALF_OPEN) !== 0) hd[H64.halfOpen]--;
  } else {
    const d = t.dest.acquire(frame, p.dstAddrOffset, v6);
    if (d >= 0) {
      if (halfOpen && protect && hd[H64.halfOpen] >= t.halfOpenLimit) {
        // Past the half-open share: only another half-open entry may make room.
        if (oldHalf >= 0) {
          t.evict(oldHalf);
          target = oldHalf;
        }
      } else {
        target = free1 >= 0 && (free2 < 0 || live1 <= live2) ? free1 : free2;
        // Below capacity, make room by moving entries (bounded); at capacity, evict at once.
        if (target < 0 && hd[H64.size] < capacity) {
          target = relocate(t, base1, base2, now);
          if (target < 0) target = t.freeIn(t.stashBase, t.slots, now);
        }
        if (target < 0) {
          const victim = !protect
            ? oldest(t, oldHalf, oldClosing, oldOther, now)
            : oldHalf >= 0
              ? oldHalf
              : oldClosing >= 0
                ? oldClosing
                : halfOpen
                  ? -1
                  : oldOther;
          if (victim >= 0) {
            t.evict(victim);
            target = victim;
          }
        }
      }
      if (target < 0) t.dest.release(d);
    }
    if (target >= 0) {
      t.occupy(target);
      hd[H64.size]++;
      if (target >= t.stashBase) t.h32[H32.stashUsed]++;
      t.setKeyMeta(target, p.protocol, d);
    } else {
      target = discardSlot;
      hd[H64.untracked]++;
      t.setKeyMeta(target, p.protocol, t.dest.scratch(frame, p.dstAddrOffset, v6));
    }
    hashes[target] = h;
    rec[target * R + R_PORTS] = ((p.srcPort << 16) | p.dstPort) >>> 0;
    const sb = target * R;
    const so = p.srcAddrOffset;
    rec[sb] = readBE32(frame, so);
    rec[sb + 1] = v6 ? readBE32(frame, so + 4) : 0;
    rec[sb + 2] = v6 ? readBE32(frame, so + 8) : 0;
    rec[sb + 3] = v6 ? readBE32(frame, so + 12) : 0;
  }
  t.setCtl(target, FLOW_ACTIVE | (halfOpen ? CTL_HALF_OPEN : 0) | (v6 ? CTL_V6 : 0));
  if (halfOpen && target !== discardSlot) hd[H64.halfOpen]++;
  rec[target * R + R_LAST] = now;
  t.created[target] = now;
  rec[target * R + R_BACKEND] = backendId;
  t.service[target] = serviceIndex;
  t.generation[target] = generation;
  t.token[target] = 0;
  rec[target * R + R_TTOUCH] = now;
  hd[H64.inserts]++;
  return target;
}

/** The least recently seen of up to three candidate slots (-1 = none). */
function oldest(t: FlowSlots, a: number, b: number, c: number, now: number): number {
  const rec = t.rec;
  let best = a;
  if (b >= 0 && (best < 0 || ((now - rec[b * R + R_LAST]) | 0) > ((now - rec[best * R + R_LAST]) | 0))) best = b;
  if (c >= 0 && (best < 0 || ((now - rec[c * R + R_LAST]) | 0) > ((now - rec[best * R + R_LAST]) | 0))) best = c;
  return best;
}

/**
 * Make a free slot in one of the two full buckets at base1/base2 by moving entries to their
 * other bucket: one move (16 x 8 slots examined) or a chain of two (16 x 8 x 8). Bounded.
 * Entries pinned by their caller (backend below -1) never move.
 */
function relocate(t: FlowSlots, base1: number, base2: number, now: number): number {
  const rec = t.rec;
  for (let i = 0; i < FLOW_PROBE_WINDOW; i++) {
    const base = i < FLOW_BUCKET_SLOTS ? base1 : base2;
    const s = base + (i & (FLOW_BUCKET_SLOTS - 1));
    if ((rec[s * R + R_BACKEND] | 0) < -1) continue;
    const alt = t.altBase(s, base);
    const f = t.freeIn(alt, alt + FLOW_BUCKET_SLOTS, now);
    if (f >= 0) {
      t.move(s, f);
      return s;
    }
  }
  for (let i = 0; i < FLOW_PROBE_WINDOW; i++) {
    const base = i < FLOW_BUCKET_SLOTS ? base1 : base2;
    const s = base + (i & (FLOW_BUCKET_SLOTS - 1));
    if ((rec[s * R + R_BACKEND] | 0) < -1) continue;
    const alt = t.altBase(s, base);
    for (let u = alt; u < alt + FLOW_BUCKET_SLOTS; u++) {
      if ((rec[u * R + R_BACKEND] | 0) < -1) continue;
      const alt2 = t.altBase(u, alt);
      if (alt2 === base1 || alt2 === base2) continue;
      const f = t.freeIn(alt2, alt2 + FLOW_BUCKET_SLOTS, now);
      if (f >= 0) {
        t.move(u, f);
        t.move(s, u);
        return s;
      }
    }
  }
  return -1;
}
