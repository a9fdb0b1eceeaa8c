/**
 * Load generator for the lab; meant to run inside the client namespace:
 *
 *   ip netns exec sl-xxxx-cl node dist/scripts/load.js --mode http --target 198.51.100.10:80 \
 *       --count 500 --concurrency 20 --duration 20 [--json]
 *
 * Modes:
 *   http  one new TCP connection per request (no keep-alive); latency and backend per request.
 *   long  --connections long-lived TCP connections to the echo port; each sends a line every
 *         --interval ms and expects its echo; reports broken (reset/closed/error) and stalled ones.
 *   udp   --flows UDP flows (one socket, so one source port, each) of --per-flow datagrams;
 *         reports which backend answered each flow and flows answered by more than one.
 * Every run is bounded by count and time and exits by itself. SIGUSR2 (or the word "snapshot" in
 * --control-file) prints an interim JSON snapshot; SIGTERM/SIGINT (or "stop") ends the run early
 * and still prints the report. --json prints the final report as one JSON line on stdout.
 */
import { Command, Option } from 'commander';
import { request } from 'node:http';
import { connect, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { intIn, numberIn } from './lib/cli-args.js';
import { parseTarget, type Target } from './lib/target.js';
import {
  round3,
  shares,
  summarize,
  table,
  type HttpReport,
  type LoadReport,
  type LongConnection,
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
  interval: number;
  stallMs: number;
  connectConcurrency: number;
  flows: number;
  perFlow: number;
  backends?: number;
  bind?: string;
  controlFile?: string;
  json?: boolean;
}

const program = new Command()
  .name('load')
  .description('Sluice lab load generator (run it inside the client namespace)')
  .addOption(new Option('--mode <mode>', 'http | long | udp').choices(['http', 'long', 'udp']).makeOptionMandatory())
  .requiredOption('--target <host:port>', 'VIP and port, e.g. 198.51.100.10:80 or [2001:db8:100::10]:80')
  .option('--count <n>', `http: requests at most (<= ${MAX_COUNT})`, intIn(1, MAX_COUNT), 100)
  .option('--duration <s>', `seconds at most (<= ${MAX_DURATION_S}); long: how long connections live`, numberIn(0.1, MAX_DURATION_S), 10)
  .option('--concurrency <n>', 'http: requests in flight', intIn(1, MAX_CONNECTIONS), 10)
  .option('--rate <rps>', 'http: at most this many requests per second', numberIn(0.1, 1_000_000))
  .option('--path <path>', 'http: request path (GET /bytes?n=N for transfers)', '/')
  .option('--timeout <ms>', 'per request / per datagram / per connect timeout', intIn(10, 120_000), 5000)
  .option('--connections <n>', `long: connections (<= ${MAX_CONNECTIONS})`, intIn(1, MAX_CONNECTIONS), 10)
  .option('--interval <ms>', 'long: ms between lines on each connection; udp: between datagrams of a flow', intIn(0, 60_000))
  .option('--stall-ms <ms>', 'long: a connection whose longest stall exceeds this counts as stalled', intIn(1, 600_000), 1000)
  .option('--connect-concurrency <n>', 'long: connection attempts in flight while ramping up', intIn(1, MAX_CONNECTIONS), 50)
  .option('--flows <n>', `udp: flows (<= ${MAX_CONNECTIONS})`, intIn(1, MAX_CONNECTIONS), 20)
  .option('--per-flow <k>', 'udp: datagrams per flow', intIn(1, MAX_COUNT), 10)
  .option('--backends <n>', 'number of backends the fair share is computed over (default: the number seen)', intIn(1, 10_000))
  .option('--bind <addr>', 'local source address (e.g. the client\'s second path)')
  .option('--control-file <path>', 'polled every 250 ms: "snapshot" prints an interim report, "stop" ends the run; the file is then removed')
  .option('--json', 'print the final report as one JSON line')
  .parse();

const opts = program.opts<Options>();
let target: Target;
try {
  target = parseTarget(opts.target);
} catch (err) {
  process.stderr.write(`load: ${(err as Error).message}\n`);
  process.exit(2);
}
if (opts.mode === 'udp' && opts.flows * opts.perFlow > MAX_COUNT) {
  process.stderr.write(`load: --flows x --per-flow must be <= ${MAX_COUNT}\n`);
  process.exit(2);
}

// ---- run control -----------------------------------------------------------------------
const startedAt = new Date();
const t0 = performance.now();
const deadline = t0 + opts.duration * 1000;
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

function base(mode: ReportBase['mode'], errorKinds: Map<string, number>, backends: Map<string, number>, stoppedBy: StopReason): ReportBase {
  const errs = Object.fromEntries([...errorKinds.entries()].sort());
  let errors = 0;
  for (const v of errorKinds.values()) errors += v;
  const sh = shares(backends, opts.backends);
  return {
    mode,
    target: opts.target,
    startedAt: startedAt.toISOString(),
    elapsedS: round3((now() - t0) / 1000),
    stoppedBy,
    errors,
    errorKinds: errs,
    backends: sh.backends,
    fairOver: sh.fairOver,
  };
}

function bump(m: Map<string, number>, k: string, by = 1): void {
  m.set(k, (m.get(k) ?? 0) + by);
}

function errCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') return (err as { code: string }).code;
  return err instanceof Error ? err.message.slice(0, 60) : String(err);
}

// ---- http ------------------------------------------------------------------------------
interface HttpResult {
  ok: boolean;
  ms: number;
  backend: string | null;
  status: number | null;
  error: string | null;
}

function oneRequest(): Promise<HttpResult> {
  const start = now();
  return new Promise((resolve) => {
    let settled = false;
    const finish = (r: Omit<HttpResult, 'ms'>): void => {
      if (settled) return;
      settled = true;
      resolve({ ...r, ms: now() - start });
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
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size <= 65536) chunks.push(c);
        });
        res.on('error', (err) => finish({ ok: false, backend: null, status: res.statusCode ?? null, error: errCode(err) }));
        res.on('close', () => {
          if (!res.complete) finish({ ok: false, backend: null, status: res.statusCode ?? null, error: 'aborted' });
        });
        res.on('end', () => {
          let backend = typeof res.headers['x-backend'] === 'string' ? res.headers['x-backend'] : null;
          if (!backend) {
            try {
              const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { backend?: unknown };
              if (typeof body.backend === 'string') backend = body.backend;
            } catch {
              // not JSON
            }
          }
          const status = res.statusCode ?? 0;
          const ok = status >= 200 && status < 300;
          finish({ ok, backend, status, error: ok ? null : `status-${status}` });
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
  const backends = new Map<string, number>();
  const errorKinds = new Map<string, number>();
  const statusCodes = new Map<string, number>();
  let nextSlot = now();
  const gap = opts.rate ? 1000 / opts.rate : 0;
  let ended: StopReason = 'count';

  const report = (stoppedBy: StopReason): HttpReport => {
    const elapsed = (now() - t0) / 1000;
    return {
      ...base('http', errorKinds, backends, stoppedBy),
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
        if (r.backend) bump(backends, r.backend);
      } else {
        failed++;
        bump(errorKinds, r.error ?? 'unknown');
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, opts.count) }, worker));
  return report(stopReason ?? ended);
}

// ---- long-lived echo connections ----------------------------------------------------------
class LongConn {
  readonly rec: LongConnection;
  socket: Socket | null = null;
  #buf = '';
  #seq = 0;
  #outstanding: { seq: number; at: number }[] = [];
  #lastEchoAt = 0;
  #timer: NodeJS.Timeout | null = null;
  #closing = false;
  #established: () => void = () => undefined;

  constructor(id: number) {
    this.rec = { id, backend: null, localPort: null, sent: 0, ok: 0, mismatches: 0, maxStallMs: 0, stalled: false, broken: false, reason: null };
  }

  /** Resolves once the connection said hello or failed. */
  open(): Promise<void> {
    return new Promise((resolve) => {
      this.#established = resolve;
      const s = connect({ host: target.host, port: target.port, family: target.family, localAddress: opts.bind, timeout: opts.timeout });
      this.socket = s;
      s.setNoDelay(true);
      s.setEncoding('utf8');
      s.on('connect', () => {
        this.rec.localPort = s.localPort ?? null;
      });
      s.on('timeout', () => {
        if (this.rec.backend === null) this.#fail('connect-timeout');
      });
      s.on('data', (chunk: string) => this.#onData(chunk));
      s.on('error', (err) => this.#fail(errCode(err)));
      s.on('end', () => this.#fail('closed-by-peer'));
      s.on('close', () => this.#fail('closed'));
    });
  }

  #onData(chunk: string): void {
    this.#buf += chunk;
    let nl = this.#buf.indexOf('\n');
    while (nl >= 0) {
      const line = this.#buf.slice(0, nl);
      this.#buf = this.#buf.slice(nl + 1);
      nl = this.#buf.indexOf('\n');
      this.#onLine(line);
    }
    if (this.#buf.length > 65536) this.#buf = '';
  }

  #onLine(line: string): void {
    const t = now();
    if (this.rec.backend === null) {
      const m = /^hello (\S+)/.exec(line);
      if (!m) {
        this.#fail('no-hello');
        return;
      }
      this.rec.backend = m[1] ?? null;
      this.socket?.setTimeout(0);
      this.#lastEchoAt = t;
      this.#established();
      this.#tick();
      return;
    }
    const head = this.#outstanding.shift();
    if (!head || line !== `m ${this.rec.id} ${head.seq}`) {
      this.rec.mismatches++;
      return;
    }
    this.rec.ok++;
    this.rec.maxStallMs = Math.max(this.rec.maxStallMs, t - head.at, t - this.#lastEchoAt);
    this.#lastEchoAt = t;
  }

  #tick(): void {
    if (this.#closing || this.rec.broken || !this.socket) return;
    this.#seq++;
    this.#outstanding.push({ seq: this.#seq, at: now() });
    this.rec.sent++;
    this.socket.write(`m ${this.rec.id} ${this.#seq}\n`);
    this.#timer = setTimeout(() => this.#tick(), opts.interval ?? 100);
  }

  #fail(reason: string): void {
    if (this.#closing || this.rec.broken) return;
    this.rec.broken = true;
    this.rec.reason = reason;
    if (this.#timer) clearTimeout(this.#timer);
    this.socket?.destroy();
    this.#established();
  }

  /** The stall so far, counting an echo still outstanding. */
  stallNow(): number {
    const oldest = this.#outstanding[0];
    const t = now();
    let s = this.rec.maxStallMs;
    if (oldest && !this.rec.broken) s = Math.max(s, t - oldest.at, t - this.#lastEchoAt);
    return s;
  }

  pending(): number {
    return this.#outstanding.length;
  }

  /** Stop sending; close gracefully. */
  close(): void {
    if (this.#timer) clearTimeout(this.#timer);
    if (this.rec.broken) return;
    this.rec.maxStallMs = this.stallNow();
    this.#closing = true;
    this.socket?.end();
    const s = this.socket;
    setTimeout(() => s?.destroy(), 1000).unref();
  }

  view(): LongConnection {
    const maxStallMs = round3(this.rec.broken ? this.rec.maxStallMs : this.stallNow());
    return { ...this.rec, maxStallMs, stalled: maxStallMs > opts.stallMs };
  }
}

async function runLong(): Promise<LongReport> {
  const conns: LongConn[] = [];
  const report = (stoppedBy: StopReason): LongReport => {
    const per = conns.map((c) => c.view());
    const backends = new Map<string, number>();
    const errorKinds = new Map<string, number>();
    let sent = 0;
    let okMsgs = 0;
    let maxStall = 0;
    for (const c of per) {
      if (c.backend) bump(backends, c.backend);
      if (c.broken) bump(errorKinds, c.reason ?? 'unknown');
      sent += c.sent;
      okMsgs += c.ok;
      maxStall = Math.max(maxStall, c.maxStallMs);
    }
    return {
      ...base('long', errorKinds, backends, stoppedBy),
      mode: 'long',
      connections: opts.connections,
      established: per.filter((c) => c.backend !== null).length,
      messagesSent: sent,
      messagesOk: okMsgs,
      broken: per.filter((c) => c.broken).length,
      stalled: per.filter((c) => c.stalled).length,
      stallThresholdMs: opts.stallMs,
      maxStallMs: round3(maxStall),
      perConnection: per,
    };
  };
  snapshotFn = () => report(stopReason ?? 'duration');

  // Ramp up with a bounded number of connects in flight.
  let next = 0;
  const opener = async (): Promise<void> => {
    while (next < opts.connections && !stopReason && now() < deadline) {
      const c = new LongConn(++next);
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
  // Let echoes in flight arrive (briefly), then close.
  const settleUntil = now() + Math.min(opts.stallMs, 2000);
  while (now() < settleUntil && conns.some((c) => !c.rec.broken && c.pending() > 0)) await sleep(10);
  for (const c of conns) c.close();
  return report(stopReason ?? ended);
}

// ---- udp flows -------------------------------------------------------------------------
async function runUdp(): Promise<UdpReport> {
  const flows: UdpFlow[] = [];
  const latencies: number[] = [];
  const errorKinds = new Map<string, number>();
  let sentTotal = 0;
  let repliesTotal = 0;

  const report = (stoppedBy: StopReason): UdpReport => {
    const backends = new Map<string, number>();
    for (const f of flows) if (f.backends[0]) bump(backends, f.backends[0]);
    const lost = Math.max(0, sentTotal - repliesTotal);
    const errs = new Map(errorKinds);
    if (lost > 0) errs.set('lost', lost);
    return {
      ...base('udp', errs, backends, stoppedBy),
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
      perFlowDetail: flows,
    };
  };
  snapshotFn = () => report(stopReason ?? 'duration');

  const runFlow = async (id: number): Promise<void> => {
    const flow: UdpFlow = { id, localPort: null, sent: 0, replies: 0, backends: [] };
    flows.push(flow);
    const sock: UdpSocket = createSocket(target.family === 6 ? 'udp6' : 'udp4');
    let waiter: ((msg: string | null) => void) | null = null;
    sock.on('message', (msg: Buffer) => {
      const w = waiter;
      waiter = null;
      if (w) w(msg.toString('utf8'));
      else {
        // A late reply to an earlier datagram.
        flow.replies++;
        repliesTotal++;
        const name = msg.toString('utf8').split(' ')[0] ?? '?';
        if (!flow.backends.includes(name)) flow.backends.push(name);
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
      flow.localPort = sock.address().port;
      for (let k = 1; k <= opts.perFlow; k++) {
        if (stopReason || now() >= deadline) break;
        const sentAt = now();
        const reply = await new Promise<string | null>((resolve) => {
          const t = setTimeout(() => {
            waiter = null;
            resolve(null);
          }, opts.timeout);
          waiter = (m) => {
            clearTimeout(t);
            resolve(m);
          };
          sock.send(`f ${id} ${k}`, (err) => {
            if (err) bump(errorKinds, errCode(err));
          });
          flow.sent++;
          sentTotal++;
        });
        if (reply !== null) {
          flow.replies++;
          repliesTotal++;
          latencies.push(now() - sentAt);
          const name = reply.split(' ')[0] ?? '?';
          if (!flow.backends.includes(name)) flow.backends.push(name);
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
  lines.push(`${r.mode} -> ${r.target}: ${r.elapsedS} s, stopped by ${r.stoppedBy}`);
  if (r.mode === 'http') {
    lines.push(`requests ${r.requests}  ok ${r.ok}  failed ${r.failed}  throughput ${r.throughputRps} req/s`);
    const l = r.latencyMs;
    lines.push(`latency ms  p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  max ${l.max}`);
  } else if (r.mode === 'long') {
    lines.push(
      `connections ${r.connections}  established ${r.established}  broken ${r.broken}  stalled (> ${r.stallThresholdMs} ms) ${r.stalled}  longest stall ${r.maxStallMs} ms`,
    );
    lines.push(`messages sent ${r.messagesSent}  echoed ${r.messagesOk}`);
  } else {
    lines.push(`flows ${r.flows} x ${r.perFlow}  sent ${r.sent}  replies ${r.replies}  lost ${r.lost}  split flows ${r.flowsSplit}  no reply ${r.flowsNoReply}`);
    const l = r.latencyMs;
    lines.push(`rtt ms  p50 ${l.p50}  p90 ${l.p90}  p99 ${l.p99}  max ${l.max}`);
  }
  if (r.errors > 0) lines.push(`errors ${r.errors}: ${Object.entries(r.errorKinds).map(([k, v]) => `${k} ${v}`).join(', ')}`);
  const unit = r.mode === 'http' ? 'requests' : r.mode === 'long' ? 'connections' : 'flows';
  const rows = Object.entries(r.backends).map(([name, b]) => [name, b.count, `${(b.share * 100).toFixed(1)}%`, `${b.deviationPct >= 0 ? '+' : ''}${b.deviationPct.toFixed(1)}%`]);
  lines.push('', table(['backend', unit, 'share', `vs fair (1/${r.fairOver})`], rows));
  return lines.join('\n') + '\n';
}

let printed = false;
function finish(r: LoadReport): void {
  if (!printed) {
    printed = true;
    process.stdout.write(opts.json ? JSON.stringify(r) + '\n' : human(r));
  }
  // Flush stdout before leaving (it may be a pipe).
  process.stdout.write('', () => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
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
    try {
      finish({ ...snapshotFn(), stoppedBy: 'hard-timeout' });
    } catch {
      process.exit(1);
    }
  }, opts.duration * 1000 + opts.timeout + HARD_GRACE_MS);

  const runner = opts.mode === 'http' ? runHttp : opts.mode === 'long' ? runLong : runUdp;
  runner().then(finish, (err: unknown) => {
    process.stderr.write(`load: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  });
}

main();
