/**
 * `load --mode long` against plain servers on loopback: a line echo server that says nothing
 * first, an HTTP/1.1 keep-alive server, and an HTTP/1.0 server that closes after each response.
 */
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseAttribution } from '../../scripts/lib/attribution.js';
import { LongConn, type LongSettings } from '../../scripts/lib/long-connection.js';
import type { LongProtocol } from '../../scripts/lib/reports.js';

const servers: (Server | HttpServer)[] = [];
const ports = { echo: 0, greeting: 0, keepAlive: 0, http10: 0 };

function listen(s: Server | HttpServer): Promise<number> {
  servers.push(s);
  return new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as AddressInfo).port)));
}

beforeAll(async () => {
  ports.echo = await listen(createServer((c) => c.pipe(c)));
  ports.greeting = await listen(
    createServer((c) => {
      c.write('hello b7\n');
      c.pipe(c);
    }),
  );
  const ka = createHttpServer((_req, res) => {
    res.setHeader('x-backend', 'web-1');
    res.end('ok\n');
  });
  ka.keepAliveTimeout = 10_000;
  ports.keepAlive = await listen(ka);
  // What `python3 -m http.server` does: HTTP/1.0, the connection closes after the response.
  ports.http10 = await listen(
    createServer((c) => {
      c.once('data', () => c.end('HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6\r\nContent-Length: 3\r\n\r\nok\n'));
    }),
  );
});

afterAll(async () => {
  for (const s of servers) {
    if ('closeAllConnections' in s) s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
});

async function runOne(port: number, protocol: LongProtocol, how = 'auto', ms = 400): Promise<{ c: LongConn; answers: number }> {
  let answers = 0;
  const settings: LongSettings = {
    target: { host: '127.0.0.1', port, family: 4 },
    protocol,
    attribution: parseAttribution(how),
    timeout: 2000,
    interval: 20,
    stallMs: 1000,
    path: '/',
    now: () => performance.now(),
    onAnswer: () => answers++,
    onBroken: () => undefined,
  };
  const c = new LongConn(1, settings);
  await c.open();
  await new Promise((r) => setTimeout(r, ms));
  c.close();
  return { c, answers };
}

describe('load --mode long against plain servers', () => {
  const cases: {
    name: string;
    port: () => number;
    protocol: LongProtocol;
    how?: string;
    want: { broken: boolean; reason: string | null; backend: string | null; answered: boolean };
  }[] = [
    { name: 'echo: a plain line echo server (no greeting) is established and answers', port: () => ports.echo, protocol: 'echo', want: { broken: false, reason: null, backend: null, answered: true } },
    { name: 'echo: the lab greeting names the backend and is not an echo', port: () => ports.greeting, protocol: 'echo', want: { broken: false, reason: null, backend: 'b7', answered: true } },
    { name: 'echo: with --attribute none the greeting counts as a mismatch, not a name', port: () => ports.greeting, protocol: 'echo', how: 'none', want: { broken: false, reason: null, backend: null, answered: true } },
    { name: 'http: keep-alive requests on one connection, backend by header', port: () => ports.keepAlive, protocol: 'http', want: { broken: false, reason: null, backend: 'web-1', answered: true } },
    { name: 'http: an HTTP/1.0 server answers once, then the connection ends: no-keep-alive', port: () => ports.http10, protocol: 'http', want: { broken: true, reason: 'no-keep-alive', backend: null, answered: true } },
  ];
  for (const k of cases) {
    it(k.name, async () => {
      const { c, answers } = await runOne(k.port(), k.protocol, k.how);
      const v = c.view();
      expect(c.established).toBe(true);
      expect(v.broken, `reason ${v.reason}`).toBe(k.want.broken);
      expect(v.reason).toBe(k.want.reason);
      expect(v.backend).toBe(k.want.backend);
      expect(answers > 0).toBe(k.want.answered);
      expect(v.ok).toBe(answers);
      if (!k.want.broken) expect(v.ok).toBeGreaterThanOrEqual(3);
    });
  }

  it('a port nobody listens on fails with the connect error, not a timeout', async () => {
    const probe = createServer();
    const port = await new Promise<number>((r) => probe.listen(0, '127.0.0.1', () => r((probe.address() as AddressInfo).port)));
    await new Promise<void>((r) => probe.close(() => r()));
    const { c } = await runOne(port, 'echo', 'auto', 10);
    expect(c.established).toBe(false);
    expect(c.view().reason).toBe('ECONNREFUSED');
  });
});
