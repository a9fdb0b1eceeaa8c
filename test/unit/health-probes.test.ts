/**
 * Probes against servers this file starts in-process on 127.0.0.1 / ::1 only. ICMP echo over a
 * real raw socket needs root; the matching logic is also tested with a fake raw-socket module.
 */
import { EventEmitter } from 'node:events';
import * as dgram from 'node:dgram';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import type * as RawSocketModule from 'raw-socket';
import { probe } from '../../src/health/probes.js';
import {
  ECHO_IDENTIFIER,
  ECHO_LENGTH,
  ICMP6_DEST_UNREACH,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP_DEST_UNREACH,
  ICMP_ECHO_REPLY,
  ICMP_ECHO_REQUEST,
  IcmpEcho,
  buildEchoRequest,
  icmpChecksum,
  parseIcmp,
  sharedIcmpEcho,
} from '../../src/health/icmp.js';
import { resolveCheck, type HealthCheckInput, type HealthTarget } from '../../src/health/types.js';

/** Deadline of probes expected to time out; the others get a roomy 900 ms. */
const TIMEOUT = 200;
const hasIPv6Loopback = Object.values(os.networkInterfaces()).some((list) => list?.some((a) => a.family === 'IPv6' && a.address === '::1'));

function target(address: string, port: number, check: HealthCheckInput): HealthTarget {
  return { address, port, check: resolveCheck({ intervalMs: 1000, timeoutMs: 900, ...check }) };
}

/** Poll `cond` every 10 ms, at most `tries` times. */
async function eventually(cond: () => boolean | Promise<boolean>, what: string, tries = 300): Promise<void> {
  for (let i = 0; i < tries; i++) {
    if (await cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`not reached: ${what}`);
}

function activeHandles(kind: string): number {
  return process.getActiveResourcesInfo().filter((r) => r === kind).length;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function tcpServer(host: string, onConnection: (s: net.Socket) => void = () => {}): Promise<{ server: net.Server; port: number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onConnection(s);
  });
  await new Promise<void>((r) => server.listen(0, host, r));
  cleanups.push(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { server, port: (server.address() as net.AddressInfo).port };
}

async function httpServer(host: string, handler: http.RequestListener): Promise<{ server: http.Server; port: number }> {
  const server = http.createServer(handler);
  await new Promise<void>((r) => server.listen(0, host, r));
  cleanups.push(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return { server, port: (server.address() as net.AddressInfo).port };
}

async function udpServer(type: 'udp4' | 'udp6', host: string, reply: (msg: Buffer) => Buffer | null): Promise<{ port: number; received: Buffer[] }> {
  const sock = dgram.createSocket(type);
  const received: Buffer[] = [];
  sock.on('message', (msg, rinfo) => {
    received.push(msg);
    const r = reply(msg);
    if (r) sock.send(r, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, host, r));
  cleanups.push(() => new Promise<void>((r) => sock.close(() => r())));
  return { port: sock.address().port, received };
}

/** A port on which nothing listens (bound then released). */
async function closedTcpPort(host: string): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, host, r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function closedUdpPort(type: 'udp4' | 'udp6', host: string): Promise<number> {
  const s = dgram.createSocket(type);
  await new Promise<void>((r) => s.bind(0, host, r));
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

describe('tcp probe', () => {
  it('tcp ok: connection established to 127.0.0.1', async () => {
    const { port } = await tcpServer('127.0.0.1');
    const r = await probe(target('127.0.0.1', port, { type: 'tcp' }));
    expect(r).toMatchObject({ ok: true });
    expect(r.error).toBeUndefined();
    expect(r.latencyMs).toBeGreaterThanOrEqual(0);
  });

  it.runIf(hasIPv6Loopback)('tcp ok: connection established to ::1', async () => {
    const { port } = await tcpServer('::1');
    expect(await probe(target('::1', port, { type: 'tcp' }))).toMatchObject({ ok: true });
  });

  it('tcp refused: nothing listening gives ECONNREFUSED', async () => {
    const port = await closedTcpPort('127.0.0.1');
    const r = await probe(target('127.0.0.1', port, { type: 'tcp' }));
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/ECONNREFUSED/);
  });

  it('tcp closes its connection after connecting (no leaked socket)', async () => {
    let open = 0;
    let seen = 0;
    const { port } = await tcpServer('127.0.0.1', (s) => {
      seen++;
      open++;
      s.on('close', () => open--);
    });
    for (let i = 0; i < 5; i++) expect((await probe(target('127.0.0.1', port, { type: 'tcp' }))).ok).toBe(true);
    await eventually(() => seen === 5 && open === 0, 'server saw 5 connections, all closed');
  });
});

describe('http probe', () => {
  const cases: { name: string; status: number; check: HealthCheckInput; ok: boolean; error?: RegExp }[] = [
    { name: 'http 200 ok with the default 200-399', status: 200, check: { type: 'http' }, ok: true },
    { name: 'http 302 ok with the default 200-399', status: 302, check: { type: 'http' }, ok: true },
    { name: 'http 503 fails with the default 200-399', status: 503, check: { type: 'http' }, ok: false, error: /^status 503 \(expected 200-399\)$/ },
    { name: 'http 404 ok when the list accepts it', status: 404, check: { type: 'http', expectStatus: [200, 404] }, ok: true },
    { name: 'http 200 fails when only 204 is expected', status: 200, check: { type: 'http', expectStatus: 204 }, ok: false, error: /^status 200 \(expected 204\)$/ },
    { name: 'http 301 fails with a wrong status list', status: 301, check: { type: 'http', expectStatus: [200, 204] }, ok: false, error: /^status 301 \(expected 200,204\)$/ },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { port } = await httpServer('127.0.0.1', (_req, res) => {
        res.statusCode = c.status;
        res.end('body');
      });
      const r = await probe(target('127.0.0.1', port, c.check));
      expect(r.ok).toBe(c.ok);
      if (c.error) expect(r.error).toMatch(c.error);
    });
  }

  it('http sends GET to the path with the Host header, no keep-alive', async () => {
    const seen: { method?: string; url?: string; host?: string; connection?: string }[] = [];
    const { port } = await httpServer('127.0.0.1', (req, res) => {
      seen.push({ method: req.method, url: req.url, host: req.headers.host, connection: req.headers.connection });
      res.end();
    });
    expect((await probe(target('127.0.0.1', port, { type: 'http', path: '/healthz?deep=1', host: 'svc.example' }))).ok).toBe(true);
    expect((await probe(target('127.0.0.1', port, { type: 'http' }))).ok).toBe(true);
    expect(seen).toEqual([
      { method: 'GET', url: '/healthz?deep=1', host: 'svc.example', connection: 'close' },
      { method: 'GET', url: '/', host: `127.0.0.1:${port}`, connection: 'close' },
    ]);
  });

  it.runIf(hasIPv6Loopback)('http to ::1 uses a bracketed default Host', async () => {
    let host: string | undefined;
    const { port } = await httpServer('::1', (req, res) => {
      host = req.headers.host;
      res.end();
    });
    expect((await probe(target('::1', port, { type: 'http' }))).ok).toBe(true);
    expect(host).toBe(`[::1]:${port}`);
  });

  it('http endless body: verdict after the bounded read, not a timeout', async () => {
    const { port } = await httpServer('127.0.0.1', (_req, res) => {
      res.writeHead(200);
      const chunk = Buffer.alloc(16 * 1024, 0x61);
      // Far more than the probe reads; the connection is destroyed long before the end.
      for (let i = 0; i < 64; i++) res.write(chunk);
    });
    const r = await probe(target('127.0.0.1', port, { type: 'http' }));
    expect(r).toMatchObject({ ok: true });
  });

  it('http timeout: a server that never answers fails and the connection is closed', async () => {
    let open = 0;
    const { server, port } = await httpServer('127.0.0.1', () => {
      /* never responds */
    });
    server.on('connection', (s) => {
      open++;
      s.on('close', () => open--);
    });
    const r = await probe(target('127.0.0.1', port, { type: 'http', timeoutMs: TIMEOUT }));
    expect(r.ok).toBe(false);
    expect(r.error).toBe(`timeout after ${TIMEOUT} ms (waiting for response)`);
    await eventually(() => open === 0, 'server-side connection closed');
  });

  it('http refused: nothing listening', async () => {
    const port = await closedTcpPort('127.0.0.1');
    const r = await probe(target('127.0.0.1', port, { type: 'http' }));
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/ECONNREFUSED/);
  });

  it('abort signal: an aborted probe returns "aborted" and closes its connection', async () => {
    let open = 0;
    let requests = 0;
    const { server, port } = await httpServer('127.0.0.1', () => {
      requests++;
    });
    server.on('connection', (s) => {
      open++;
      s.on('close', () => open--);
    });
    const ac = new AbortController();
    const pending = probe(target('127.0.0.1', port, { type: 'http' }), ac.signal);
    await eventually(() => requests === 1, 'request reached the server');
    ac.abort();
    expect(await pending).toMatchObject({ ok: false, error: 'aborted' });
    await eventually(() => open === 0, 'server-side connection closed');
  });

  it('abort signal: an already aborted signal never connects', async () => {
    let connections = 0;
    const { port } = await tcpServer('127.0.0.1', () => connections++);
    const ac = new AbortController();
    ac.abort();
    expect(await probe(target('127.0.0.1', port, { type: 'tcp' }), ac.signal)).toMatchObject({ ok: false, error: 'aborted' });
    // A probe that did connect would have been seen by now (tcp ok above completes on loopback).
    expect((await probe(target('127.0.0.1', port, { type: 'tcp' }))).ok).toBe(true);
    await eventually(() => connections === 1, 'exactly the second probe connected');
    expect(connections).toBe(1);
  });
});

describe('udp probe', () => {
  const cases: { name: string; check: HealthCheckInput; reply: (m: Buffer) => Buffer | null; ok: boolean; error?: RegExp | string }[] = [
    { name: 'udp reply ok: any reply when nothing is expected', check: { type: 'udp', send: 'ping' }, reply: () => Buffer.from('x'), ok: true },
    { name: 'udp reply ok: reply contains the expected text', check: { type: 'udp', send: 'ping', expect: 'pong' }, reply: () => Buffer.from('200 pong ok'), ok: true },
    {
      name: 'udp reply missing the expected text fails',
      check: { type: 'udp', send: 'ping', expect: 'pong' },
      reply: () => Buffer.from('busy'),
      ok: false,
      error: 'reply did not contain "pong" (got "busy")',
    },
    { name: 'udp no reply: timeout', check: { type: 'udp', send: 'ping', timeoutMs: TIMEOUT }, reply: () => null, ok: false, error: `timeout after ${TIMEOUT} ms (waiting for reply)` },
    { name: 'udp empty payload by default, empty reply accepted', check: { type: 'udp' }, reply: (m) => (m.length === 0 ? Buffer.alloc(0) : null), ok: true },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const { port, received } = await udpServer('udp4', '127.0.0.1', c.reply);
      const before = activeHandles('UDPWrap');
      const r = await probe(target('127.0.0.1', port, c.check));
      expect(r.ok).toBe(c.ok);
      if (typeof c.error === 'string') expect(r.error).toBe(c.error);
      else if (c.error) expect(r.error).toMatch(c.error);
      expect(received.map((b) => b.toString())).toEqual([c.check.send ?? '']);
      await eventually(() => activeHandles('UDPWrap') <= before, 'probe socket closed');
    });
  }

  it('udp refused: ICMP port unreachable on a closed port', async () => {
    const port = await closedUdpPort('udp4', '127.0.0.1');
    const r = await probe(target('127.0.0.1', port, { type: 'udp', send: 'ping' }));
    expect(r.ok).toBe(false);
    expect(r.error).toMatch(/ECONNREFUSED: port unreachable/);
  });

  it.runIf(hasIPv6Loopback)('udp reply ok over ::1', async () => {
    const { port } = await udpServer('udp6', '::1', (m) => Buffer.concat([Buffer.from('echo '), m]));
    expect(await probe(target('::1', port, { type: 'udp', send: 'hi', expect: 'echo hi' }))).toMatchObject({ ok: true });
  });
});

describe('icmp packets', () => {
  it('checksum: RFC 1071 worked example', () => {
    // RFC 1071 section 3: the sum of 0001 f203 f4f5 f6f7 is ddf2, so the checksum is 220d.
    expect(icmpChecksum(Uint8Array.from([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]))).toBe(0x220d);
  });

  it('checksum: odd length pads with a zero byte', () => {
    expect(icmpChecksum(Uint8Array.from([0x01]))).toBe(~0x0100 & 0xffff);
  });

  it('IPv4 echo request carries type 8, id, sequence and a checksum that verifies', () => {
    const token = Buffer.from('0102030405060708', 'hex');
    const b = buildEchoRequest(4, 0x1234, 0xabcd, token);
    expect(b.length).toBe(ECHO_LENGTH);
    expect([b[0], b[1], b.readUInt16BE(4), b.readUInt16BE(6)]).toEqual([ICMP_ECHO_REQUEST, 0, 0x1234, 0xabcd]);
    expect(b.subarray(8, 16)).toEqual(token);
    expect(icmpChecksum(b)).toBe(0);
  });

  it('IPv6 echo request leaves the checksum to the kernel', () => {
    const b = buildEchoRequest(6, 1, 2, Buffer.alloc(8));
    expect([b[0], b.readUInt16BE(2)]).toEqual([ICMP6_ECHO_REQUEST, 0]);
  });

  /** Turn one of our requests into the reply a host would send. */
  function reply4(request: Buffer, ipHeaderLen = 20): Buffer {
    const icmp = Buffer.from(request);
    icmp[0] = ICMP_ECHO_REPLY;
    icmp.writeUInt16BE(0, 2);
    icmp.writeUInt16BE(icmpChecksum(icmp), 2);
    const ip = Buffer.alloc(ipHeaderLen);
    ip[0] = 0x40 | (ipHeaderLen / 4);
    ip[9] = 1;
    Buffer.from([127, 0, 0, 1]).copy(ip, 12);
    Buffer.from([127, 0, 0, 1]).copy(ip, 16);
    return Buffer.concat([ip, icmp]);
  }
  function reply6(request: Buffer): Buffer {
    const icmp = Buffer.from(request);
    icmp[0] = ICMP6_ECHO_REPLY;
    return icmp;
  }
  function unreach4(request: Buffer, destination: number[]): Buffer {
    const inner = Buffer.alloc(20);
    inner[0] = 0x45;
    inner[9] = 1;
    Buffer.from(destination).copy(inner, 16);
    const icmp = Buffer.alloc(8);
    icmp[0] = ICMP_DEST_UNREACH;
    icmp[1] = 1;
    const outer = Buffer.alloc(20);
    outer[0] = 0x45;
    outer[9] = 1;
    return Buffer.concat([outer, icmp, inner, request.subarray(0, 8)]);
  }
  function unreach6(request: Buffer, destination: Buffer): Buffer {
    const inner = Buffer.alloc(40);
    inner[0] = 0x60;
    inner[6] = 58;
    destination.copy(inner, 24);
    const icmp = Buffer.alloc(8);
    icmp[0] = ICMP6_DEST_UNREACH;
    icmp[1] = 3;
    return Buffer.concat([icmp, inner, request]);
  }

  const token = Buffer.from('a1a2a3a4a5a6a7a8', 'hex');
  const req4 = buildEchoRequest(4, 0x0102, 7, token);
  const req6 = buildEchoRequest(6, 0x0102, 9, token);
  const loop6 = Buffer.alloc(16);
  loop6[15] = 1;
  const parseCases: { name: string; family: 4 | 6; msg: Buffer; want: ReturnType<typeof parseIcmp> }[] = [
    { name: 'IPv4 echo reply after a 20-byte IP header', family: 4, msg: reply4(req4), want: { kind: 'reply', identifier: 0x0102, sequence: 7, token } },
    { name: 'IPv4 echo reply after an IP header with options', family: 4, msg: reply4(req4, 24), want: { kind: 'reply', identifier: 0x0102, sequence: 7, token } },
    { name: 'IPv4 echo request (our own, looped back) is ignored', family: 4, msg: Buffer.concat([reply4(req4).subarray(0, 20), req4]), want: null },
    { name: 'IPv4 truncated reply is ignored', family: 4, msg: reply4(req4).subarray(0, 30), want: null },
    { name: 'IPv4 reply without our payload marker is ignored', family: 4, msg: reply4(Buffer.concat([req4.subarray(0, 16), Buffer.alloc(8)])), want: null },
    { name: 'IPv4 host unreachable quoting our request', family: 4, msg: unreach4(req4, [10, 9, 8, 7]), want: { kind: 'error', identifier: 0x0102, sequence: 7, destination: '10.9.8.7', error: 'ICMP destination unreachable: host unreachable' } },
    { name: 'IPv6 echo reply', family: 6, msg: reply6(req6), want: { kind: 'reply', identifier: 0x0102, sequence: 9, token } },
    { name: 'IPv6 echo request (our own, looped back) is ignored', family: 6, msg: req6, want: null },
    { name: 'IPv6 address unreachable quoting our request', family: 6, msg: unreach6(req6, loop6), want: { kind: 'error', identifier: 0x0102, sequence: 9, destination: '::1', error: 'ICMPv6 destination unreachable: address unreachable' } },
    { name: 'empty message is ignored', family: 6, msg: Buffer.alloc(0), want: null },
  ];
  for (const c of parseCases) it(`parse: ${c.name}`, () => expect(parseIcmp(c.family, c.msg)).toEqual(c.want));
});

/** A stand-in for raw-socket: records sends, lets the test deliver datagrams. */
class FakeRawSocket extends EventEmitter {
  recvPaused = false;
  sendPaused = true;
  closed = false;
  readonly sent: { packet: Buffer; address: string }[] = [];
  send(buffer: Buffer, offset: number, length: number, address: string, cb: (e: Error | null, n: number) => void): this {
    this.sent.push({ packet: Buffer.from(buffer.subarray(offset, offset + length)), address });
    queueMicrotask(() => cb(null, length));
    return this;
  }
  close(): this {
    this.closed = true;
    this.emit('close');
    return this;
  }
  pauseRecv(): this {
    this.recvPaused = true;
    return this;
  }
  resumeRecv(): this {
    this.recvPaused = false;
    return this;
  }
  pauseSend(): this {
    return this;
  }
  resumeSend(): this {
    return this;
  }
  setOption(): void {}
}

function fakeRaw(sockets: FakeRawSocket[], fail?: Error): () => typeof RawSocketModule {
  const api = {
    AddressFamily: { IPv4: 1, IPv6: 2 },
    Protocol: { None: 0, ICMP: 1, TCP: 6, UDP: 17, ICMPv6: 58 },
    createSocket: () => {
      if (fail) throw fail;
      const s = new FakeRawSocket();
      sockets.push(s);
      return s;
    },
  };
  return () => api as unknown as typeof RawSocketModule;
}

describe('icmp echo matching (fake raw socket)', () => {
  function icmpTarget(address: string, timeoutMs = 900): HealthTarget {
    return target(address, 0, { type: 'icmp', timeoutMs });
  }
  function asReply6(request: Buffer): Buffer {
    const b = Buffer.from(request);
    b[0] = ICMP6_ECHO_REPLY;
    return b;
  }

  it('a reply with our id, sequence and token from the target completes the probe', async () => {
    const sockets: FakeRawSocket[] = [];
    const icmp = new IcmpEcho(fakeRaw(sockets));
    cleanups.push(() => icmp.close());
    const pending = probe(icmpTarget('::1'), undefined, { icmp });
    await eventually(() => sockets[0]?.sent.length === 1, 'request sent');
    const req = sockets[0].sent[0].packet;
    expect(req.readUInt16BE(4)).toBe(ECHO_IDENTIFIER);
    sockets[0].emit('message', asReply6(req), '0:0:0:0:0:0:0:1');
    expect(await pending).toMatchObject({ ok: true });
    expect(icmp.inFlight).toBe(0);
    expect(sockets[0].recvPaused).toBe(true);
  });

  const ignored: { name: string; mutate: (reply: Buffer) => Buffer; source: string }[] = [
    { name: 'another identifier', mutate: (b) => (b.writeUInt16BE((ECHO_IDENTIFIER + 1) & 0xffff, 4), b), source: '::1' },
    { name: 'another sequence', mutate: (b) => (b.writeUInt16BE((b.readUInt16BE(6) + 1) & 0xffff, 6), b), source: '::1' },
    { name: 'a stale token', mutate: (b) => ((b[8] ^= 0xff), b), source: '::1' },
    { name: 'another source address', mutate: (b) => b, source: '::2' },
  ];
  for (const c of ignored) {
    it(`a reply with ${c.name} is ignored (probe times out)`, async () => {
      const sockets: FakeRawSocket[] = [];
      const icmp = new IcmpEcho(fakeRaw(sockets));
      cleanups.push(() => icmp.close());
      const pending = probe(icmpTarget('::1', 100), undefined, { icmp });
      await eventually(() => sockets[0]?.sent.length === 1, 'request sent');
      sockets[0].emit('message', c.mutate(asReply6(sockets[0].sent[0].packet)), c.source);
      expect(await pending).toEqual({ ok: false, error: 'timeout after 100 ms (waiting for echo reply)', latencyMs: expect.any(Number) });
      expect(icmp.inFlight).toBe(0);
    });
  }

  it('concurrent echoes share one socket per family and get distinct sequence numbers', async () => {
    const sockets: FakeRawSocket[] = [];
    const icmp = new IcmpEcho(fakeRaw(sockets));
    cleanups.push(() => icmp.close());
    const a = probe(icmpTarget('::1'), undefined, { icmp });
    const b = probe(icmpTarget('::1'), undefined, { icmp });
    await eventually(() => sockets[0]?.sent.length === 2, 'two requests sent');
    expect(sockets).toHaveLength(1);
    const [ra, rb] = sockets[0].sent.map((s) => s.packet);
    expect(ra.readUInt16BE(6)).not.toBe(rb.readUInt16BE(6));
    // Replies in the opposite order still complete each probe.
    sockets[0].emit('message', asReply6(rb), '::1');
    sockets[0].emit('message', asReply6(ra), '::1');
    expect(await Promise.all([a, b])).toMatchObject([{ ok: true }, { ok: true }]);
  });

  it('an ICMPv6 unreachable quoting our request fails the probe with its reason', async () => {
    const sockets: FakeRawSocket[] = [];
    const icmp = new IcmpEcho(fakeRaw(sockets));
    cleanups.push(() => icmp.close());
    const pending = probe(icmpTarget('::1'), undefined, { icmp });
    await eventually(() => sockets[0]?.sent.length === 1, 'request sent');
    const inner = Buffer.alloc(40);
    inner[0] = 0x60;
    inner[6] = 58;
    inner[39] = 1;
    const msg = Buffer.concat([Buffer.from([ICMP6_DEST_UNREACH, 3, 0, 0, 0, 0, 0, 0]), inner, sockets[0].sent[0].packet]);
    sockets[0].emit('message', msg, 'fe80::1');
    const r = await pending;
    expect(r).toMatchObject({ ok: false, error: 'ICMPv6 destination unreachable: address unreachable (from fe80::1)' });
  });

  it('a socket error fails pending echoes and the next echo opens a fresh socket', async () => {
    const sockets: FakeRawSocket[] = [];
    const icmp = new IcmpEcho(fakeRaw(sockets));
    cleanups.push(() => icmp.close());
    const pending = probe(icmpTarget('::1'), undefined, { icmp });
    await eventually(() => sockets[0]?.sent.length === 1, 'request sent');
    sockets[0].emit('error', new Error('ENOBUFS'));
    expect(await pending).toMatchObject({ ok: false, error: 'ICMP socket error: ENOBUFS' });
    expect(sockets[0].closed).toBe(true);
    const again = probe(icmpTarget('::1'), undefined, { icmp });
    await eventually(() => sockets[1]?.sent.length === 1, 'request sent on a new socket');
    sockets[1].emit('message', asReply6(sockets[1].sent[0].packet), '::1');
    expect(await again).toMatchObject({ ok: true });
  });

  it('without permission to open a raw socket the probe says what is needed', async () => {
    const icmp = new IcmpEcho(fakeRaw([], new Error('Operation not permitted')));
    const r = await probe(icmpTarget('127.0.0.1'), undefined, { icmp });
    expect(r).toMatchObject({ ok: false, error: 'cannot open ICMP raw socket: Operation not permitted (needs root or CAP_NET_RAW)' });
  });
});

const isRoot = process.getuid?.() === 0;
const inCI = process.env.CI === 'true';
describe('icmp echo over real raw sockets (root only)', () => {
  if (!isRoot) {
    if (inCI) {
      it('runs as root in CI', () => {
        throw new Error('ICMP echo tests need root (CAP_NET_RAW) and CI=true: run the unit tests as root in CI');
      });
    } else {
      it.skip('skipped: ICMP echo needs root (CAP_NET_RAW); run as root to cover it', () => {});
    }
    return;
  }
  const loopbacks: { name: string; address: string; present: boolean }[] = [
    { name: 'icmp echo to 127.0.0.1 ok', address: '127.0.0.1', present: true },
    { name: 'icmpv6 echo to ::1 ok', address: '::1', present: hasIPv6Loopback },
  ];
  for (const c of loopbacks) {
    it.runIf(c.present)(c.name, async () => {
      const results = await Promise.all([0, 1, 2].map(() => probe(target(c.address, 0, { type: 'icmp', timeoutMs: 900 }))));
      expect(results).toMatchObject([{ ok: true }, { ok: true }, { ok: true }]);
      expect(sharedIcmpEcho().inFlight).toBe(0);
    });
  }
});
