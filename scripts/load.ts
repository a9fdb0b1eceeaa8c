/**
 * Load generator for any TCP, HTTP or UDP server, with or without Sluice in front. In the lab it
 * runs inside the client namespace:
 *
 *   ip netns exec sl-xxxx-cl node dist/scripts/load.js --mode http --target 198.51.100.10:80 \
 *       --count 500 --concurrency 20 --duration 20 [--json] [--report run.html]
 *
 * Modes:
 *   http  one new TCP connection per request (no keep-alive); latency and backend per request.
 *   long  --connections long-lived TCP connections; each sends a message every --interval ms and
 *         expects its answer: --protocol echo (lines, any line echo server) or http (GET requests
 *         on one keep-alive connection). Reports broken (reset/closed/error) and stalled ones.
 *   udp   --flows UDP flows (one socket, so one source port, each) of --per-flow datagrams;
 *         reports which backend answered each flow and flows answered by more than one.
 * Which backend served what (optional): --attribute auto | header[:NAME] | body:REGEX | flows | none
 * (flows asks the balancer's flow table through --admin-socket). Shares are judged against
 * --weights NAME=W,... or, with flows, the weights the balancer reports; else an equal split.
 * Every run is bounded by count and time and exits by itself. SIGUSR2 (or the word "snapshot" in
 * --control-file) prints an interim JSON snapshot; SIGTERM/SIGINT (or "stop") ends the run early
 * and still prints the report. --json prints the final report as one JSON line on stdout.
 */
import { Command, Option } from 'commander';
import { request } from 'node:http';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { backendOfDatagram, backendOfHttp, describeAttribution, parseAttribution, type Attribution } from './lib/attribution.js';
import { FlowTableAttribution, weightsFromAdmin } from './lib/balancer-admin.js';
import { intIn, numberIn } from './lib/cli-args.js';
import { fairness, parseWeights } from './lib/fairness.js';
import { errCode, LongConn } from './lib/long-connection.js';
import { renderReportHtml } from './lib/report-html.js';
import { parseTarget, type Target } from './lib/target.js';
import { bucketWidthFor, Timeline } from './lib/timeline.js';
import {
  round3,
  summarize,
  table,
  type HttpReport,
  type LoadReport,
  type LongProtocol,
  type LongReport,
  type ReportBase,
  type StopReason,
  type UdpFlow,
  type UdpReport,
} from './lib/reports.js';

const MAX_COUNT = 1_000_000;
const MAX_DURATION_S = 600;
const MAX_CONNECTIONS = 5000;
/** After the run's own end, in-flight work gets this long before the process reports and exits anyway. */
const HARD_GRACE_MS = 15_000;

interface Options {
  mode: 'http' | 'long' | 'udp';
  target: string;
  count: number;
  duration: number;
  concurrency: number;
  rate?: number;
  path: string;
  timeout: number;
  connections: number;
  protocol: LongProtocol;
  interval?: number;
  stallMs: number;
  connectConcurrency: number;
  flows: number;
  perFlow: number;
  backends?: number;
  attribute: string;
  adminSocket?: string;
  weights?: string;
  report?: string;
  bind?: string;
  controlFile?: string;
  json?: boolean;
}

const program = new Command()
  .name('load')
  .description('Load generator for any TCP, HTTP or UDP server (in the lab: run it inside the client namespace)')
  .addOption(new Option('--mode <mode>', 'http | long | udp').choices(['http', 'long', 'udp']).makeOptionMandatory())
  .requiredOption('--target <host:port>', 'VIP and port, e.g. 198.51.100.10:80 or [2001:db8:100::10]:80')
  .option('--count <n>', `http: requests at most (<= ${MAX_COUNT})`, intIn(1, MAX_COUNT), 100)
  .option('--duration <s>', `seconds at most (<= ${MAX_DURATION_S}); long: how long connections live`, numberIn(0.1, MAX_DURATION_S), 10)
  .option('--concurrency <n>', 'http: requests in flight', intIn(1, MAX_CONNECTIONS), 10)
  .option('--rate <rps>', 'http: at most this many requests per second', numberIn(0.1, 1_000_000))
  .option('--path <path>', 'http (and long --protocol http): request path', '/')
  .option('--timeout <ms>', 'per request / per datagram / per connect timeout', intIn(10, 120_000), 5000)
  .option('--connections <n>', `long: connections (<= ${MAX_CONNECTIONS})`, intIn(1, MAX_CONNECTIONS), 10)
  .addOption(new Option('--protocol <p>', 'long: echo (lines echoed back) | http (GET on one keep-alive connection)').choices(['echo', 'http']).default('echo'))
  .option('--interval <ms>', 'long: ms between messages on each connection (default 100); udp: between datagrams of a flow', intIn(0, 60_000))
  .option('--stall-ms <ms>', 'long: a connection whose longest stall exceeds this counts as stalled', intIn(1, 600_000), 1000)
  .option('--connect-concurrency <n>', 'long: connection attempts in flight while ramping up', intIn(1, MAX_CONNECTIONS), 50)
  .option('--flows <n>', `udp: flows (<= ${MAX_CONNECTIONS})`, intIn(1, MAX_CONNECTIONS), 20)
  .option('--per-flow <k>', 'udp: datagrams per flow', intIn(1, MAX_COUNT), 10)
  .option('--attribute <how>', 'which backend served: auto | header[:NAME] | body:REGEX | flows | none', 'auto')
  .option('--admin-socket <path>', "the balancer's admin socket: --attribute flows reads its flow table (and weights)")
  .option('--weights <list>', 'expected shares: NAME=WEIGHT,... (names as attributed); default with flows: the balancer\'s weights')
  .option('--backends <n>', 'without weights: the number of backends an equal share is computed over (default: the number seen)', intIn(1, 10_000))
  .option('--report <file.html>', 'also write a self-contained HTML report with plots')
  .option('--bind <addr>', 'local source address (e.g. the client\'s second path)')
  .option('--control-file <path>', 'polled every 250 ms: "snapshot" prints an interim report, "stop" ends the run; the file is then removed')
  .option('--json', 'print the final report as one JSON line')
  .parse();

const opts = program.opts<Options>();
function usage(message: string): never {
  process.stderr.write(`load: ${message}\n`);
  process.exit(2);
}
let target: Target;
let attribution: Attribution;
let givenWeights: Map<string, number> | undefined;
try {
  target = parseTarget(opts.target);
  attribution = parseAttribution(opts.attribute);
  if (opts.weights) givenWeights = parseWeights(opts.weights);
} catch (err) {
  usage((err as Error).message);
}
if (opts.mode === 'udp' && opts.flows * opts.perFlow > MAX_COUNT) usage(`--flows x --per-flow must be <= ${MAX_COUNT}`);
if (attribution.kind === 'header' && !(opts.mode === 'http' || (opts.mode === 'long' && opts.protocol === 'http'))) {
  usage(`--attribute ${opts.attribute} needs HTTP responses (--mode http, or --mode long --protocol http)`);
}
if (attribution.kind === 'flows' && !opts.adminSocket) usage('--attribute flows needs --admin-socket PATH (the balancer\'s admin socket)');
if (!opts.path.startsWith('/')) usage(`--path must start with "/", got "${opts.path}"`);
const protocol: 'tcp' | 'udp' = opts.mode === 'udp' ? 'udp' : 'tcp';

// ---- run control -----------------------------------------------------------------------
const startedAt = new Date();
const t0 = performance.now();
const deadline = t0 + opts.duration * 1000;
const timeline = new Timeline(bucketWidthFor(opts.duration));
let flowTable: FlowTableAttribution | null = null;
let weights: Map<string, number> | undefined = givenWeights;
let stopReason: StopReason | null = null;
const stopListeners: (() => void)[] = [];
function requestStop(reason: StopReason): void {
  if (stopReason) return;
  stopReason = reason;
  for (const l of stopListeners.splice(0)) l();
}
const now = (): number => performance.now();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/** Sleep that ends early when the run is asked to stop. */
function stoppableSleep(ms: number): Promise<void> {
  if (stopReason || ms <= 0) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      resolve();
    }
    stopListeners.push(done);
  });
}

let snapshotFn: () => LoadReport = () => {
  throw new Error('no snapshot yet');
};
function printSnapshot(): void {
  try {
    process.stdout.write(JSON.stringify({ ...snapshotFn(), interim: true }) + '\n');
  } catch {
    // nothing to report yet
  }
}

/** A successful operation's backend: named by the server, or looked up in the flow table by the client endpoint. */
interface Attributed {
  backend: string | null;
  localAddress: string | null;
  localPort: number | null;
}

/** Counts by backend; operations named by nobody count as unattributed. */
function countBackends(items: Iterable<Attributed>): { counts: Map<string, number>; unattributed: number } {
  const counts = new Map<string, number>();
  let unattributed = 0;
  for (const it of items) {
    let name = it.backend;
    if (name === null && flowTable && it.localPort !== null) name = flowTable.backendOf(it.localAddress ?? '', it.localPort);
    if (name === null) unattributed++;
    else bump(counts, name);
  }
  return { counts, unattributed: attribution.kind === 'none' ? 0 : unattributed };
}

function base(mode: ReportBase['mode'], errorKinds: Map<string, number>, items: Iterable<Attributed>, stoppedBy: StopReason): ReportBase {
  const errs = Object.fromEntries([...errorKinds.entries()].sort());
  let errors = 0;
  for (const v of errorKinds.values()) errors += v;
  const { counts, unattributed } = countBackends(items);
  const fair = fairness(counts, { weights, expected: opts.backends });
  return {
    mode,
    target: opts.target,
    startedAt: startedAt.toISOString(),
    elapsedS: round3((now() - t0) / 1000),
    stoppedBy,
    errors,
    errorKinds: errs,
    attribution: describeAttribution(attribution),
    unattributed,
    backends: fair.backends,
    fairOver: fair.fairOver,
    fairness: { basis: fair.basis, maxDeviationPct: fair.maxDeviationPct },
    timeline: timeline.data(),
  };
}

function bump(m: Map<string, number>, k: string, by = 1): void {
  m.set(k, (m.get(k) ?? 0) + by);
}

// ---- http ------------------------------------------------------------------------------
interface HttpResult extends Attributed {
  ok: boolean;
  ms: number;
  status: number | null;
  error: string | null;
}

function oneRequest(): Promise<HttpResult> {
  const start = now();
  return new Promise((resolve) => {
    let settled = false;
    let localAddress: string | null = null;
    let localPort: number | null = null;
    const finish = (r: Omit<HttpResult, 'ms' | 'localAddress' | 'localPort'>): void => {
      if (settled) return;
      settled = true;
      resolve({ ...r, localAddress, localPort, ms: now() - start });
    };
    const req = request(
      {
        host: target.host,
        port: target.port,
        family: target.family,
        path: opts.path,
        method: 'GET',
        agent: false, // a fresh connection per request, closed after it
        headers: { connection: 'close' },
        localAddress: opts.bind,
        timeout: opts.timeout,
      },
      (res) => {
        localAddress = res.socket.localAddress ?? null;
        localPort = res.socket.localPort ?? null;
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (body.length <= 65536) body += c;
        });
        res.on('error', (err) => finish({ ok: false, backend: null, status: res.statusCode ?? null, error: errCode(err) }));
        res.on('close', () => {
          if (!res.complete) finish({ ok: false, backend: null, status: res.statusCode ?? null, error: 'aborted' });
        });
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          const ok = status >= 200 && status < 300;
          finish({ ok, backend: ok ? backendOfHttp(attribution, res.headers, body) : null, status, error: ok ? null : `status-${status}` });
        });
      },
    );
    req.on('timeout', () => req.destroy(Object.assign(new Error('request timed out'), { code: 'ETIMEDOUT' })));
    req.on('error', (err) => finish({ ok: false, backend: null, status: null, error: errCode(err) }));
    req.end();
  });
}

async function runHttp(): Promise<HttpReport> {
  let issued = 0;
  let ok = 0;
  let failed = 0;
  const latencies: number[] = [];
  const served: Attributed[] = [];
  const errorKinds = new Map<string, number>();
  const statusCodes = new Map<string, number>();
  let nextSlot = now();
  const gap = opts.rate ? 1000 / opts.rate : 0;
  let ended: StopReason = 'count';

  const report = (stoppedBy: StopReason): HttpReport => {
    const elapsed = (now() - t0) / 1000;
    return {
      ...base('http', errorKinds, served, stoppedBy),
      mode: 'http',
      requests: ok + failed,
      ok,
      failed,
      throughputRps: round3(elapsed > 0 ? (ok + failed) / elapsed : 0),
      latencyMs: summarize(latencies),
      statusCodes: Object.fromEntries(statusCodes),
    };
  };
  snapshotFn = () => report(stopReason ?? 'duration');

  const worker = async (): Promise<void> => {
    for (;;) {
      if (stopReason) return;
      if (issued >= opts.count) return;
      if (now() >= deadline) {
        ended = 'duration';
        return;
      }
      issued++;
      if (gap > 0) {
        const slot = Math.max(nextSlot, now());
        nextSlot = slot + gap;
        await stoppableSleep(slot - now());
        if (stopReason) {
          issued--;
          return;
        }
      }
      const r = await oneRequest();
      if (r.status !== null) bump(statusCodes, String(r.status));
      if (r.ok) {
        ok++;
        latencies.push(r.ms);
        timeline.ok(now() - t0, r.ms);
        served.push({ backend: r.backend, localAddress: r.localAddress, localPort: r.localPort });
      } else {
        failed++;
        timeline.error(now() - t0);
        bump(errorKinds, r.error ?? 'unknown');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.count) }, worker));
  return report(stopReason ?? ended);
}

// ---- long-lived connections ------------------------------------------------------------
async function runLong(): Promise<LongReport> {
  const conns: LongConn[] = [];
  const latencies: number[] = [];
  const report = (stoppedBy: StopReason): LongReport => {
    const per = conns.map((c) => c.view());
    const errorKinds = new Map<string, number>();
    let sent = 0;
    let okMsgs = 0;
    let maxStall = 0;
    for (const c of per) {
      if (c.broken) bump(errorKinds, c.reason ?? 'unknown');
      sent += c.sent;
      okMsgs += c.ok;
      maxStall = Math.max(maxStall, c.maxStallMs);
    }
    const established = conns.filter((c) => c.established);
    const r: LongReport = {
      ...base(
        'long',
        errorKinds,
        established.map((c) => ({ backend: c.rec.backend, localAddress: c.localAddress, localPort: c.rec.localPort })),
        stoppedBy,
      ),
      mode: 'long',
      protocol: opts.protocol,
      connections: opts.connections,
      established: established.length,
      messagesSent: sent,
      messagesOk: okMsgs,
      broken: per.filter((c) => c.broken).length,
      stalled: per.filter((c) => c.stalled).length,
      stallThresholdMs: opts.stallMs,
      maxStallMs: round3(maxStall),
      latencyMs: summarize(latencies),
      perConnection: per,
    };
    // Connections the flow table attributes get their backend in the per-connection detail too.
    if (flowTable) {
      for (let i = 0; i < per.length; i++) {
        const c = conns[i];
        const row = per[i];
        if (c && row && row.backend === null && row.localPort !== null) row.backend = flowTable.backendOf(c.localAddress ?? '', row.localPort);
      }
    }
    return r;
  };
  snapshotFn = () => report(stopReason ?? 'duration');

  const settings = {
    target,
    protocol: opts.protocol,
    attribution,
    bind: opts.bind,
    timeout: opts.timeout,
    interval: opts.interval ?? 100,
    stallMs: opts.stallMs,
    path: opts.path,
    now,
    onAnswer: (at: number, rtt: number): void => {
      latencies.push(rtt);
      timeline.ok(at - t0, rtt);
    },
    onBroken: (at: number): void => timeline.error(at - t0),
  };
  // Ramp up with a bounded number of connects in flight.
  let next = 0;
  const opener = async (): Promise<void> => {
    while (next < opts.connections && !stopReason && now() < deadline) {
      const c = new LongConn(++next, settings);
      conns.push(c);
      await c.open();
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.connectConcurrency, opts.connections) }, opener));
  // Run until the end, a stop request, or until no connection is left alive.
  let ended: StopReason = 'duration';
  while (!stopReason && now() < deadline) {
    if (conns.every((c) => c.rec.broken)) {
      ended = 'done';
      break;
    }
    await stoppableSleep(Math.min(100, deadline - now()));
  }
  // Let answers in flight arrive (briefly), then close.
  const settleUntil = now() + Math.min(opts.stallMs, 2000);
  while (now() < settleUntil && conns.some((c) => !c.rec.broken && c.pending() > 0)) await sleep(10);
  for (const c of conns) c.close();
  return report(stopReason ?? ended);
}

// ---- udp flows -------------------------------------------------------------------------
interface UdpFlowState extends UdpFlow {
  localAddress: string | null;
}

async function runUdp(): Promise<UdpReport> {
  const flows: UdpFlowState[] = [];
  const latencies: number[] = [];
  const errorKinds = new Map<string, number>();
  let sentTotal = 0;
  let repliesTotal = 0;

  const report = (stoppedBy: StopReason): UdpReport => {
    const answered = flows.filter((f) => f.replies > 0);
    const lost = Math.max(0, sentTotal - repliesTotal);
    const errs = new Map(errorKinds);
    if (lost > 0) errs.set('lost', lost);
    return {
      ...base('udp', errs, answered.map((f) => ({ backend: f.backends[0] ?? null, localAddress: f.localAddress, localPort: f.localPort })), stoppedBy),
      mode: 'udp',
      flows: opts.flows,
      perFlow: opts.perFlow,
      sent: sentTotal,
      replies: repliesTotal,
      lost,
      flowsComplete: flows.filter((f) => f.sent === opts.perFlow && f.replies >= f.sent).length,
      flowsSplit: flows.filter((f) => f.backends.length > 1).length,
      flowsNoReply: flows.filter((f) => f.replies === 0).length,
      latencyMs: summarize(latencies),
      perFlowDetail: flows.map(({ localAddress: _a, ...f }) => f),
    };
  };
  snapshotFn = () => report(stopReason ?? 'duration');

  const runFlow = async (id: number): Promise<void> => {
    const flow: UdpFlowState = { id, localPort: null, localAddress: null, sent: 0, replies: 0, backends: [] };
    flows.push(flow);
    const sock: UdpSocket = createSocket(target.family === 6 ? 'udp6' : 'udp4');
    let waiter: ((msg: string | null) => void) | null = null;
    let lastSent = '';
    const noteReply = (reply: string): void => {
      const name = backendOfDatagram(attribution, reply, lastSent);
      if (name !== null && !flow.backends.includes(name)) flow.backends.push(name);
    };
    sock.on('message', (msg: Buffer) => {
      const w = waiter;
      waiter = null;
      if (w) w(msg.toString('utf8'));
      else {
        // A late reply to an earlier datagram.
        flow.replies++;
        repliesTotal++;
        noteReply(msg.toString('utf8'));
      }
    });
    sock.on('error', (err) => bump(errorKinds, errCode(err)));
    try {
      await new Promise<void>((resolve, reject) => {
        sock.once('error', reject);
        sock.bind({ port: 0, address: opts.bind }, () => {
          sock.connect(target.port, target.host, () => {
            sock.off('error', reject);
            resolve();
          });
        });
      });
      const local = sock.address();
      flow.localPort = local.port;
      flow.localAddress = local.address;
      for (let k = 1; k <= opts.perFlow; k++) {
        if (stopReason || now() >= deadline) break;
        const sentAt = now();
        lastSent = `f ${id} ${k}`;
        const reply = await new Promise<string | null>((resolve) => {
          const t = setTimeout(() => {
            waiter = null;
            resolve(null);
          }, opts.timeout);
          waiter = (m) => {
            clearTimeout(t);
            resolve(m);
          };
          sock.send(lastSent, (err) => {
            if (err) bump(errorKinds, errCode(err));
          });
          flow.sent++;
          sentTotal++;
        });
        if (reply !== null) {
          flow.replies++;
          repliesTotal++;
          latencies.push(now() - sentAt);
          timeline.ok(now() - t0, now() - sentAt);
          noteReply(reply);
        } else {
          timeline.error(now() - t0);
        }
        if (opts.interval) await stoppableSleep(opts.interval);
      }
    } catch (err) {
      bump(errorKinds, errCode(err));
    } finally {
      sock.close();
    }
  };
  await Promise.all(Array.from({ length: opts.flows }, (_, i) => runFlow(i + 1)));
  const done = flows.every((f) => f.sent === opts.perFlow);
  return report(stopReason ?? (done ? 'done' : 'duration'));
}

// ---- output ----------------------------------------------------------------------------
function human(r: LoadReport): string {
  const lines: string[] = [];
  lines.push(`${r.mode}${r.mode === 'long' ? ` (${r.protocol})` : ''} -> ${r.target}: ${r.elapsedS} s, stopped by ${r.stoppedBy}`);
  if (r.mode === 'http') {
    lines.push(`requests ${r.requests}  ok ${r.ok}  failed ${r.failed}  throughput ${r.throughputRps} req/s`);
    const l = r.latencyMs;
    lines.push(`latency ms  p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  max ${l.max}`);
  } else if (r.mode === 'long') {
    lines.push(
      `connections ${r.connections}  established ${r.established}  broken ${r.broken}  stalled (> ${r.stallThresholdMs} ms) ${r.stalled}  longest stall ${r.maxStallMs} ms`,
    );
    lines.push(`messages sent ${r.messagesSent}  answered ${r.messagesOk}  rtt ms p50 ${r.latencyMs.p50}  p99 ${r.latencyMs.p99}`);
  } else {
    lines.push(`flows ${r.flows} x ${r.perFlow}  sent ${r.sent}  replies ${r.replies}  lost ${r.lost}  split flows ${r.flowsSplit}  no reply ${r.flowsNoReply}`);
    const l = r.latencyMs;
    lines.push(`rtt ms  p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  max ${l.max}`);
  }
  if (r.errors > 0) lines.push(`errors ${r.errors}: ${Object.entries(r.errorKinds).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const unit = r.mode === 'http' ? 'requests' : r.mode === 'long' ? 'connections' : 'flows';
  const rows = Object.entries(r.backends).map(([name, b]) => [
    name,
    b.count,
    b.weight,
    `${(b.share * 100).toFixed(1)}%`,
    `${(b.expectedShare * 100).toFixed(1)}%`,
    b.unexpected ? 'unexpected' : `${b.deviationPct >= 0 ? '+' : ''}${b.deviationPct.toFixed(1)}%`,
  ]);
  const basis = r.fairness.basis === 'weights' ? 'weights' : `equal over ${r.fairOver}`;
  if (rows.length > 0) lines.push('', table(['backend', unit, 'weight', 'share', 'expected', `vs expected (${basis})`], rows));
  else lines.push('', `no per-backend attribution (--attribute ${r.attribution})`);
  if (r.unattributed > 0) lines.push(`${r.unattributed} ${unit} not attributed to a backend (--attribute ${r.attribution})`);
  return lines.join('\n') + '\n';
}

let printed = false;
async function finish(r: LoadReport): Promise<void> {
  if (!printed) {
    printed = true;
    if (flowTable) {
      await flowTable.stop();
      // The table was read once more: attribute again with everything it held.
      try {
        r = { ...snapshotFn(), stoppedBy: r.stoppedBy, elapsedS: r.elapsedS };
      } catch {
        // keep r
      }
      if (flowTable.lastError && r.unattributed > 0) process.stderr.write(`load: flow table: ${flowTable.lastError}\n`);
    }
    if (opts.report) {
      try {
        writeFileSync(opts.report, await renderReportHtml(r));
        if (!opts.json) process.stderr.write(`load: report written to ${opts.report}\n`);
      } catch (err) {
        process.stderr.write(`load: could not write the report ${opts.report}: ${(err as Error).message}\n`);
        process.exitCode = 1;
      }
    }
    process.stdout.write(opts.json ? JSON.stringify(r) + '\n' : human(r));
  }
  // Flush stdout before leaving (it may be a pipe).
  process.stdout.write('', () => process.exit(process.exitCode ?? 0));
  setTimeout(() => process.exit(process.exitCode ?? 0), 2000).unref();
}

async function prepare(): Promise<void> {
  if (attribution.kind !== 'flows' || !opts.adminSocket) return;
  flowTable = new FlowTableAttribution(opts.adminSocket, target.host, target.port, protocol);
  await flowTable.start();
  // Names are backend addresses here, so the balancer's own weights apply.
  if (!weights) weights = await weightsFromAdmin(opts.adminSocket, target.host, target.port, protocol);
}

function main(): void {
  process.on('SIGTERM', () => requestStop('signal'));
  process.on('SIGINT', () => requestStop('signal'));
  process.on('SIGUSR2', printSnapshot);
  // Tells a supervising process (scripts/lab startLoad) that SIGUSR2 is safe to send now.
  if (opts.json) process.stdout.write('load: ready\n');
  if (opts.controlFile) {
    const file = opts.controlFile;
    setInterval(() => {
      if (!existsSync(file)) return;
      let cmd = '';
      try {
        cmd = readFileSync(file, 'utf8').trim();
        unlinkSync(file);
      } catch {
        return;
      }
      if (cmd === 'stop') requestStop('signal');
      else printSnapshot();
    }, 250).unref();
  }
  // Whatever happens, the process ends: report what there is and exit.
  setTimeout(() => {
    let r: LoadReport;
    try {
      r = { ...snapshotFn(), stoppedBy: 'hard-timeout' };
    } catch {
      process.exit(1);
    }
    void finish(r);
  }, opts.duration * 1000 + opts.timeout + HARD_GRACE_MS);

  const runner: () => Promise<LoadReport> = opts.mode === 'http' ? runHttp : opts.mode === 'long' ? runLong : runUdp;
  prepare()
    .then(runner)
    .then(finish)
    .catch((err: unknown) => {
      process.stderr.write(`load: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exit(1);
    });
}

main();
