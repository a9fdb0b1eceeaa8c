/**
 * Shared pieces of the e2e suites: run Sluice inside a lab's balancer namespace, talk to its
 * admin socket, scrape its metrics. Every e2e suite needs root (namespaces, raw sockets); without
 * root it is skipped with a message, and with CI=true a skip is a failure.
 */
import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import type { Lab } from '../../scripts/lab/topology.js';
import { expect } from 'vitest';
import { adminRequest } from '../../src/observe/admin-client.js';

export const ROOT = process.getuid?.() === 0;
export const REPO = join(import.meta.dirname, '..', '..');

/** Call at the top of an e2e file: returns whether to run; throws under CI=true without root. */
export function e2eEnabled(what: string): boolean {
  if (ROOT) return true;
  const msg = `${what}: needs root (network namespaces, raw sockets); skipped. Run: sudo npm test`;
  if (process.env.CI === 'true') throw new Error(`${msg} — but CI=true, and a skipped e2e test fails the run`);
  console.warn(msg);
  return false;
}

/** Build dist/ once if a suite finds it missing (npm test builds first; a lone vitest run may not). */
export function ensureBuilt(): void {
  const need = [join(REPO, 'dist', 'src', 'cli.js'), join(REPO, 'dist', 'scripts', 'load.js'), join(REPO, 'src', 'dataplane', 'native', 'build', 'Release', 'sluice_pcap.node')];
  if (need.every((f) => existsSync(f))) return;
  execFileSync('npm', ['run', 'build'], { cwd: REPO, stdio: 'inherit' });
}

export interface RunningSluice {
  child: ChildProcess;
  socket: string;
  balancer: number;
  log: string;
}

/** Start `sluice run` in balancer K's namespace and wait until its admin API answers. */
/** env: variables added to the balancer's environment (e.g. the measurement switch SLUICE_TX). */
export async function startSluice(lab: Lab, config: string, balancer = 1, timeoutMs = 20_000, env?: Record<string, string>): Promise<RunningSluice> {
  const socket = lab.adminSocket(balancer);
  const logName = `sluice-lb${balancer}-${Date.now()}.log`;
  const child = lab.spawn(`lb${balancer}`, [process.execPath, join(REPO, 'dist', 'src', 'cli.js'), 'run', '--config', config], { logName, env });
  const log = join(lab.describe().runDir, logName);
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`sluice exited with ${child.exitCode} during start; log ${log}`);
    try {
      const r = await adminRequest(socket, 'GET', '/status', 1000);
      if (r.status === 200) return { child, socket, balancer, log };
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`sluice did not answer on ${socket} within ${timeoutMs} ms; log ${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

export async function stopSluice(s: RunningSluice): Promise<void> {
  if (s.child.exitCode !== null) return;
  const exited = new Promise<void>((r) => s.child.once('exit', () => r()));
  s.child.kill('SIGTERM');
  const t = setTimeout(() => s.child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

export async function admin<T>(s: RunningSluice, method: string, path: string): Promise<T> {
  const r = await adminRequest(s.socket, method, path, 5000);
  if (r.status >= 400) throw new Error(`admin ${method} ${path}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as T;
}

/** Prometheus text -> { 'name{labels}': value }, labels as written by prom-client. */
export async function scrape(lab: Lab, balancer = 1): Promise<Map<string, number>> {
  const { stdout } = await lab.exec(`lb${balancer}`, ['curl', '-sf', '--max-time', '5', 'http://127.0.0.1:9180/metrics']);
  const out = new Map<string, number>();
  for (const line of stdout.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

/** Sum of a metric over the series whose labels contain every given label="value". */
export function metric(m: Map<string, number>, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const [k, v] of m) {
    if (k !== name && !k.startsWith(`${name}{`)) continue;
    if (Object.entries(labels).every(([l, val]) => k.includes(`${l}="${val}"`))) sum += v;
  }
  return sum;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The backends' own view of a UDP run: each client flow was seen by exactly one backend, with all its datagrams. */
export async function expectEachUdpFlowOnOneBackend(lab: Lab, flows: number, perFlow: number): Promise<void> {
  const seen = new Map<string, number>();
  for (const st of Object.values(await lab.allBackendStats())) {
    for (const [flow, n] of Object.entries(st.udp.flows)) {
      expect(seen.has(flow), `flow ${flow} reached two backends`).toBe(false);
      seen.set(flow, n);
    }
  }
  expect(seen.size).toBe(flows);
  for (const n of seen.values()) expect(n).toBe(perFlow);
}

/** The engine the data plane reported once up (status says '' until then); waits at most 10 s. */
export async function engineOf(s: RunningSluice): Promise<string> {
  for (let i = 0; i < 100; i++) {
    const e = (await admin<{ dataplane: { engine: string } }>(s, 'GET', '/status')).dataplane.engine;
    if (e !== '') return e;
    await new Promise((r) => setTimeout(r, 100));
  }
  return '';
}
