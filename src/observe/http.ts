/**
 * The HTTP edge of Sluice: the metrics port and the admin socket. Anyone who can reach either
 * may send anything, so every request ends in a well-formed answer (400, 404, 405, 408, 413,
 * 431, 500, 503) or a closed connection, and nothing a client sends can throw outside a handler.
 *
 * Parsing is Node's own llhttp (node:http) with its limits: header size, header and request
 * timeouts, idle sockets, connection count. Requests llhttp refuses reach 'clientError', which
 * answers on the raw socket. Our endpoints take no body: a body is read and discarded up to a
 * small cap (413 beyond it); one that never ends meets the request timeout (408).
 */
import { STATUS_CODES, createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Logger } from './log.js';

export type Handler = (req: IncomingMessage, url: URL, res: ServerResponse) => Promise<void> | void;

/** Why a request got no handler: the label of sluice_http_rejected_total. */
export type RejectReason =
  | 'bad-request'
  | 'bad-url'
  | 'method'
  | 'body-too-large'
  | 'headers-too-large'
  | 'timeout'
  | 'handler-error'
  | 'handler-timeout'
  | 'forbidden';

export interface HttpLimits {
  /** Request line plus headers, bytes (llhttp: 431 beyond it). */
  maxHeaderBytes: number;
  /** Request body bytes read and discarded before 413. */
  maxBodyBytes: number;
  /** Whole header block must arrive within this (Slowloris). */
  headersTimeoutMs: number;
  /** Whole request, body included, must arrive within this. */
  requestTimeoutMs: number;
  /** An idle keep-alive connection is closed after this. */
  keepAliveTimeoutMs: number;
  /** Any socket with no traffic for this long is destroyed (half-open clients). */
  idleTimeoutMs: number;
  /** A handler that has not answered by then gets a 503 in its place. */
  handlerTimeoutMs: number;
  /** Connections beyond this are closed on accept. */
  maxConnections: number;
}

export const DEFAULT_HTTP_LIMITS: Readonly<HttpLimits> = {
  maxHeaderBytes: 8 * 1024,
  maxBodyBytes: 64 * 1024,
  headersTimeoutMs: 5_000,
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  idleTimeoutMs: 15_000,
  handlerTimeoutMs: 15_000,
  maxConnections: 256,
};

export interface HardenedServerOptions {
  /** 'metrics' or 'admin': names the listener in logs and counters. */
  listener: string;
  /** Methods the endpoints accept; any other gets 405 with an Allow header. */
  methods: readonly string[];
  handler: Handler;
  log: Logger;
  /** Counts every request answered without reaching the handler, and handler failures. */
  onReject?: (reason: RejectReason) => void;
  limits?: Partial<HttpLimits>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  if (res.headersSent || res.writableEnded || res.destroyed) return;
  const text = `${JSON.stringify(body, null, 2)}\n`;
  res.writeHead(status, { ...headers, 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * The request target as a URL, or null. Only origin-form ("/path?query") is served; it is
 * resolved against a fixed origin by concatenation, never as a relative reference, so "//host"
 * or "//[x" cannot become an authority and nothing here throws.
 */
export function requestUrl(target: string | undefined): URL | null {
  if (target === undefined || !target.startsWith('/')) return null;
  try {
    return new URL(`http://sluice${target}`);
  } catch {
    return null;
  }
}

/** The answer to a request llhttp could not parse: status by error code. */
export function clientErrorStatus(code: string | undefined): number {
  switch (code) {
    case 'HPE_HEADER_OVERFLOW':
      return 431;
    case 'ERR_HTTP_REQUEST_TIMEOUT':
    case 'ERR_HTTP_HEADERS_TIMEOUT':
      return 408;
    case 'HPE_CHUNK_EXTENSIONS_OVERFLOW':
      return 413;
    default:
      return 400;
  }
}

function rejectReasonOf(status: number): RejectReason {
  return status === 431 ? 'headers-too-large' : status === 408 ? 'timeout' : status === 413 ? 'body-too-large' : 'bad-request';
}

/** A closed-connection answer written straight to the socket (there is no response object yet). */
function rawAnswer(status: number, error: string): string {
  const body = `${JSON.stringify({ error })}\n`;
  return `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
}

/** Longest a refused client may keep its socket after the answer is queued. */
const CLOSE_GRACE_MS = 1_000;

/** An HTTP server that no request can crash: see the file comment. */
export function hardenedServer(opts: HardenedServerOptions): Server {
  const limits: HttpLimits = { ...DEFAULT_HTTP_LIMITS, ...opts.limits };
  const reject = (reason: RejectReason): void => opts.onReject?.(reason);
  const allow = opts.methods.join(', ');

  const server = createServer(
    {
      maxHeaderSize: limits.maxHeaderBytes,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      keepAliveTimeout: limits.keepAliveTimeoutMs,
      // The timeouts above are enforced by a periodic sweep; the default period is 30 s.
      connectionsCheckingInterval: Math.max(100, Math.min(1_000, limits.headersTimeoutMs / 2)),
      insecureHTTPParser: false,
    },
    (req, res) => {
      const closeAfter = { connection: 'close' };
      const method = req.method ?? '';
      if (!opts.methods.includes(method)) {
        reject('method');
        return sendJson(res, 405, { error: `method ${method} not allowed; use ${allow}` }, { ...closeAfter, allow });
      }
      const url = requestUrl(req.url);
      if (!url) {
        reject('bad-url');
        return sendJson(res, 400, { error: 'bad request target: expected a path starting with "/"' }, closeAfter);
      }
      const declared = Number(req.headers['content-length'] ?? 0);
      if (declared > limits.maxBodyBytes) {
        reject('body-too-large');
        return sendJson(res, 413, { error: `request body over ${limits.maxBodyBytes} bytes` }, closeAfter);
      }
      // No endpoint reads a body; consume (bounded) what was sent so the connection stays in sync.
      let received = 0;
      let refused = false;
      req.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (received > limits.maxBodyBytes && !refused) {
          refused = true;
          reject('body-too-large');
          sendJson(res, 413, { error: `request body over ${limits.maxBodyBytes} bytes` }, closeAfter);
          req.pause();
        }
      });
      req.on('error', () => res.destroy());
      req.on('end', () => {
        if (!refused) dispatch(req, url, res);
      });
    },
  );

  const dispatch = (req: IncomingMessage, url: URL, res: ServerResponse): void => {
    const deadline = setTimeout(() => {
      reject('handler-timeout');
      opts.log.error({ event: 'http_handler_timeout', listener: opts.listener, method: req.method, path: url.pathname }, 'request handler did not answer in time');
      if (!res.headersSent) sendJson(res, 503, { error: `no answer within ${limits.handlerTimeoutMs} ms` }, { connection: 'close' });
      else res.destroy();
    }, limits.handlerTimeoutMs);
    deadline.unref();
    Promise.resolve()
      .then(() => opts.handler(req, url, res))
      .then(
        () => {
          if (!res.headersSent) throw new Error('handler returned without answering');
        },
      )
      .catch((e: unknown) => {
        // A programming error in one handler costs that request, never the process.
        reject('handler-error');
        const err = e instanceof Error ? e : new Error(String(e));
        opts.log.error({ event: 'http_handler_error', listener: opts.listener, method: req.method, path: url.pathname, error: err.message, stack: err.stack }, 'request handler failed');
        if (!res.headersSent) sendJson(res, 500, { error: `internal error: ${err.message}` });
        else res.destroy();
      })
      .finally(() => clearTimeout(deadline));
  };

  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    const status = clientErrorStatus(err.code);
    if (err.code === 'ECONNRESET' || err.code === 'EPIPE' || !socket.writable) {
      socket.destroy();
      return;
    }
    reject(rejectReasonOf(status));
    socket.end(rawAnswer(status, status === 431 ? 'request headers too large' : status === 408 ? 'request timed out' : `malformed request (${err.code ?? 'parse error'})`));
    // A client that never reads must not hold the socket open.
    setTimeout(() => socket.destroy(), CLOSE_GRACE_MS).unref();
  });
  // Accept errors (EMFILE, ...) must not become an uncaught 'error'.
  server.on('error', (e: Error) => opts.log.error({ event: 'http_server_error', listener: opts.listener, error: e.message }, 'HTTP listener error'));
  server.maxConnections = limits.maxConnections;
  server.maxHeadersCount = 100;
  // Idle or half-open sockets: with no 'timeout' listener Node destroys them.
  server.timeout = limits.idleTimeoutMs;
  return server;
}

/** "host:port" or "[v6]:port" -> listen arguments. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(listen) ?? /^([^:]+):(\d+)$/.exec(listen);
  if (!m) throw new Error(`bad listen address ${JSON.stringify(listen)}: expected host:port or [v6]:port`);
  return { host: m[1], port: Number(m[2]) };
}

export function listenTcp(server: Server, listen: string): Promise<void> {
  const { host, port } = parseListen(listen);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}
