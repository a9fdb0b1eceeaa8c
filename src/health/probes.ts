/**
 * One probe of one target: tcp connect, http GET, udp request/response, icmp echo. Every probe
 * has a deadline (check.timeoutMs) and an optional abort signal; whichever comes first, the
 * probe's socket is destroyed before the promise settles. A probe never throws: failures come
 * back as { ok: false, error } with text an operator can act on.
 */
import * as net from 'node:net';
import * as http from 'node:http';
import * as dgram from 'node:dgram';
import { performance } from 'node:perf_hooks';
import { sharedIcmpEcho, type IcmpEcho } from './icmp.js';
import { HEALTH_DEFAULTS, describeExpectedStatus, statusAccepted, type HealthTarget, type ProbeResult } from './types.js';

/** http: body bytes read (and discarded) before the verdict; more ends the read early. */
export const HTTP_MAX_BODY_BYTES = 64 * 1024;
const USER_AGENT = 'sluice-health-check';

export type ProbeFn = (target: HealthTarget, signal?: AbortSignal) => Promise<ProbeResult>;

export interface ProbeDeps {
  /** ICMP echo sender; default the process-wide shared one. */
  icmp?: IcmpEcho;
}

type Finish = (ok: boolean, error?: string) => void;
/** What the probe is doing now, named in a timeout message. */
interface Progress {
  phase: string;
}

export function probe(target: HealthTarget, signal?: AbortSignal, deps: ProbeDeps = {}): Promise<ProbeResult> {
  try {
    switch (target.check.type) {
      case 'tcp':
        return tcpProbe(target, signal);
      case 'http':
        return httpProbe(target, signal);
      case 'udp':
        return udpProbe(target, signal);
      case 'icmp':
        return icmpProbe(target, signal, deps.icmp ?? sharedIcmpEcho());
      default:
        return Promise.resolve({ ok: false, error: `unknown check type ${JSON.stringify(target.check.type)}`, latencyMs: 0 });
    }
  } catch (e) {
    return Promise.resolve({ ok: false, error: errorText(e), latencyMs: 0 });
  }
}

/**
 * Run `start` under the target's deadline and `signal`. `start` creates its resources, calls
 * `finish` once it knows the answer and returns the function that releases them; that function
 * runs exactly once, when the probe settles for any reason (even if `finish` ran inside `start`).
 */
function runProbe(timeoutMs: number, signal: AbortSignal | undefined, start: (finish: Finish, progress: Progress) => () => void): Promise<ProbeResult> {
  return new Promise<ProbeResult>((resolve) => {
    if (signal?.aborted) {
      resolve({ ok: false, error: 'aborted', latencyMs: 0 });
      return;
    }
    const t0 = performance.now();
    const progress: Progress = { phase: 'connecting' };
    let settled = false;
    let release: (() => void) | null = null;
    const releaseSafely = (r: () => void): void => {
      try {
        r();
      } catch {
        // releasing must never turn a verdict into a throw
      }
    };
    const onAbort = (): void => finish(false, 'aborted');
    const timer = setTimeout(() => finish(false, `timeout after ${timeoutMs} ms (${progress.phase})`), timeoutMs);
    function finish(ok: boolean, error?: string): void {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      if (release) releaseSafely(release);
      const latencyMs = performance.now() - t0;
      resolve(ok ? { ok: true, latencyMs } : { ok: false, error: error ?? 'failed', latencyMs });
    }
    signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const r = start(finish, progress);
      if (settled) releaseSafely(r);
      else release = r;
    } catch (e) {
      finish(false, errorText(e));
    }
  });
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as NodeJS.ErrnoException).code;
    return code && !e.message.includes(code) ? `${code}: ${e.message}` : e.message;
  }
  return String(e);
}

function tcpProbe(t: HealthTarget, signal: AbortSignal | undefined): Promise<ProbeResult> {
  return runProbe(t.check.timeoutMs, signal, (finish) => {
    const socket = net.connect({ host: t.address, port: t.port, noDelay: true });
    socket.on('connect', () => finish(true));
    socket.on('error', (e) => finish(false, errorText(e)));
    return () => socket.destroy();
  });
}

function defaultHostHeader(t: HealthTarget): string {
  const host = net.isIPv6(t.address) ? `[${t.address}]` : t.address;
  return t.port === 80 ? host : `${host}:${t.port}`;
}

function httpProbe(t: HealthTarget, signal: AbortSignal | undefined): Promise<ProbeResult> {
  const c = t.check;
  return runProbe(c.timeoutMs, signal, (finish, progress) => {
    const req = http.request({
      host: t.address,
      port: t.port,
      method: 'GET',
      path: c.path ?? HEALTH_DEFAULTS.path,
      agent: false,
      setHost: false,
      headers: { Host: c.host ?? defaultHostHeader(t), Connection: 'close', 'User-Agent': USER_AGENT, Accept: '*/*' },
    });
    req.on('error', (e) => finish(false, errorText(e)));
    req.on('socket', (s) => s.once('connect', () => (progress.phase = 'waiting for response')));
    req.on('response', (res) => {
      progress.phase = 'reading body';
      const status = res.statusCode ?? 0;
      const verdict = (): void => {
        if (statusAccepted(c, status)) finish(true);
        else finish(false, `status ${status} (expected ${describeExpectedStatus(c)})`);
      };
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes > HTTP_MAX_BODY_BYTES) verdict();
      });
      res.on('end', verdict);
      res.on('error', (e) => finish(false, errorText(e)));
    });
    req.end();
    return () => req.destroy();
  });
}

function preview(b: Buffer): string {
  const max = 64;
  const text = JSON.stringify(b.subarray(0, max).toString('latin1'));
  return b.length > max ? `${text}... (${b.length} bytes)` : text;
}

function udpProbe(t: HealthTarget, signal: AbortSignal | undefined): Promise<ProbeResult> {
  const c = t.check;
  return runProbe(c.timeoutMs, signal, (finish, progress) => {
    const socket = dgram.createSocket({ type: net.isIPv6(t.address) ? 'udp6' : 'udp4' });
    socket.on('error', (e) => {
      // A connected UDP socket reports the ICMP port unreachable the request drew.
      const code = (e as NodeJS.ErrnoException).code;
      finish(false, code === 'ECONNREFUSED' ? 'ECONNREFUSED: port unreachable (nothing listening)' : errorText(e));
    });
    socket.on('message', (msg) => {
      if (!c.expect || msg.includes(c.expect)) finish(true);
      else finish(false, `reply did not contain ${JSON.stringify(c.expect)} (got ${preview(msg)})`);
    });
    socket.connect(t.port, t.address, () => {
      progress.phase = 'waiting for reply';
      socket.send(Buffer.from(c.send ?? HEALTH_DEFAULTS.send), (e) => {
        if (e) finish(false, `send failed: ${errorText(e)}`);
      });
    });
    return () => {
      try {
        socket.close();
      } catch {
        // already closed
      }
    };
  });
}

function icmpProbe(t: HealthTarget, signal: AbortSignal | undefined, icmp: IcmpEcho): Promise<ProbeResult> {
  return runProbe(t.check.timeoutMs, signal, (finish, progress) => {
    progress.phase = 'waiting for echo reply';
    return icmp.echo(t.address, (error) => (error === null ? finish(true) : finish(false, error)));
  });
}
