/**
 * Helpers for the multi-instance e2e suite (cluster.test.ts): per-instance configs with a
 * cluster section, the router's ECMP route over a chosen subset of instances, status polling,
 * process memory, a long-lived MPTCP client (python3: Node has no MPTCP sockets) that talks to
 * scripts/mptcp-peer.py's server, and a raw UDP sender for control-plane datagrams.
 */
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { VIP4, VIP_PREFIX4, type ConfigService, type Lab } from '../../scripts/lab/topology.js';
import { admin, sleep, type RunningSluice } from './sluice-harness.js';

export const CONTROL_PORT = 7946;
export const MPTCP_PORT = 8080;
export const ECHO_PORT = 7;

/** Balancer k's address on the segment (the lab: lb1 = 10.99.0.2, lb2 = .3, ...). */
export const lbAddress = (k: number): string => `10.99.0.${1 + k}`;

export interface ClusterSection {
  instanceId: string;
  listen: string;
  peers: { id: string; address: string }[];
  keyFile: string;
  heartbeatMs: number;
  failureMs: number;
  queryTimeoutMs: number;
  sync: boolean;
}

export function writeClusterKey(lab: Lab): string {
  const file = join(lab.describe().runDir, 'cluster.key');
  writeFileSync(file, randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
  return file;
}

export function clusterSection(k: number, n: number, keyFile: string, sync: boolean): ClusterSection {
  const peers = Array.from({ length: n }, (_, i) => ({ id: `lb${i + 1}`, address: `${lbAddress(i + 1)}:${CONTROL_PORT}` }));
  return { instanceId: `lb${k}`, listen: `${lbAddress(k)}:${CONTROL_PORT}`, peers, keyFile, heartbeatMs: 200, failureMs: 1000, queryTimeoutMs: 20, sync };
}

/** The config file of instance k (what configFor writes by default). */
export function configPath(lab: Lab, k: number): string {
  return join(lab.describe().runDir, k === 1 ? 'config.json' : `config-lb${k}.json`);
}

/**
 * Write instance k's config the way config management does (write aside, rename over), so its
 * watcher never reads a half-written file. `extra` adds top-level sections (e.g. "announce").
 */
export function writeInstanceConfig(lab: Lab, k: number, n: number, services: ConfigService[], keyFile: string, sync: boolean, extra: Record<string, unknown> = {}): string {
  const target = configPath(lab, k);
  const tmp = lab.configFor(services, { balancer: k, file: `next-lb${k}.json`, extra: { cluster: clusterSection(k, n, keyFile, sync), ...extra } });
  renameSync(tmp, target);
  return target;
}

// ---- the router's ECMP route ------------------------------------------------------------------

export function routerSegmentIf(lab: Lab): string {
  const i = lab.describe().router.interfaces.find((x) => x.peer === 'segment');
  if (!i) throw new Error('lab: router has no segment interface');
  return i.name;
}

/** Point the router's VIP route at these instances only (ECMP, L4 hash, weight 1 each). */
export async function setEcmp(lab: Lab, instances: number[]): Promise<void> {
  const dev = routerSegmentIf(lab);
  const hops = instances.map((k) => `nexthop via ${lbAddress(k)} dev ${dev} weight 1`).join(' ');
  const line = instances.length === 1 ? `route replace ${VIP_PREFIX4} via ${lbAddress(instances[0])} dev ${dev}` : `route replace ${VIP_PREFIX4} ${hops}`;
  await lab.exec('router', ['ip', '-batch', '-'], { input: line + '\n' });
}

/** The router's current next hops for the VIP prefix. */
export async function ecmpHops(lab: Lab): Promise<string[]> {
  const { stdout } = await lab.exec('router', ['ip', '-4', 'route', 'show', VIP_PREFIX4]);
  return [...stdout.matchAll(/via (\S+)/g)].map((m) => m[1]);
}

// ---- status -------------------------------------------------------------------------------

export interface PeerView {
  id: string;
  up: boolean;
  generation: number | null;
  backendSetHash: string | null;
  generationMismatch: boolean;
  restarts: number;
  downs: number;
}

export interface ClusterView {
  instanceId: string;
  incarnation: string;
  generation: number;
  backendSetHash: string;
  live: string[];
  peers: PeerView[];
  sync: boolean;
  store: { entries: number; capacity: number };
  counters: Record<string, number | Record<string, number>>;
}

export interface StatusView {
  generation: number;
  dataplane: { pid: number | null; up: boolean; generation: number };
  cluster: ClusterView | null;
  flows: { active: number };
  drops: Record<string, number>;
}

export const status = (s: RunningSluice): Promise<StatusView> => admin<StatusView>(s, 'GET', '/status');

/** Poll `check` (bounded); throw with the last value's description when it never holds. */
export async function waitFor<T>(what: string, probe: () => Promise<T>, check: (v: T) => boolean, tries = 100, everyMs = 100): Promise<T> {
  let last: T | undefined;
  for (let i = 0; i < tries; i++) {
    try {
      last = await probe();
      if (check(last)) return last;
    } catch {
      // not answering yet
    }
    await sleep(everyMs);
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)?.slice(0, 2000)}`);
}

/** Every given instance sees exactly `live` as its live set, with the same backend set as its up peers. */
export async function waitConverged(instances: RunningSluice[], live: string[], what: string): Promise<StatusView[]> {
  const want = [...live].sort().join(',');
  return waitFor(
    what,
    () => Promise.all(instances.map((s) => status(s))),
    (all) => {
      const hashes = new Set(all.map((st) => st.cluster?.backendSetHash));
      return hashes.size === 1 && all.every((st) => st.cluster !== null && [...st.cluster.live].sort().join(',') === want && st.cluster.peers.every((p) => !p.up || !p.generationMismatch));
    },
    150,
  );
}

// ---- memory -------------------------------------------------------------------------------

/** Resident set size of a process in bytes (from /proc), or 0 when it is gone. */
export function rssBytes(pid: number | null | undefined): number {
  if (!pid) return 0;
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

export function alive(pid: number | null | undefined): boolean {
  if (!pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

// ---- long-lived MPTCP connections ------------------------------------------------------------

/**
 * python3 client: N MPTCP connections to mptcp-peer.py's server ("GET 0 seed" -> header with the
 * backend's name, then "INFO" -> one JSON line, as often as asked). Each connection, once it has
 * 2 subflows (or after --join-wait), asks INFO every --interval and expects the answer; it
 * records its longest stall, whether it broke, the subflow counts it saw (client MPTCP_INFO and
 * the server's answer) from the moment it first had 2, and the final ones. Writes --ready when
 * every connection is up (2 subflows or given up waiting), stops when --stop exists or after
 * --duration, and writes one JSON report.
 */
const MPTCP_LONG_PY = String.raw`
import argparse, json, os, socket, struct, threading, time
IPPROTO_MPTCP = 262
SOL_MPTCP = 284
MPTCP_INFO = 1

def subflows(s):
    try:
        raw = s.getsockopt(SOL_MPTCP, MPTCP_INFO, 96)
    except OSError:
        return -1
    if len(raw) > 80:
        return raw[80]
    flags = struct.unpack_from("=I", raw, 8)[0]
    return raw[0] + (0 if flags & 1 else 1)

ap = argparse.ArgumentParser()
ap.add_argument("--target", required=True)
ap.add_argument("--connections", type=int, required=True)
ap.add_argument("--interval", type=float, default=0.1)
ap.add_argument("--join-wait", type=float, default=8.0)
ap.add_argument("--duration", type=float, default=120.0)
ap.add_argument("--seed", type=int, default=7000)
ap.add_argument("--report", required=True)
ap.add_argument("--ready", required=True)
ap.add_argument("--stop", required=True)
a = ap.parse_args()
host, port = a.target.rsplit(":", 1)
port = int(port)
start = time.monotonic()
deadline = start + a.duration
stop = threading.Event()
lock = threading.Lock()
up = [0]
recs = []

def mark_up():
    with lock:
        up[0] += 1
        if up[0] == a.connections:
            with open(a.ready + ".tmp", "w") as f:
                f.write("%d\n" % up[0])
            os.rename(a.ready + ".tmp", a.ready)

def one(i):
    r = {"index": i, "backend": None, "localPort": None, "broken": False, "reason": None, "maxStallMs": 0.0,
         "joinedMs": None, "serverJoinedMs": None, "minSubflows": None, "minServerSubflows": None, "finalSubflows": None, "finalServerSubflows": None, "infos": 0}
    recs.append(r)
    counted = False
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, IPPROTO_MPTCP)
    try:
        s.settimeout(10)
        s.connect((host, port))
        r["localPort"] = s.getsockname()[1]
        s.sendall(b"GET 0 %d\n" % (a.seed + i))
        buf = b""
        def readline(limit):
            nonlocal buf
            end = time.monotonic() + limit
            while b"\n" not in buf:
                left = end - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no answer within %.1f s" % limit)
                s.settimeout(min(left, 0.5))
                try:
                    d = s.recv(65536)
                except socket.timeout:
                    continue
                if not d:
                    raise ConnectionError("closed-by-peer")
                buf += d
            line, _, buf = buf.partition(b"\n")
            return line.decode("ascii", "replace")
        hdr = readline(10).split()
        if len(hdr) < 2 or hdr[0] != "NAME":
            raise ValueError("bad header %r" % hdr)
        r["backend"] = hdr[1]
        t0 = time.monotonic()
        while subflows(s) < 2 and time.monotonic() - t0 < a.join_wait and not stop.is_set():
            time.sleep(0.01)
        n = subflows(s)
        if n >= 2:
            r["joinedMs"] = int((time.monotonic() - t0) * 1000)
        mark_up()
        counted = True
        last_ok = time.monotonic()
        while not stop.is_set() and time.monotonic() < deadline:
            sent_at = time.monotonic()
            s.sendall(b"INFO\n")
            line = readline(30)
            now = time.monotonic()
            r["maxStallMs"] = max(r["maxStallMs"], (now - sent_at) * 1000, (now - last_ok) * 1000)
            last_ok = now
            r["infos"] += 1
            srv = json.loads(line)
            ss = (srv.get("info") or {}).get("subflows", 0)
            cs = subflows(s)
            if r["joinedMs"] is None and cs >= 2:
                r["joinedMs"] = int((now - t0) * 1000)
            if r["joinedMs"] is not None:
                r["minSubflows"] = cs if r["minSubflows"] is None else min(r["minSubflows"], cs)
            # The server counts the join a moment after the client does (its MP_JOIN ACK): track
            # the server's view from the first answer that shows both subflows.
            if r["serverJoinedMs"] is None and ss >= 2:
                r["serverJoinedMs"] = int((now - t0) * 1000)
            if r["serverJoinedMs"] is not None:
                r["minServerSubflows"] = ss if r["minServerSubflows"] is None else min(r["minServerSubflows"], ss)
            r["finalSubflows"] = cs
            r["finalServerSubflows"] = ss
            time.sleep(max(0.0, a.interval - (time.monotonic() - sent_at)))
    except Exception as e:
        r["broken"] = True
        r["reason"] = "%s: %s" % (type(e).__name__, e)
    finally:
        if not counted:
            mark_up()
        try:
            s.close()
        except OSError:
            pass

def watcher():
    while not stop.is_set():
        if os.path.exists(a.stop) or time.monotonic() > deadline:
            stop.set()
        time.sleep(0.05)

threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(a.connections)]
w = threading.Thread(target=watcher, daemon=True)
w.start()
for t in threads:
    t.start()
    time.sleep(0.02)
for t in threads:
    t.join(timeout=max(1.0, deadline - time.monotonic() + 40))
rep = {"connections": a.connections, "perConnection": sorted(recs, key=lambda x: x["index"])}
with open(a.report + ".tmp", "w") as f:
    json.dump(rep, f)
os.rename(a.report + ".tmp", a.report)
os._exit(0)
`;

export interface MptcpLongConn {
  index: number;
  backend: string | null;
  localPort: number | null;
  broken: boolean;
  reason: string | null;
  maxStallMs: number;
  joinedMs: number | null;
  serverJoinedMs: number | null;
  minSubflows: number | null;
  minServerSubflows: number | null;
  finalSubflows: number | null;
  finalServerSubflows: number | null;
  infos: number;
}

export interface MptcpLongRun {
  child: ChildProcess;
  /** Resolves once every connection has 2 subflows or gave up waiting for its join. */
  ready(timeoutMs?: number): Promise<void>;
  /** Ask the connections to close and read the report. */
  stop(): Promise<MptcpLongConn[]>;
}

export function startMptcpLong(lab: Lab, name: string, o: { connections: number; seed: number; duration: number; joinWait?: number }): MptcpLongRun {
  const dir = lab.describe().runDir;
  const script = join(dir, 'mptcp-long.py');
  if (!existsSync(script)) writeFileSync(script, MPTCP_LONG_PY);
  const report = join(dir, `${name}.json`);
  const ready = join(dir, `${name}.ready`);
  const stopFile = join(dir, `${name}.stop`);
  const args = [
    'python3', '-u', script, '--target', `${VIP4}:${MPTCP_PORT}`, '--connections', String(o.connections), '--interval', '0.1',
    '--join-wait', String(o.joinWait ?? 8), '--duration', String(o.duration), '--seed', String(o.seed), '--report', report, '--ready', ready, '--stop', stopFile,
  ];
  const child = lab.spawn('client', args, { logName: `${name}.log` });
  const exited = new Promise<void>((r) => {
    if (child.exitCode !== null) r();
    child.once('exit', () => r());
  });
  return {
    child,
    ready: async (timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!existsSync(ready)) {
        if (child.exitCode !== null) throw new Error(`mptcp client ${name} exited early: ${readFileSync(join(dir, `${name}.log`), 'utf8').slice(-2000)}`);
        if (Date.now() > deadline) throw new Error(`mptcp client ${name}: connections not up within ${timeoutMs} ms`);
        await sleep(50);
      }
    },
    stop: async () => {
      writeFileSync(stopFile, '1\n');
      const t = setTimeout(() => child.kill('SIGKILL'), 60_000);
      await exited;
      clearTimeout(t);
      if (!existsSync(report)) throw new Error(`mptcp client ${name} wrote no report: ${readFileSync(join(dir, `${name}.log`), 'utf8').slice(-2000)}`);
      return (JSON.parse(readFileSync(report, 'utf8')) as { perConnection: MptcpLongConn[] }).perConnection;
    },
  };
}

/** Start mptcp-peer.py's server on backend i (port MPTCP_PORT) and wait until it listens. */
export async function startMptcpServer(lab: Lab, i: number, peerScript: string): Promise<void> {
  const dir = lab.describe().runDir;
  const log = `mptcp-b${i}.log`;
  lab.spawn(`b${i}`, ['python3', '-u', peerScript, 'server', '--port', String(MPTCP_PORT), '--name', `b${i}`, '--report', join(dir, `server-b${i}.jsonl`), '--idle-timeout', '120'], { logName: log });
  for (let t = 0; t < 200; t++) {
    if (existsSync(join(dir, log)) && readFileSync(join(dir, log), 'utf8').includes('listening')) return;
    await sleep(50);
  }
  throw new Error(`mptcp-peer server in b${i} did not start: ${existsSync(join(dir, log)) ? readFileSync(join(dir, log), 'utf8') : 'no log'}`);
}

// ---- raw control datagrams --------------------------------------------------------------------

/** python3 UDP sender: each line of stdin is "hex" -> one datagram to HOST:PORT. */
const UDP_SEND_PY = String.raw`
import socket, sys, time
host, port, pace = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
n = 0
for line in sys.stdin:
    line = line.strip()
    if not line:
        continue
    s.sendto(bytes.fromhex(line), (host, port))
    n += 1
    if pace > 0:
        time.sleep(pace)
print(n)
`;

/** Send datagrams to host:port from a namespace of the lab (default: the router), `paceMs` apart. */
export async function sendDatagrams(lab: Lab, host: string, port: number, datagrams: Uint8Array[], paceMs = 0, role = 'router'): Promise<number> {
  const script = join(lab.describe().runDir, 'udp-send.py');
  if (!existsSync(script)) writeFileSync(script, UDP_SEND_PY);
  const input = datagrams.map((d) => Buffer.from(d).toString('hex')).join('\n') + '\n';
  const { stdout } = await lab.exec(role, ['python3', script, host, String(port), String(paceMs / 1000)], { input, timeoutMs: 120_000 });
  return Number(stdout.trim());
}

/**
 * python3 sniffer: capture up to N UDP datagrams to PORT on IFACE (AF_PACKET, passive) and print
 * their payloads as hex lines; bounded by a timeout.
 */
const UDP_SNIFF_PY = String.raw`
import socket, struct, sys, time
iface, port, want, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.ntohs(0x0800))
s.bind((iface, 0))
s.settimeout(0.2)
end = time.monotonic() + limit
got = 0
while got < want and time.monotonic() < end:
    try:
        f, addr = s.recvfrom(65535)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or len(f) < 14 + 20 + 8:
        continue
    ip = f[14:]
    ihl = (ip[0] & 15) * 4
    if ip[9] != 17:
        continue
    udp = ip[ihl:]
    dport = struct.unpack("!H", udp[2:4])[0]
    ulen = struct.unpack("!H", udp[4:6])[0]
    if dport != port:
        continue
    print(udp[8:ulen].hex(), flush=True)
    got += 1
`;

/** Capture control datagrams arriving at an instance (passively, in its namespace). */
export async function sniffDatagrams(lab: Lab, role: string, iface: string, port: number, count: number, timeoutS = 5): Promise<Buffer[]> {
  const script = join(lab.describe().runDir, 'udp-sniff.py');
  if (!existsSync(script)) writeFileSync(script, UDP_SNIFF_PY);
  const { stdout } = await lab.exec(role, ['python3', script, iface, String(port), String(count), String(timeoutS)], { timeoutMs: (timeoutS + 10) * 1000 });
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => /^[0-9a-f]+$/.test(l))
    .map((l) => Buffer.from(l, 'hex'));
}
