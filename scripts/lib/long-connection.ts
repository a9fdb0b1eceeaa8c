/**
 * One long-lived TCP connection of `load --mode long`: it sends a message every interval and
 * expects each answer, recording round trips, the longest stall and why it broke, if it did.
 *   echo  newline-delimited lines "m ID SEQ", echoed back by any line echo server (a first line
 *         that the attribution recognises as a greeting, e.g. the lab's "hello NAME", names the
 *         backend and is not counted as an echo);
 *   http  GET requests one after the other on one keep-alive connection (HTTP/1.1); a server
 *         that closes the connection breaks it ("closed-by-peer", or "no-keep-alive" when the
 *         server announced it: HTTP/1.0 or Connection: close).
 * Established means the server answered once (a greeting line, an echo or a response) over a
 * completed TCP handshake: a server need not say anything first, and once established the
 * greeting, if any, has been read.
 */
import { Agent, request, type ClientRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { backendOfGreeting, backendOfHttp, type Attribution } from './attribution.js';
import type { LongConnection, LongProtocol } from './reports.js';
import { round3 } from './stats.js';
import type { Target } from './target.js';

export interface LongSettings {
  target: Target;
  protocol: LongProtocol;
  attribution: Attribution;
  bind?: string;
  /** Connect timeout, ms. */
  timeout: number;
  /** Between messages, ms. */
  interval: number;
  stallMs: number;
  /** http: the request path. */
  path: string;
  now: () => number;
  /** Called for each answered message: when (performance.now()) and its round trip. */
  onAnswer: (at: number, rttMs: number) => void;
  /** Called when the connection breaks. */
  onBroken: (at: number) => void;
}

const MAX_BODY = 65536;

export class LongConn {
  readonly rec: LongConnection;
  localAddress: string | null = null;
  readonly #s: LongSettings;
  #socket: Socket | null = null;
  #agent: Agent | null = null;
  #buf = '';
  #seq = 0;
  #outstanding: { seq: number; at: number }[] = [];
  #lastAnswerAt = 0;
  #answeredAny = false;
  #timer: NodeJS.Timeout | null = null;
  #closing = false;
  /** The TCP handshake completed. */
  #connected = false;
  /** Something came back: a greeting, an echo or a response. */
  #heard = false;
  /** http: the server said it closes the connection after its response (HTTP/1.0 or Connection: close). */
  #serverCloses = false;
  #settle: () => void = () => undefined;

  constructor(id: number, settings: LongSettings) {
    this.#s = settings;
    this.rec = { id, backend: null, localPort: null, sent: 0, ok: 0, mismatches: 0, maxStallMs: 0, stalled: false, broken: false, reason: null };
  }

  get established(): boolean {
    return this.#heard;
  }

  /** Resolves once the TCP handshake completed or the connection failed. */
  open(): Promise<void> {
    return new Promise((resolve) => {
      this.#settle = resolve;
      if (this.#s.protocol === 'echo') this.#openEcho();
      else this.#openHttp();
    });
  }

  #onConnected(s: Socket): void {
    this.#socket = s;
    this.#connected = true;
    this.rec.localPort = s.localPort ?? null;
    this.localAddress = s.localAddress ?? null;
    this.#lastAnswerAt = this.#s.now();
    this.#settle();
  }

  #openEcho(): void {
    const { target, bind, timeout } = this.#s;
    const s = connect({ host: target.host, port: target.port, family: target.family, localAddress: bind, timeout });
    this.#socket = s;
    s.setNoDelay(true);
    s.setEncoding('utf8');
    s.on('connect', () => {
      s.setTimeout(0);
      this.#onConnected(s);
      this.#tick();
    });
    s.on('timeout', () => {
      if (!this.#connected) this.#fail('connect-timeout');
    });
    s.on('data', (chunk: string) => this.#onData(chunk));
    s.on('error', (err) => this.#fail(errCode(err)));
    s.on('end', () => this.#fail('closed-by-peer'));
    s.on('close', () => this.#fail('closed'));
  }

  #onData(chunk: string): void {
    this.#buf += chunk;
    let nl = this.#buf.indexOf('\n');
    while (nl >= 0) {
      const line = this.#buf.slice(0, nl).replace(/\r$/, '');
      this.#buf = this.#buf.slice(nl + 1);
      nl = this.#buf.indexOf('\n');
      this.#onLine(line);
    }
    if (this.#buf.length > MAX_BODY) this.#buf = '';
  }

  #onLine(line: string): void {
    this.#heard = true;
    if (!this.#answeredAny && this.rec.backend === null) {
      const name = backendOfGreeting(this.#s.attribution, line);
      if (name !== null) {
        this.rec.backend = name;
        return;
      }
    }
    const head = this.#outstanding[0];
    if (!head || line !== `m ${this.rec.id} ${head.seq}`) {
      this.rec.mismatches++;
      return;
    }
    this.#answered();
  }

  #answered(): void {
    const head = this.#outstanding.shift();
    if (!head) return;
    const t = this.#s.now();
    this.#answeredAny = true;
    this.rec.ok++;
    this.rec.maxStallMs = Math.max(this.rec.maxStallMs, t - head.at, t - this.#lastAnswerAt);
    this.#lastAnswerAt = t;
    this.#s.onAnswer(t, t - head.at);
  }

  #openHttp(): void {
    // One socket, kept alive, never replaced: a second socket would be a new connection.
    this.#agent = new Agent({ keepAlive: true, maxSockets: 1, maxFreeSockets: 1 });
    this.#httpRequest();
  }

  #httpRequest(): void {
    const { target, bind, timeout, path } = this.#s;
    const seq = ++this.#seq;
    this.#outstanding.push({ seq, at: this.#s.now() });
    this.rec.sent++;
    const req: ClientRequest = request({ host: target.host, port: target.port, family: target.family, path, method: 'GET', agent: this.#agent ?? undefined, localAddress: bind });
    if (!this.#connected) {
      req.setTimeout(timeout, () => {
        if (!this.#connected) this.#fail('connect-timeout');
      });
    }
    req.on('socket', (s: Socket) => {
      if (this.#socket && s !== this.#socket) {
        this.#fail('reconnected');
        return;
      }
      if (this.#socket) return;
      const connected = (): void => {
        req.setTimeout(0);
        s.on('close', () => this.#fail(this.#serverCloses ? 'no-keep-alive' : 'closed-by-peer'));
        this.#onConnected(s);
      };
      if (s.connecting) s.once('connect', connected);
      else connected();
    });
    req.on('response', (res) => {
      const connection = String(res.headers.connection ?? '').toLowerCase();
      if (connection === 'close' || (res.httpVersion === '1.0' && connection !== 'keep-alive')) this.#serverCloses = true;
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        if (body.length < MAX_BODY) body += c;
      });
      res.on('end', () => {
        this.#heard = true;
        const status = res.statusCode ?? 0;
        if (status < 200 || status >= 400) {
          this.rec.mismatches++;
          this.#outstanding.shift();
        } else {
          const name = backendOfHttp(this.#s.attribution, res.headers, body);
          if (name !== null) {
            if (this.rec.backend === null) this.rec.backend = name;
            else if (this.rec.backend !== name) this.rec.mismatches++;
          }
          this.#answered();
        }
        if (!this.#timer && !this.#closing && !this.rec.broken) this.#schedule();
      });
    });
    req.on('error', (err) => this.#fail(errCode(err)));
    req.end();
  }

  #schedule(): void {
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#tick();
    }, this.#s.interval);
  }

  #tick(): void {
    if (this.#closing || this.rec.broken || !this.#socket) return;
    if (this.#s.protocol === 'http') {
      // One request at a time on the connection: the next goes when this one is answered.
      if (this.#outstanding.length === 0) this.#httpRequest();
      return;
    }
    this.#seq++;
    this.#outstanding.push({ seq: this.#seq, at: this.#s.now() });
    this.rec.sent++;
    this.#socket.write(`m ${this.rec.id} ${this.#seq}\n`);
    this.#schedule();
  }

  #fail(reason: string): void {
    if (this.#closing || this.rec.broken) return;
    this.rec.broken = true;
    this.rec.reason = reason;
    if (this.#timer) clearTimeout(this.#timer);
    this.#socket?.destroy();
    this.#agent?.destroy();
    this.#s.onBroken(this.#s.now());
    this.#settle();
  }

  /** The stall so far, counting an answer still outstanding. */
  stallNow(): number {
    const oldest = this.#outstanding[0];
    const t = this.#s.now();
    let s = this.rec.maxStallMs;
    if (oldest && !this.rec.broken) s = Math.max(s, t - oldest.at, t - this.#lastAnswerAt);
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
    this.#socket?.end();
    const s = this.#socket;
    const agent = this.#agent;
    setTimeout(() => {
      s?.destroy();
      agent?.destroy();
    }, 1000).unref();
  }

  view(): LongConnection {
    const maxStallMs = round3(this.rec.broken ? this.rec.maxStallMs : this.stallNow());
    return { ...this.rec, maxStallMs, stalled: maxStallMs > this.#s.stallMs };
  }
}

export function errCode(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof (err as { code: unknown }).code === 'string') return (err as { code: string }).code;
  return err instanceof Error ? err.message.slice(0, 60) : String(err);
}
