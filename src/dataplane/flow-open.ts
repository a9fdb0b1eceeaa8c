/**
 * Opening a flow table's buffer (config time, not the packet path): check the capacity,
 * timeouts and share, then format a new buffer (or the caller's) or attach to the table already
 * in one, after checking its geometry and hash seed. Throws a RangeError on a bad value and an
 * Error on a buffer it cannot use.
 */
import {
  FLOW_BUCKET_SLOTS,
  FLOW_MAX_DESTINATIONS,
  FLOW_STASH_SLOTS,
  H32,
  layoutBytes,
  readGeometry,
  viewsOver,
  writeHeader,
  type FlowGeometry,
  type FlowViews,
} from './flow-layout.js';
import {
  DEFAULT_HALF_OPEN_MS,
  DEFAULT_HALF_OPEN_SHARE,
  FLOW_MAX_CAPACITY,
  type FlowTableOptions,
  type FlowTimeouts,
} from './flow-entry.js';

/** An attached table whose clock is this far from now cannot compare its relative times: it starts empty. */
export const ATTACH_CLOCK_LIMIT_MS = 2 ** 30;

/** A checked and opened table buffer. */
export interface OpenedFlowBuffer {
  /** The capacity, rounded up to a power of two. */
  readonly capacity: number;
  readonly geometry: FlowGeometry;
  readonly buffer: ArrayBufferLike;
  readonly views: FlowViews;
  readonly halfOpenMs: number;
  readonly halfOpenShare: number;
}

export function roundUpPow2(n: number): number {
  let c = 1;
  while (c < n) c *= 2;
  return c;
}

/** Buckets for a capacity: capacity + 1/16 slots, so a full table runs at about 94% load. */
export function geometryFor(capacity: number): FlowGeometry {
  const slots = capacity + Math.ceil(capacity / 16);
  return {
    capacity,
    buckets: Math.max(2, Math.ceil(slots / FLOW_BUCKET_SLOTS)),
    bucketSlots: FLOW_BUCKET_SLOTS,
    stashSlots: FLOW_STASH_SLOTS,
    destinations: Math.min(FLOW_MAX_DESTINATIONS, Math.max(16, capacity)),
  };
}

function checkTimeout(name: string, v: unknown): void {
  if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v) || v >= 2 ** 31) {
    throw new RangeError(`flow table: timeouts.${name} is ${String(v)}; it must be a finite number of milliseconds in 1..2^31-1`);
  }
}

export function openFlowBuffer(capacity: number, timeouts: FlowTimeouts, options: FlowTableOptions): OpenedFlowBuffer {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > FLOW_MAX_CAPACITY) {
    throw new RangeError(`flow table: capacity ${capacity} must be an integer in 1..${FLOW_MAX_CAPACITY}`);
  }
  checkTimeout('tcpIdleMs', timeouts.tcpIdleMs);
  checkTimeout('tcpClosingMs', timeouts.tcpClosingMs);
  checkTimeout('udpIdleMs', timeouts.udpIdleMs);
  const halfOpenMs = timeouts.halfOpenMs ?? DEFAULT_HALF_OPEN_MS;
  checkTimeout('halfOpenMs', halfOpenMs);
  const share = options.halfOpenShare ?? DEFAULT_HALF_OPEN_SHARE;
  if (typeof share !== 'number' || !(share > 0) || share > 1) {
    throw new RangeError(`flow table: halfOpenShare is ${share}; it must be in (0, 1]`);
  }
  const cap = roundUpPow2(capacity);
  let g: FlowGeometry;
  let buffer: ArrayBufferLike;
  let v: FlowViews;
  if (options.attach !== undefined) {
    buffer = options.attach;
    g = readGeometry(buffer);
    if (g.capacity !== cap) {
      throw new Error(`flow table: the buffer holds a table of capacity ${g.capacity}, not ${cap}; refusing to attach`);
    }
    v = viewsOver(buffer, g);
    const seed = options.hashSeed;
    if (seed !== undefined && v.h32[H32.hashSeedSet] === 1 && v.h32[H32.hashSeed] !== seed >>> 0) {
      throw new Error(`flow table: the buffer's flows were hashed with seed ${v.h32[H32.hashSeed]}, not ${seed >>> 0}; refusing to attach`);
    }
  } else {
    g = geometryFor(cap);
    const bytes = layoutBytes(g);
    if (options.buffer !== undefined) {
      buffer = options.buffer;
      if (buffer.byteLength < bytes) {
        throw new Error(`flow table: the buffer has ${buffer.byteLength} bytes; capacity ${cap} needs ${bytes}`);
      }
      if (options.bufferZeroed !== true) new Uint8Array(buffer, 0, bytes).fill(0);
    } else {
      buffer = options.shared === true ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes);
    }
    v = viewsOver(buffer, g);
    writeHeader(v, g, options.epochMs ?? Date.now());
  }
  return { capacity: cap, geometry: g, buffer, views: v, halfOpenMs, halfOpenShare: share };
}
