/**
 * Shapes shared by the lab's processes and the tests that read them: the backend server's
 * stats JSON and load.ts's --json reports, plus the small statistics they are built from.
 */

import type { BackendShare, Fairness } from './fairness.js';
import type { LatencySummary } from './stats.js';
import type { TimelineData } from './timeline.js';

export type { BackendShare, Fairness } from './fairness.js';
export type { LatencySummary } from './stats.js';
export type { TimelineBucket, TimelineData } from './timeline.js';
export { round3, summarize } from './stats.js';

/** GET /stats on a backend server's stats socket. */
export interface BackendStats {
  name: string;
  pid: number;
  startedAt: string;
  tcp: {
    /** Connections accepted (HTTP and echo). */
    connections: number;
    open: number;
    bytesIn: number;
    bytesOut: number;
    /** Per listening port ("80", "7"). */
    byPort: Record<string, { connections: number; open: number; bytesIn: number }>;
    /** The most recent connections (bounded), oldest first. */
    recent: TcpConnectionRecord[];
  };
  udp: {
    datagrams: number;
    bytes: number;
    /** Datagrams per client "addr:port" ("[v6]:port" for IPv6). */
    flows: Record<string, number>;
    /** Datagrams from flows not recorded because the flow table was full. */
    flowsDropped: number;
  };
  http: { requests: number; status: number };
}

export interface TcpConnectionRecord {
  client: string;
  localPort: number;
  bytesIn: number;
  bytesOut: number;
  openedAt: number;
  closedAt: number | null;
}

export type StopReason = 'count' | 'duration' | 'signal' | 'done' | 'hard-timeout';

export interface ReportBase {
  mode: 'http' | 'long' | 'udp';
  target: string;
  startedAt: string;
  elapsedS: number;
  stoppedBy: StopReason;
  /** Operations that failed (requests, connections or datagrams, by mode). */
  errors: number;
  /** Error counts by code (ECONNRESET, ETIMEDOUT, status-503, ...). */
  errorKinds: Record<string, number>;
  /** How backends were told apart: auto, header:NAME, body:REGEX, flows (the balancer's flow table), none. */
  attribution: string;
  /** Successful operations whose backend could not be told (no header, no match, no flow entry). */
  unattributed: number;
  /** Shares by backend name: requests (http), connections (long), flows (udp), against expected shares. */
  backends: Record<string, BackendShare>;
  /** Number of backends expected to receive traffic (weight > 0; --backends, else the number seen). */
  fairOver: number;
  /** What the expected shares are based on, and the largest deviation from them. */
  fairness: Pick<Fairness, 'basis' | 'maxDeviationPct'>;
  /** Operations, failures and latency percentiles over time. */
  timeline: TimelineData;
  interim?: boolean;
}

export interface HttpReport extends ReportBase {
  mode: 'http';
  requests: number;
  ok: number;
  failed: number;
  throughputRps: number;
  latencyMs: LatencySummary;
  statusCodes: Record<string, number>;
}

export type LongProtocol = 'echo' | 'http';

export interface LongConnection {
  id: number;
  backend: string | null;
  localPort: number | null;
  sent: number;
  ok: number;
  mismatches: number;
  maxStallMs: number;
  stalled: boolean;
  broken: boolean;
  /** Why it broke: ECONNRESET, closed-by-peer, connect-timeout, ... */
  reason: string | null;
}

export interface LongReport extends ReportBase {
  mode: 'long';
  /** echo: newline-delimited lines echoed back; http: GET requests on one keep-alive connection. */
  protocol: LongProtocol;
  connections: number;
  established: number;
  messagesSent: number;
  messagesOk: number;
  broken: number;
  stalled: number;
  stallThresholdMs: number;
  maxStallMs: number;
  /** Round trip of each echoed line or keep-alive request. */
  latencyMs: LatencySummary;
  perConnection: LongConnection[];
}

export interface UdpFlow {
  id: number;
  localPort: number | null;
  sent: number;
  replies: number;
  backends: string[];
}

export interface UdpReport extends ReportBase {
  mode: 'udp';
  flows: number;
  perFlow: number;
  sent: number;
  replies: number;
  lost: number;
  /** Flows that got a reply to every datagram. */
  flowsComplete: number;
  /** Flows that got replies from more than one backend (must be 0 behind a flow-consistent balancer). */
  flowsSplit: number;
  flowsNoReply: number;
  latencyMs: LatencySummary;
  perFlowDetail: UdpFlow[];
}

export type LoadReport = HttpReport | LongReport | UdpReport;

/** A plain fixed-width text table. */
export function table(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [headers, ...rows].map((r) => r.map((c) => String(c)));
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(cells[0] ?? []), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}
