import { DROP_REASON_COUNT } from '../../packet/drop-reasons.js';
import { MAX_BACKENDS, MAX_SERVICES } from './limits.js';

/**
 * Layout of the data plane's counter array: one Float64Array, written on the hot path by index,
 * copied to the control process on a timer and read by prom-client at scrape time.
 */
export const G = {
  rxFrames: 0,
  rxBytes: 1,
  txFrames: 2,
  txBytes: 3,
  txErrors: 4,
  flowsCreated: 5,
  flowsActive: 6,
  flowCapacity: 7,
  flowEvictions: 8,
  flowExpirations: 9,
  captureReceived: 10,
  captureDropped: 11,
  captureIfDropped: 12,
  generation: 13,
  dataplaneRssBytes: 14,
  dataplaneCpuUserUs: 15,
  dataplaneCpuSystemUs: 16,
  batches: 17,
  flowsRemapped: 18,
  mptcpLearnedV0: 19,
  mptcpLearnedV1: 20,
  mptcpTokensActive: 21,
  mptcpJoinsSteered: 22,
  mptcpJoinsUnknown: 23,
  mptcpCollisions: 24,
  mptcpEvictions: 25,
  mptcpMalformed: 26,
  mptcpRefreshed: 27,
  affinityEntries: 28,
  ownerQueries: 29,
  heldPackets: 30,
  ownerQueryTimeouts: 31,
  ownerHits: 32,
  ownerMisses: 33,
  flowsPublished: 34,
  /** Flow table by kind (flow-table.ts): half-open entries now, evictions of each kind, new flows not tracked. */
  flowsHalfOpen: 35,
  flowEvictionsHalfOpen: 36,
  flowEvictionsEstablished: 37,
  flowEvictionsClosing: 38,
  flowEvictionsOther: 39,
  flowsUntracked: 53,
  // Capture engines: what the kernel's frame status made them do (ring engine), or could not.
  /** Frames whose partial L4 checksum (TP_STATUS_CSUMNOTREADY) the engine completed. */
  csumCompleted: 40,
  /** GSO super-frames cut into segments, and the segments they made. */
  gsoFrames: 41,
  gsoSegments: 42,
  /** Frames whose VLAN tag the kernel stripped and the ring engine put back before the forwarder. */
  vlanRestored: 43,
  /** Frames an engine that cannot see the kernel's checksum status passed on unchecked (batch, cap). */
  csumUnverifiable: 44,
  // ICMP for a VIP (src/dataplane/icmp-steer.ts): per type and action.
  /** Errors routed to their flow's backend: destination unreachable, too big (v4 frag needed, v6 packet too big), time exceeded. */
  icmpUnreachForwarded: 45,
  icmpTooBigForwarded: 46,
  icmpTimeExceededForwarded: 47,
  /** Echo requests to a VIP answered by Sluice, forwarded to a backend, or dropped by policy. */
  icmpEchoReplied: 48,
  icmpEchoForwarded: 49,
  icmpEchoDropped: 50,
  /** ipip packets too big for the egress MTU: "too big" replies sent to the client, and those the rate limit held back. */
  icmpTooBigSent: 51,
  icmpTooBigRateLimited: 52,
  // Fragments (fragment-table.ts, fragment-hold.ts): datagrams recorded by their first fragment,
  // later fragments that found theirs, early fragments held / released / expired, and first
  // fragments refused because the table window was full.
  fragDatagrams: 54,
  fragMatched: 55,
  fragHeld: 56,
  fragReleased: 57,
  fragExpired: 58,
  fragOverflow: 59,
  fragTableEntries: 60,
  // VLAN egress (vlan.egress): frames whose ingress tags were removed, frames sent with the configured tag.
  vlanStripped: 61,
  vlanTagged: 62,
  // ipip of IPv4 without DF too big for the egress MTU (egress.ts): packets sent as outer fragments, and the fragments.
  encapSplitPackets: 63,
  encapFragments: 64,
  // Fragments across instances (fragment-owner.ts): datagrams published by their first fragment,
  // datagrams asked about by later fragments, and answers that named a backend / did not (or never came).
  fragOwnerPublished: 65,
  fragOwnerQueries: 66,
  fragOwnerHits: 67,
  fragOwnerMisses: 68,
  // Owner queries (owner-hold.ts, flow-steer.ts).
  /** Owner queries asked for a UDP packet with no local flow while a table change was recent in the cluster (0 in steady state). */
  ownerQueriesUdp: 69,
  /** Flow queries no owner answered in time (the control process's budget or the data plane's deadline) that took the table's pick. */
  ownerUnanswered: 70,
  /** Owner answers naming a backend that reached the data plane after it had stopped waiting. */
  ownerLateAnswers: 71,
  /** Packets that would have asked their owner but found this second's query budget spent: they took the table's pick. */
  ownerQueriesOverBudget: 72,
  /** Unanswered flow queries while a table change was recent asked once more, their frames still held (owner-hold.ts). */
  ownerRetried: 73,
  // Workers (dataplane.workers): CPU time of the worker's own thread, from /proc/thread-self/stat.
  // Per worker only: the data plane's total is dataplaneCpuUserUs/SystemUs (the whole process).
  workerCpuUserUs: 74,
  workerCpuSystemUs: 75,
  // Ring engine receive (engine-ring.ts): frames the forwarder read in place in the ring (TPACKET_V2,
  // no copy, or a V3 super-frame in its block), and frames the addon copied first (a restored VLAN
  // tag, TP_STATUS_COPY, TPACKET_V3 frames that fit a slot).
  rxInPlace: 76,
  rxCopied: 77,
} as const;
export const GLOBAL_COUNT = 80;

/**
 * Per-worker figures beside the summed counters in a counters message (worker-pool.ts):
 * WORKER_FIGURES numbers per worker, worker 0 first.
 */
export const WORKER_FIGURE = { rxFrames: 0, txFrames: 1, drops: 2, flows: 3, captureDropped: 4, cpuUserUs: 5, cpuSystemUs: 6, restarts: 7 } as const;
export const WORKER_FIGURES = 8;

/** One worker's figures as /status reports them. */
export interface WorkerFigures {
  worker: number;
  rxFrames: number;
  txFrames: number;
  drops: number;
  flows: number;
  captureDropped: number;
  cpuSeconds: number;
  /** Times this worker's thread died and was started again on its own flow table. */
  restarts: number;
}

/** The per-worker figures of a counters message, one record per worker. */
export function workerFigures(f: Float64Array): WorkerFigures[] {
  const out: WorkerFigures[] = [];
  for (let w = 0; (w + 1) * WORKER_FIGURES <= f.length; w++) {
    const b = w * WORKER_FIGURES;
    out.push({
      worker: w,
      rxFrames: f[b + WORKER_FIGURE.rxFrames],
      txFrames: f[b + WORKER_FIGURE.txFrames],
      drops: f[b + WORKER_FIGURE.drops],
      flows: f[b + WORKER_FIGURE.flows],
      captureDropped: f[b + WORKER_FIGURE.captureDropped],
      cpuSeconds: (f[b + WORKER_FIGURE.cpuUserUs] + f[b + WORKER_FIGURE.cpuSystemUs]) / 1e6,
      restarts: f[b + WORKER_FIGURE.restarts],
    });
  }
  return out;
}

export const DROPS_BASE = GLOBAL_COUNT;

/** Named offsets inside one entity's block (Katran's `*_CNTR` style): never `+0/+1/+2` by hand. */
export const ENTITY = {
  packets: 0,
  bytes: 1,
  flowsCreated: 2,
} as const;
export type EntityCounter = (typeof ENTITY)[keyof typeof ENTITY];
const ENTITY_STRIDE = 3;

/** Per service id: one ENTITY block. */
export const SERVICE_BASE = DROPS_BASE + DROP_REASON_COUNT;
export const SERVICE_STRIDE = ENTITY_STRIDE;
/** Per backend id: one ENTITY block. */
export const BACKEND_BASE = SERVICE_BASE + MAX_SERVICES * SERVICE_STRIDE;
export const BACKEND_STRIDE = ENTITY_STRIDE;
export const COUNTER_LENGTH = BACKEND_BASE + MAX_BACKENDS * BACKEND_STRIDE;

/** Index of counter `which` of service `sid`. */
export function serviceCounter(sid: number, which: EntityCounter): number {
  return SERVICE_BASE + sid * SERVICE_STRIDE + which;
}

/** Index of counter `which` of backend `bid`. */
export function backendCounter(bid: number, which: EntityCounter): number {
  return BACKEND_BASE + bid * BACKEND_STRIDE + which;
}

export function newCounters(): Float64Array {
  return new Float64Array(COUNTER_LENGTH);
}

/** Length of the prefix that holds every counter up to backend id `maxBackendId` (what a snapshot needs to copy). */
export function usedLength(maxBackendId: number): number {
  return BACKEND_BASE + (maxBackendId + 1) * BACKEND_STRIDE;
}
