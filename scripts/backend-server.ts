/**
 * A lab backend: the real servers behind a Sluice VIP, one process per backend namespace.
 *
 *   node dist/scripts/backend-server.js --name b1 --stats-socket /tmp/sl-xxxx/b1.sock \
 *        [--http 80] [--echo 7] [--udp 53] [--watch-stdin]
 *
 * Listens on every address (so traffic to a VIP held on lo is accepted, IPv4 and IPv6):
 * - HTTP: answers every request with JSON {backend, path, client}; GET /bytes?n=N sends N bytes.
 * - TCP line echo: first line sent is `hello <name>`, then every line is echoed at once.
 * - UDP: replies to each datagram with `<name> <seq>` (seq = datagrams seen from that flow).
 *   One socket per local address, so replies leave from the address they were sent to
 *   (the VIP), which is what direct server return needs.
 * Counters are served as JSON over HTTP on a UNIX socket: GET /stats, POST /reset,
 * POST /http-status?code=503 (make HTTP answer with that status, e.g. to fail health checks).
 */
import { Command } from 'commander';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from 'node:net';
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { networkInterfaces } from 'node:os';
import { existsSync, unlinkSync } from 'node:fs';
import { intIn, collect } from './lib/cli-args.js';
import { formatEndpoint } from './lib/target.js';
import type { BackendStats, TcpConnectionRecord } from './lib/reports.js';

const MAX_RECENT_CONNECTIONS = 1000;
const MAX_UDP_FLOWS = 100_000;
const MAX_BYTES_RESPONSE = 1 << 30;
// Bursts of new flows (thousands of first datagrams at once) overflow the default 208 KiB buffer.
const UDP_RCVBUF = 4 * 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);

interface Options {
  name: string;
  statsSocket: string;
  http?: number;
  echo?: number;
  udp?: number;
  bind?: string[];
  watchStdin?: boolean;
}

const program = new Command()
  .name('backend-server')
  .description('Lab backend: HTTP, TCP line echo and UDP servers with counters on a UNIX socket')
  .requiredOption('--name <name>', 'backend name reported in every answer')
  .requiredOption('--stats-socket <path>', 'UNIX socket for GET /stats')
  .option('--http <port>', 'HTTP port', intIn(1, 65535))
  .option('--echo <port>', 'TCP line echo port', intIn(1, 65535))
  .option('--udp <port>', 'UDP port', intIn(1, 65535))
  .option('--bind <addr>', 'UDP: bind this address (repeatable; default every local address)', collect)
  .option('--watch-stdin', 'exit when stdin closes (the lab keeps a pipe open)')
  .parse();

const opts = program.opts<Options>();
const name = opts.name;

// ---- counters -------------------------------------------------------------------------
interface LiveConn {
  socket: Socket;
  record: TcpConnectionRecord;
}
const startedAt = new Date().toISOString();
let httpStatus = 200;
const counters = {
  tcpConnections: 0,
  closedBytesIn: 0,
  closedBytesOut: 0,
  byPort: new Map<number, { connections: number; open: number; closedBytesIn: number }>(),
  recent: [] as TcpConnectionRecord[],
  udpDatagrams: 0,
  udpBytes: 0,
  udpFlows: new Map<string, number>(),
  udpFlowsDropped: 0,
  httpRequests: 0,
};
const open = new Set<LiveConn>();

function portCounters(port: number): { connections: number; open: number; closedBytesIn: number } {
  let c = counters.byPort.get(port);
  if (!c) {
    c = { connections: 0, open: 0, closedBytesIn: 0 };
    counters.byPort.set(port, c);
  }
  return c;
}

function trackConnection(socket: Socket, port: number): void {
  const record: TcpConnectionRecord = {
    client: formatEndpoint(socket.remoteAddress, socket.remotePort),
    localPort: port,
    bytesIn: 0,
    bytesOut: 0,
    openedAt: Date.now(),
    closedAt: null,
  };
  const live: LiveConn = { socket, record };
  counters.tcpConnections++;
  const pc = portCounters(port);
  pc.connections++;
  pc.open++;
  open.add(live);
  counters.recent.push(record);
  if (counters.recent.length > MAX_RECENT_CONNECTIONS) counters.recent.shift();
  socket.once('close', () => {
    record.bytesIn = socket.bytesRead;
    record.bytesOut = socket.bytesWritten;
    record.closedAt = Date.now();
    counters.closedBytesIn += socket.bytesRead;
    counters.closedBytesOut += socket.bytesWritten;
    pc.open--;
    pc.closedBytesIn += socket.bytesRead;
    open.delete(live);
  });
  // A reset from a client (or a balancer test) must not kill the server.
  socket.on('error', () => undefined);
}

function snapshot(): BackendStats {
  let bytesIn = counters.closedBytesIn;
  let bytesOut = counters.closedBytesOut;
  const openIn = new Map<number, number>();
  for (const { socket, record } of open) {
    record.bytesIn = socket.bytesRead;
    record.bytesOut = socket.bytesWritten;
    bytesIn += socket.bytesRead;
    bytesOut += socket.bytesWritten;
    openIn.set(record.localPort, (openIn.get(record.localPort) ?? 0) + socket.bytesRead);
  }
  const byPort: BackendStats['tcp']['byPort'] = {};
  for (const [port, c] of counters.byPort) {
    byPort[String(port)] = { connections: c.connections, open: c.open, bytesIn: c.closedBytesIn + (openIn.get(port) ?? 0) };
  }
  return {
    name,
    pid: process.pid,
    startedAt,
    tcp: { connections: counters.tcpConnections, open: open.size, bytesIn, bytesOut, byPort, recent: counters.recent },
    udp: {
      datagrams: counters.udpDatagrams,
      bytes: counters.udpBytes,
      flows: Object.fromEntries(counters.udpFlows),
      flowsDropped: counters.udpFlowsDropped,
    },
    http: { requests: counters.httpRequests, status: httpStatus },
  };
}

function reset(): void {
  counters.tcpConnections = 0;
  counters.closedBytesIn = 0;
  counters.closedBytesOut = 0;
  counters.byPort.clear();
  counters.recent = [];
  counters.udpDatagrams = 0;
  counters.udpBytes = 0;
  counters.udpFlows.clear();
  counters.udpFlowsDropped = 0;
  counters.httpRequests = 0;
  // Open connections keep being tracked; count them afresh.
  for (const live of open) {
    const pc = portCounters(live.record.localPort);
    pc.open++;
    counters.recent.push(live.record);
  }
}

// ---- servers --------------------------------------------------------------------------
const closers: (() => Promise<void>)[] = [];

function listenTcp(server: TcpServer | HttpServer, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    // '::' with ipv6Only false is dual-stack: IPv4 peers arrive as ::ffff:a.b.c.d.
    server.listen({ port, host: '::', ipv6Only: false }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

function closeServer(server: TcpServer | HttpServer): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}

function handleHttp(req: IncomingMessage, res: ServerResponse): void {
  counters.httpRequests++;
  const url = new URL(req.url ?? '/', 'http://backend');
  req.resume();
  if (url.pathname === '/bytes' && httpStatus === 200) {
    const n = Number(url.searchParams.get('n') ?? '0');
    if (!Number.isInteger(n) || n < 0 || n > MAX_BYTES_RESPONSE) {
      res.writeHead(400, { 'content-type': 'text/plain' }).end(`n must be an integer in 0..${MAX_BYTES_RESPONSE}\n`);
      return;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(n), 'x-backend': name });
    let left = n;
    const pump = (): void => {
      while (left > 0) {
        const piece = left >= CHUNK.length ? CHUNK : CHUNK.subarray(0, left);
        left -= piece.length;
        if (!res.write(piece)) {
          res.once('drain', pump);
          return;
        }
      }
      res.end();
    };
    pump();
    return;
  }
  const body = JSON.stringify({
    backend: name,
    path: req.url ?? '/',
    client: formatEndpoint(req.socket.remoteAddress, req.socket.remotePort),
  });
  res.writeHead(httpStatus, { 'content-type': 'application/json', 'x-backend': name }).end(body + '\n');
}

async function startHttp(port: number): Promise<void> {
  const server = createHttpServer(handleHttp);
  server.on('connection', (s: Socket) => trackConnection(s, port));
  server.keepAliveTimeout = 5000;
  await listenTcp(server, port);
  closers.push(async () => {
    const done = closeServer(server);
    server.closeAllConnections();
    await done;
  });
}

async function startEcho(port: number): Promise<void> {
  const server = createTcpServer((socket) => {
    trackConnection(socket, port);
    socket.setNoDelay(true);
    socket.write(`hello ${name}\n`);
    let pending = '';
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      pending += chunk;
      let nl = pending.indexOf('\n');
      if (nl < 0) {
        if (pending.length > 65536) pending = ''; // no line ending: drop, keep the bound
        return;
      }
      let out = '';
      while (nl >= 0) {
        out += pending.slice(0, nl + 1);
        pending = pending.slice(nl + 1);
        nl = pending.indexOf('\n');
      }
      socket.write(out);
    });
    socket.on('end', () => socket.end());
  });
  await listenTcp(server, port);
  closers.push(async () => {
    const done = closeServer(server);
    for (const live of open) if (live.record.localPort === port) live.socket.destroy();
    await done;
  });
}

function localAddresses(): string[] {
  const out: string[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80')) continue; // needs a scope
      out.push(a.address);
    }
  }
  return [...new Set(out)];
}

function bindUdp(sock: UdpSocket, port: number, address: string): Promise<void> {
  return new Promise((resolve, reject) => {
    sock.once('error', reject);
    sock.bind({ port, address, exclusive: true }, () => {
      sock.off('error', reject);
      resolve();
    });
  });
}

async function startUdp(port: number, bind: string[] | undefined): Promise<void> {
  const addresses = bind && bind.length > 0 ? bind : localAddresses();
  const sockets: UdpSocket[] = [];
  const onMessage = (sock: UdpSocket) => (msg: Buffer, rinfo: { address: string; port: number }): void => {
    counters.udpDatagrams++;
    counters.udpBytes += msg.length;
    const key = formatEndpoint(rinfo.address, rinfo.port);
    const prev = counters.udpFlows.get(key);
    let seq = 0;
    if (prev !== undefined) seq = prev + 1;
    else if (counters.udpFlows.size < MAX_UDP_FLOWS) seq = 1;
    else counters.udpFlowsDropped++;
    if (seq > 0) counters.udpFlows.set(key, seq);
    sock.send(`${name} ${seq}`, rinfo.port, rinfo.address);
  };
  for (const address of addresses) {
    const v6 = address.includes(':');
    const sock = createSocket({ type: v6 ? 'udp6' : 'udp4', reuseAddr: true, recvBufferSize: UDP_RCVBUF });
    sock.on('message', onMessage(sock));
    sock.on('error', (err) => process.stderr.write(`udp ${address}:${port}: ${err.message}\n`));
    await bindUdp(sock, port, address);
    sockets.push(sock);
  }
  // Fallback for addresses added after start (replies may then leave from another source).
  const wildcard = createSocket({ type: 'udp6', reuseAddr: true, ipv6Only: false, recvBufferSize: UDP_RCVBUF });
  wildcard.on('message', onMessage(wildcard));
  wildcard.on('error', (err) => process.stderr.write(`udp [::]:${port}: ${err.message}\n`));
  await bindUdp(wildcard, port, '::');
  sockets.push(wildcard);
  closers.push(async () => {
    await Promise.all(sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  });
}

async function startStats(path: string): Promise<void> {
  if (existsSync(path)) unlinkSync(path);
  const server = createHttpServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://stats');
    req.resume();
    if (req.method === 'GET' && url.pathname === '/stats') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(snapshot()));
    } else if (req.method === 'POST' && url.pathname === '/reset') {
      reset();
      res.writeHead(204).end();
    } else if (req.method === 'POST' && url.pathname === '/http-status') {
      const code = Number(url.searchParams.get('code'));
      if (!Number.isInteger(code) || code < 200 || code > 599) {
        res.writeHead(400).end('code must be 200..599\n');
        return;
      }
      httpStatus = code;
      res.writeHead(204).end();
    } else {
      res.writeHead(404).end('GET /stats, POST /reset, POST /http-status?code=N\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => resolve());
  });
  closers.push(async () => {
    const done = closeServer(server);
    server.closeAllConnections();
    await done;
    if (existsSync(path)) unlinkSync(path);
  });
}

// ---- lifecycle ------------------------------------------------------------------------
let stopping = false;
async function shutdown(reason: string): Promise<void> {
  if (stopping) return;
  stopping = true;
  const hard = setTimeout(() => process.exit(0), 2000);
  hard.unref();
  await Promise.allSettled(closers.map((c) => c()));
  process.stdout.write(JSON.stringify({ event: 'stopped', name, reason, stats: { tcp: counters.tcpConnections, udp: counters.udpDatagrams } }) + '\n');
  process.exit(0);
}

async function main(): Promise<void> {
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
  process.on('SIGINT', () => void shutdown('SIGINT'));
  if (opts.watchStdin) {
    process.stdin.on('end', () => void shutdown('stdin-closed'));
    process.stdin.on('error', () => void shutdown('stdin-closed'));
    process.stdin.resume();
  }
  if (opts.http) await startHttp(opts.http);
  if (opts.echo) await startEcho(opts.echo);
  if (opts.udp) await startUdp(opts.udp, opts.bind);
  // The stats socket comes last: when it answers, every server is listening.
  await startStats(opts.statsSocket);
  process.stdout.write(
    JSON.stringify({ event: 'ready', name, pid: process.pid, http: opts.http ?? null, echo: opts.echo ?? null, udp: opts.udp ?? null }) + '\n',
  );
}

main().catch((err: unknown) => {
  process.stderr.write(`backend-server ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});

