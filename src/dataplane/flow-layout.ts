/**
 * The flow table's memory layout: one contiguous buffer (an ArrayBuffer, a SharedArrayBuffer, or
 * later a mapped file) holding a versioned header and every per-slot array, so a second process
 * (a restarted or upgraded Sluice, another worker) can attach to the same bytes. Everything a
 * reader needs to find the arrays is in the header; nothing lives only in a JS object.
 *
 * Header (FLOW_HEADER_BYTES), 32-bit words then 64-bit floats:
 *   u32[0] magic            u32[1] layout version   u32[2] header bytes    u32[3] capacity
 *   u32[4] buckets          u32[5] slots per bucket u32[6] stash slots     u32[7] destinations
 *   u32[8] hash seed        u32[9] hash seed set    u32[10..13] timeouts (tcp idle, tcp closing,
 *   udp idle, half-open) in ms                      u32[14] half-open limit u32[15] total bytes
 *   u32[16] sweep cursor    u32[17] stash entries in use
 *   f64[H64.*] epoch (wall-clock ms of relative time 0), the clock last seen, and the counters.
 * A layout change that an older reader would misread must bump FLOW_LAYOUT_VERSION.
 *
 * Version 2 added the occupancy summary (chunkLive): live entries per chunk of FLOW_CHUNK_SLOTS
 * consecutive slots, so scans (the expiry sweep, listings) skip chunks with no entry without
 * reading their slots. Reading a slot of a mapped file faults its page in (a file hole becomes a
 * page-cache page), so before it an idle data plane's sweep made most of the table resident.
 * Writers keep a chunk's count at or above its true count at every instant (count up before a slot
 * is filled, down after it is emptied): a table left by a process that died mid-update never
 * hides an entry, and an attaching process recounts the chunks whose count is not zero.
 *
 * Times in the slots are u32 milliseconds relative to the epoch, compared as signed 32-bit
 * differences: a table is valid across processes as long as every caller passes wall-clock
 * (Date.now()-based) times, and an entry's idle time is only ever compared against timeouts far
 * below 2^31 ms (24.8 days).
 */

export const FLOW_MAGIC = 0x31544c46; // "FLT1" in little-endian bytes; a big-endian reader sees another value
export const FLOW_LAYOUT_VERSION = 2;
export const FLOW_HEADER_BYTES = 256;

/** Slots per bucket; a flow may live in either of its two buckets. */
export const FLOW_BUCKET_SLOTS = 8;
/** Overflow slots searched by every lookup while any is in use (cuckoo placement's last resort). */
export const FLOW_STASH_SLOTS = 16;
/** Most distinct destination addresses with live flows (flows go to VIPs, so this is far above need). */
export const FLOW_MAX_DESTINATIONS = 8192;

/**
 * Slots per occupancy-summary chunk (a power of two): 128 slots span 4.5 KiB of records, a little
 * over a page, so an idle table's scans touch only the summary (4 bytes per chunk).
 */
export const FLOW_CHUNK_SHIFT = 7;
export const FLOW_CHUNK_SLOTS = 1 << FLOW_CHUNK_SHIFT;

/** Header word indexes (Uint32Array over the header). */
export const H32 = {
  magic: 0,
  version: 1,
  headerBytes: 2,
  capacity: 3,
  buckets: 4,
  bucketSlots: 5,
  stashSlots: 6,
  destinations: 7,
  hashSeed: 8,
  hashSeedSet: 9,
  tcpIdleMs: 10,
  tcpClosingMs: 11,
  udpIdleMs: 12,
  halfOpenMs: 13,
  halfOpenLimit: 14,
  totalBytes: 15,
  sweepCursor: 16,
  stashUsed: 17,
} as const;

/** Header float indexes (Float64Array over the header, starting at byte 128). */
const H64_BASE = 128;
export const H64 = {
  epochMs: 0,
  clockMs: 1,
  size: 2,
  halfOpen: 3,
  inserts: 4,
  expirations: 5,
  evictedHalfOpen: 6,
  evictedEstablished: 7,
  evictedClosing: 8,
  evictedOther: 9,
  untracked: 10,
  relocations: 11,
} as const;
const H64_COUNT = 16;

/**
 * The per-slot record of the fields a packet reads (Uint32 words, R per slot), so a hit touches
 * the fingerprint line and one record: source address words (big-endian; IPv4 uses the first),
 * ports (srcPort << 16 | dstPort), meta (control byte | protocol << 8 | destination index << 16),
 * last seen (relative ms), backend (an int32 stored as uint32), token last refreshed (relative ms).
 */
export const R = 9;
export const R_SRC = 0;
export const R_PORTS = 4;
export const R_META = 5;
export const R_LAST = 6;
export const R_BACKEND = 7;
export const R_TTOUCH = 8;

/** Bytes per slot over all per-slot arrays (see FlowViews); the occupancy summary adds 4 bytes per FLOW_CHUNK_SLOTS slots. */
export const FLOW_BYTES_PER_SLOT = 4 + R * 4 + 4 + 4 + 4 + 2;
/** Bytes per destination entry: address words, reference count, family. */
export const FLOW_BYTES_PER_DESTINATION = 16 + 4 + 1;

/** The sizes every offset is derived from. */
export interface FlowGeometry {
  capacity: number;
  buckets: number;
  bucketSlots: number;
  stashSlots: number;
  destinations: number;
}

/**
 * Slot numbering: [0, buckets * bucketSlots) the buckets, then the stash, then one discard slot
 * (the home of a flow that could not be tracked: never found by lookup, never swept).
 */
export function slotCount(g: FlowGeometry): number {
  return g.buckets * g.bucketSlots + g.stashSlots + 1;
}

/** Occupancy-summary chunks covering every slot (the discard slot included). */
export function chunkCount(g: FlowGeometry): number {
  return (slotCount(g) + FLOW_CHUNK_SLOTS - 1) >>> FLOW_CHUNK_SHIFT;
}

function align8(n: number): number {
  return (n + 7) & ~7;
}

interface ArrayPlan {
  offset: number;
  length: number;
}

/** Byte offset and element count of every array, in a fixed order. */
function plan(g: FlowGeometry): { arrays: Record<keyof FlowViewArrays, ArrayPlan>; totalBytes: number } {
  const n = slotCount(g);
  const d = g.destinations + 1; // + the discard slot's scratch destination
  const sizes: [keyof FlowViewArrays, number, number][] = [
    ['chunkLive', chunkCount(g), 4],
    ['hash', n, 4],
    ['rec', n * R, 4],
    ['created', n, 4],
    ['generation', n, 4],
    ['token', n, 4],
    ['service', n, 2],
    ['destAddr', d * 4, 4],
    ['destRefs', d, 4],
    ['destFamily', d, 1],
  ];
  let off = FLOW_HEADER_BYTES;
  const arrays = {} as Record<keyof FlowViewArrays, ArrayPlan>;
  for (const [name, length, width] of sizes) {
    off = align8(off);
    arrays[name] = { offset: off, length };
    off += length * width;
  }
  return { arrays, totalBytes: align8(off) };
}

/** Bytes a table of this geometry needs (header included). */
export function layoutBytes(g: FlowGeometry): number {
  return plan(g).totalBytes;
}

/** Per-slot arrays, all views over the one buffer. */
export interface FlowViewArrays {
  /** Live entries per chunk of FLOW_CHUNK_SLOTS slots (never below the true count; see the header comment). */
  chunkLive: Uint32Array;
  /** The flow hash: fingerprint on lookup, and how a moved entry finds its other bucket. */
  hash: Uint32Array;
  /** The hot record, R words per slot (R_* offsets). */
  rec: Uint32Array;
  /** Relative ms. */
  created: Uint32Array;
  generation: Uint32Array;
  /** MPTCP token of the flow's connection. */
  token: Uint32Array;
  service: Uint16Array;
  /** Destination addresses, 4 words each; with their live-flow reference counts and family (0 = never used). */
  destAddr: Uint32Array;
  destRefs: Uint32Array;
  destFamily: Uint8Array;
}

export interface FlowViews extends FlowViewArrays {
  h32: Uint32Array;
  h64: Float64Array;
}

/** Typed-array views over `buffer` for geometry `g` (the buffer must hold layoutBytes(g)). */
export function viewsOver(buffer: ArrayBufferLike, g: FlowGeometry): FlowViews {
  const { arrays: a } = plan(g);
  return {
    h32: new Uint32Array(buffer, 0, H64_BASE / 4),
    h64: new Float64Array(buffer, H64_BASE, H64_COUNT),
    chunkLive: new Uint32Array(buffer, a.chunkLive.offset, a.chunkLive.length),
    hash: new Uint32Array(buffer, a.hash.offset, a.hash.length),
    rec: new Uint32Array(buffer, a.rec.offset, a.rec.length),
    created: new Uint32Array(buffer, a.created.offset, a.created.length),
    generation: new Uint32Array(buffer, a.generation.offset, a.generation.length),
    token: new Uint32Array(buffer, a.token.offset, a.token.length),
    service: new Uint16Array(buffer, a.service.offset, a.service.length),
    destAddr: new Uint32Array(buffer, a.destAddr.offset, a.destAddr.length),
    destRefs: new Uint32Array(buffer, a.destRefs.offset, a.destRefs.length),
    destFamily: new Uint8Array(buffer, a.destFamily.offset, a.destFamily.length),
  };
}

/** Write a fresh header for geometry `g` (the arrays must already be zero). */
export function writeHeader(v: FlowViews, g: FlowGeometry, epochMs: number): void {
  const h = v.h32;
  h[H32.magic] = FLOW_MAGIC;
  h[H32.version] = FLOW_LAYOUT_VERSION;
  h[H32.headerBytes] = FLOW_HEADER_BYTES;
  h[H32.capacity] = g.capacity;
  h[H32.buckets] = g.buckets;
  h[H32.bucketSlots] = g.bucketSlots;
  h[H32.stashSlots] = g.stashSlots;
  h[H32.destinations] = g.destinations;
  h[H32.totalBytes] = layoutBytes(g);
  v.h64[H64.epochMs] = epochMs;
  v.h64[H64.clockMs] = epochMs;
}

/**
 * Check that `buffer` holds a flow table this build can read, and return its geometry. Throws an
 * Error naming what is wrong: never guesses at a layout it does not know.
 */
export function readGeometry(buffer: ArrayBufferLike): FlowGeometry {
  if (buffer.byteLength < FLOW_HEADER_BYTES) {
    throw new Error(`flow table: the buffer has ${buffer.byteLength} bytes, less than a header (${FLOW_HEADER_BYTES})`);
  }
  const h = new Uint32Array(buffer, 0, H64_BASE / 4);
  if (h[H32.magic] !== FLOW_MAGIC) {
    throw new Error(`flow table: the buffer is not a Sluice flow table (magic 0x${h[H32.magic].toString(16)}, expected 0x${FLOW_MAGIC.toString(16)})`);
  }
  if (h[H32.version] !== FLOW_LAYOUT_VERSION) {
    throw new Error(
      `flow table: layout version ${h[H32.version]} is not understood by this build (it reads version ${FLOW_LAYOUT_VERSION}); refusing to attach`,
    );
  }
  const g: FlowGeometry = {
    capacity: h[H32.capacity],
    buckets: h[H32.buckets],
    bucketSlots: h[H32.bucketSlots],
    stashSlots: h[H32.stashSlots],
    destinations: h[H32.destinations],
  };
  if (h[H32.headerBytes] !== FLOW_HEADER_BYTES || g.bucketSlots !== FLOW_BUCKET_SLOTS || g.buckets < 2 || g.destinations < 1 || g.destinations > FLOW_MAX_DESTINATIONS) {
    throw new Error('flow table: the header is inconsistent (header size, bucket width, bucket or destination count); refusing to attach');
  }
  const need = layoutBytes(g);
  if (h[H32.totalBytes] !== need || buffer.byteLength < need) {
    throw new Error(`flow table: the header describes ${need} bytes but records ${h[H32.totalBytes]} and the buffer has ${buffer.byteLength}; refusing to attach`);
  }
  return g;
}
