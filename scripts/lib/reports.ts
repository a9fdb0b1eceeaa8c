/**
 * Shapes shared by the lab's processes and the tests that read them: the backend server's
 * stats JSON and load.ts's --json reports, plus the small statistics they are built from.
 */

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

export interface LatencySummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface BackendShare {
  count: number;
  /** Fraction of the total, 0..1. */
  share: number;
  /** (share - fair) / fair * 100, where fair = 1 / number of backends. */
  deviationPct: number;
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
  /** Shares by backend name: requests (http), connections (long), flows (udp). */
  backends: Record<string, BackendShare>;
  /** Number of backends the fair share is computed for (--backends, else the number seen). */
  fairOver: number;
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
  connections: number;
  established: number;
  messagesSent: number;
  messagesOk: number;
  broken: number;
  stalled: number;
  stallThresholdMs: number;
  maxStallMs: number;
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

export function summarize(values: readonly number[]): LatencySummary {
  if (values.length === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  const s = Float64Array.from(values).sort();
  const pick = (q: number): number => round3(s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))] ?? 0);
  let sum = 0;
  for (const v of s) sum += v;
  return {
    count: s.length,
    min: round3(s[0] ?? 0),
    mean: round3(sum / s.length),
    p50: pick(0.5),
    p90: pick(0.9),
    p99: pick(0.99),
    max: round3(s[s.length - 1] ?? 0),
  };
}

export function shares(counts: ReadonlyMap<string, number>, expected?: number): { backends: Record<string, BackendShare>; fairOver: number } {
  let total = 0;
  for (const c of counts.values()) total += c;
  const fairOver = expected && expected > 0 ? expected : Math.max(1, counts.size);
  const fair = 1 / fairOver;
  const backends: Record<string, BackendShare> = {};
  for (const [name, count] of [...counts.entries()].sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))) {
    const share = total > 0 ? count / total : 0;
    backends[name] = { count, share: round3(share), deviationPct: round3(((share - fair) / fair) * 100) };
  }
  return { backends, fairOver };
}

export function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/** A plain fixed-width text table. */
export function table(headers: readonly string[], rows: readonly (readonly (string | number)[])[]): string {
  const cells = [headers, ...rows].map((r) => r.map((c) => String(c)));
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: readonly string[]): string => r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd();
  return [line(cells[0] ?? []), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join('\n');
}
