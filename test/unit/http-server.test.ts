/**
 * The hardened HTTP edge (src/observe/http.ts) against hostile clients, over TCP on loopback
 * and over a unix socket in a temp dir. Limits are shortened so timeouts show within a second;
 * the daemon uses DEFAULT_HTTP_LIMITS. The 0.1 server (new URL(req.url, base) outside any
 * handler) runs in a child process to show the same requests killing it.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { clientErrorStatus, hardenedServer, requestUrl, type RejectReason } from '../../src/observe/http.js';
import { hostileCorpus, mutatedRequests, runRequests, sendRaw, type HostileRequest, type Target } from '../fixtures/hostile-http.js';

const LIMITS = { headersTimeoutMs: 400, requestTimeoutMs: 800, keepAliveTimeoutMs: 300, idleTimeoutMs: 1500, handlerTimeoutMs: 300 };
/** Longest a held (slow) client may stay connected: request timeout + the sweep period + slack. */
const HOLD_BOUND_MS = 3000;

const log = pino({ level: 'silent' });
const rejected = new Map<RejectReason, number>();
let server: Server;
let tcp: Target;
let unix: Target;
const dir = mkdtempSync(join(tmpdir(), 'sl-http-'));

function handlerFor(path: string): 'ok' | 'throw' | 'reject' | 'hang' | 'missing' {
  if (path === '/ok' || path === '/metrics') return 'ok';
  if (path === '/throw') return 'throw';
  if (path === '/reject') return 'reject';
  if (path === '/hang') return 'hang';
  return 'missing';
}

beforeAll(async () => {
  server = hardenedServer({
    listener: 'test',
    methods: ['GET', 'HEAD'],
    log,
    limits: LIMITS,
    onReject: (r) => rejected.set(r, (rejected.get(r) ?? 0) + 1),
    handler: async (_req, url, res) => {
      switch (handlerFor(url.pathname)) {
        case 'ok':
          res.writeHead(200, { 'content-type': 'text/plain' });
          res.end('ok\n');
          return;
        case 'throw':
          throw new Error('a programming error');
        case 'reject':
          await Promise.reject(new TypeError('an async programming error'));
          return;
        case 'hang':
          return new Promise<void>(() => undefined);
        default:
          res.writeHead(404, { 'content-type': 'text/plain' });
          res.end('no\n');
      }
    },
  });
  const second = hardenedServer({ listener: 'test-unix', methods: ['GET', 'HEAD'], log, limits: LIMITS, handler: (_q, url, res) => void res.writeHead(url.pathname === '/ok' ? 200 : 404).end() });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  tcp = { host: '127.0.0.1', port: (server.address() as AddressInfo).port };
  const path = join(dir, 'admin.sock');
  await new Promise<void>((r) => second.listen(path, () => r()));
  unix = { path };
  return async () => {
    await Promise.all([server, second].map((s) => new Promise<void>((r) => s.close(() => r()))));
    server.closeAllConnections();
    second.closeAllConnections();
  };
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CRLF = '\r\n';
const raw = (s: string): HostileRequest => ({ name: s.slice(0, 40), bytes: Buffer.from(s, 'latin1') });
const get = (target: string, extra = ''): HostileRequest => raw(`GET ${target} HTTP/1.1${CRLF}Host: t${CRLF}${extra}${CRLF}`);

describe('requestUrl: only origin-form, never throws', () => {
  const cases: { name: string; target: string | undefined; want: string | null }[] = [
    { name: 'plain path', target: '/metrics', want: '/metrics' },
    { name: 'query kept', target: '/flows?limit=5', want: '/flows' },
    { name: 'double slash stays a path', target: '//', want: '//' },
    { name: 'protocol-relative with bad host stays a path', target: '//[x', want: '//[x' },
    { name: 'absolute-form refused', target: 'http://[::1', want: null },
    { name: 'absolute-form, valid, refused too', target: 'http://sluice/metrics', want: null },
    { name: 'asterisk-form refused', target: '*', want: null },
    { name: 'empty refused', target: '', want: null },
    { name: 'missing refused', target: undefined, want: null },
    { name: 'bad escape kept verbatim', target: '/%zz', want: '/%zz' },
  ];
  it.each(cases)('$name', ({ target, want }) => {
    const u = requestUrl(target);
    expect(u === null ? null : u.pathname).toBe(want);
  });

  it('0.1 parse (new URL(target, base)) throws on the crash targets; requestUrl on none', () => {
    const targets = ['//', '//[x', 'http://[::1', '//[', 'http://%', '//a:b:c'];
    let naive = 0;
    let hardened = 0;
    for (const t of targets) {
      try {
        new URL(t, 'http://sluice');
      } catch {
        naive++;
      }
      try {
        requestUrl(t);
      } catch {
        hardened++;
      }
    }
    console.log(`URL parse of ${targets.length} hostile targets: 0.1 threw ${naive}, hardened threw ${hardened}`);
    expect(naive).toBeGreaterThanOrEqual(2);
    expect(hardened).toBe(0);
  });
});

describe('clientErrorStatus', () => {
  it.each([
    { code: 'HPE_HEADER_OVERFLOW', want: 431 },
    { code: 'ERR_HTTP_REQUEST_TIMEOUT', want: 408 },
    { code: 'HPE_CHUNK_EXTENSIONS_OVERFLOW', want: 413 },
    { code: 'HPE_INVALID_METHOD', want: 400 },
    { code: undefined, want: 400 },
  ])('$code -> $want', ({ code, want }) => expect(clientErrorStatus(code)).toBe(want));
});

describe('hardened server: named edge cases (TCP)', () => {
  const cases: { name: string; req: HostileRequest; want: number | 'closed'; header?: [string, RegExp] }[] = [
    { name: 'GET // answers 404', req: get('//'), want: 404 },
    { name: 'GET //[x answers 404', req: get('//[x'), want: 404 },
    { name: 'GET http://[::1 answers 400', req: get('http://[::1'), want: 400 },
    { name: 'GET * answers 400', req: get('*'), want: 400 },
    { name: 'valid request answers 200', req: get('/ok'), want: 200 },
    { name: 'DELETE answers 405 with Allow', req: raw(`DELETE /ok HTTP/1.1${CRLF}Host: t${CRLF}${CRLF}`), want: 405, header: ['allow', /GET, HEAD/] },
    { name: 'unknown method answers 400', req: raw(`FOO /ok HTTP/1.1${CRLF}Host: t${CRLF}${CRLF}`), want: 400 },
    { name: 'HTTP/1.1 without Host answers 400', req: raw(`GET /ok HTTP/1.1${CRLF}${CRLF}`), want: 400 },
    { name: 'header of 100 KiB answers 431', req: get('/ok', `X-Big: ${'x'.repeat(100_000)}${CRLF}`), want: 431 },
    { name: 'target of 20 KiB answers 431', req: get(`/${'a'.repeat(20_000)}`), want: 431 },
    { name: 'declared 10 MB body answers 413', req: get('/ok', `Content-Length: 10000000${CRLF}`), want: 413 },
    { name: 'sent 1 MiB body answers 413', req: { name: 'big body', bytes: Buffer.concat([get('/ok', `Content-Length: 1048576${CRLF}`).bytes, Buffer.alloc(1 << 20, 0x61)]) }, want: 413 },
    { name: 'bad chunk size answers 400', req: raw(`GET /ok HTTP/1.1${CRLF}Host: t${CRLF}Transfer-Encoding: chunked${CRLF}${CRLF}zz${CRLF}`), want: 400 },
    { name: 'Content-Length with chunked answers 400', req: raw(`GET /ok HTTP/1.1${CRLF}Host: t${CRLF}Content-Length: 3${CRLF}Transfer-Encoding: chunked${CRLF}${CRLF}0${CRLF}${CRLF}`), want: 400 },
    { name: 'small body is read and ignored: 200', req: raw(`GET /ok HTTP/1.1${CRLF}Host: t${CRLF}Content-Length: 5${CRLF}${CRLF}hello`), want: 200 },
    { name: 'handler throwing answers 500', req: get('/throw'), want: 500 },
    { name: 'handler rejecting answers 500', req: get('/reject'), want: 500 },
    { name: 'handler never answering gets 503', req: { ...get('/hang'), hold: true }, want: 503 },
    { name: 'slow headers: 408 or closed', req: { ...raw(`GET /ok HTTP/1.1${CRLF}Host: t${CRLF}X-Slow: `), hold: true }, want: 408 },
    { name: 'body never ending: 408', req: { ...raw(`GET /ok HTTP/1.1${CRLF}Host: t${CRLF}Content-Length: 1000${CRLF}${CRLF}partial`), hold: true }, want: 408 },
    { name: 'connect and send nothing: closed', req: { name: 'silent', bytes: Buffer.alloc(0), hold: true }, want: 'closed' },
  ];
  it.each(cases)('$name', async ({ req, want, header }) => {
    // Complete requests half-close, so the server closes after its answer instead of keeping alive.
    const o = await sendRaw(tcp, req.hold ? req : { ...req, halfClose: true }, req.hold ? HOLD_BOUND_MS : 2000);
    if (want === 'closed') {
      expect(o.closed, JSON.stringify(o)).toBe(true);
    } else if (want === 408) {
      // (a held request)
      // Node answers a header timeout with 408 or simply closes; both end the connection in bound.
      expect(o.closed, JSON.stringify(o)).toBe(true);
      expect([408, null]).toContain(o.status);
    } else {
      expect(o.status, JSON.stringify(o)).toBe(want);
    }
    if (header) expect(o.head).toMatch(new RegExp(`^${header[0]}: ${header[1].source}`, 'im'));
    // The server is still up for the next client.
    expect((await sendRaw(tcp, { ...get('/ok'), halfClose: true }, 2000)).status).toBe(200);
  });

  it('counts what it refused, by reason', () => {
    expect(rejected.get('bad-url')).toBeGreaterThanOrEqual(2);
    expect(rejected.get('handler-error')).toBeGreaterThanOrEqual(2);
    expect(rejected.get('handler-timeout')).toBeGreaterThanOrEqual(1);
    expect(rejected.get('body-too-large')).toBeGreaterThanOrEqual(1);
    expect(rejected.get('headers-too-large')).toBeGreaterThanOrEqual(1);
  });
});

describe('hostile corpus and mutations, TCP and unix socket', () => {
  it(`the corpus has at least 50 named requests, all names distinct`, () => {
    const names = hostileCorpus().map((r) => r.name);
    expect(names.length).toBeGreaterThanOrEqual(50);
    expect(new Set(names).size).toBe(names.length);
  });

  for (const which of ['tcp', 'unix'] as const) {
    it(`${which}: every corpus request is answered acceptably or closed, and the server stays up`, async () => {
      const target = which === 'tcp' ? tcp : unix;
      const corpus = hostileCorpus();
      const r = await runRequests(target, corpus, { concurrency: corpus.length, waitMs: 2000, holdWaitMs: HOLD_BOUND_MS });
      console.log(`${which} corpus: ${r.sent} sent, ${r.answered} answered ${JSON.stringify(r.statuses)}, ${r.closedWithoutAnswer} closed without answer, ${r.problems.length} problems, slowest ${r.maxMs} ms`);
      expect(r.problems, JSON.stringify(r.problems, null, 1)).toEqual([]);
      expect((await sendRaw(target, get('/ok'), 2000)).status).toBe(200);
    });

    it(`${which}: 2000 seeded mutations are answered acceptably or closed`, async () => {
      const target = which === 'tcp' ? tcp : unix;
      const r = await runRequests(target, mutatedRequests(which === 'tcp' ? 11 : 12, 2000), { concurrency: 16, waitMs: 2000, holdWaitMs: HOLD_BOUND_MS });
      console.log(`${which} mutations: ${r.sent} sent, ${r.answered} answered ${JSON.stringify(r.statuses)}, ${r.closedWithoutAnswer} closed, ${r.problems.length} problems`);
      expect(r.problems.slice(0, 5), JSON.stringify(r.problems.slice(0, 5), null, 1)).toEqual([]);
      expect((await sendRaw(target, get('/ok'), 2000)).status).toBe(200);
    });
  }
});

describe('with the protection off: the 0.1 server dies', () => {
  /** The 0.1 jsonServer, verbatim in behaviour: new URL(req.url, base) before any handler. */
  const OLD_SERVER = `
    import { createServer } from 'node:http';
    const s = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://sluice');
      Promise.resolve().then(() => { res.writeHead(url.pathname === '/ok' ? 200 : 404); res.end(); });
    });
    s.listen(0, '127.0.0.1', () => console.log(s.address().port));
  `;

  async function oldServer(): Promise<{ port: number; exited: Promise<number | null> }> {
    const child = spawn(process.execPath, ['--input-type=module', '-e', OLD_SERVER], { stdio: ['ignore', 'pipe', 'ignore'] });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    const port = await new Promise<number>((resolve, reject) => {
      child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString().trim())));
      setTimeout(() => reject(new Error('old server did not start')), 5000);
    });
    return { port, exited };
  }

  it('each 0.1 crash request kills the 0.1 server process; the hardened server answers all of them', async () => {
    const crashers = hostileCorpus().filter((r) => r.name.includes('(crashed 0.1)'));
    expect(crashers.length).toBe(3);
    let oldDied = 0;
    for (const req of crashers) {
      const old = await oldServer();
      await sendRaw({ host: '127.0.0.1', port: old.port }, req, 1000);
      const code = await Promise.race([old.exited, new Promise<'alive'>((r) => setTimeout(() => r('alive'), 1000))]);
      if (code !== 'alive') oldDied++;
    }
    let hardenedDied = 0;
    for (const req of crashers) {
      await sendRaw(tcp, req, 1000);
      if ((await sendRaw(tcp, get('/ok'), 1000)).status !== 200) hardenedDied++;
    }
    console.log(`crash requests (${crashers.length}): 0.1 server died on ${oldDied}, hardened server died on ${hardenedDied}`);
    expect(oldDied).toBe(crashers.length);
    expect(hardenedDied).toBe(0);
  });
});
