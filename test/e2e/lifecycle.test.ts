/**
 * e2e: backend lifecycle and operations, through real kernel TCP in namespace labs.
 *
 * Topology A (scripts/lab/topology.ts, mode "stick", 1 balancer): client ns -> router ns -> a
 * bridge segment with Sluice one-armed on it (sl-lb0) and 3 backends (b1..b3) holding the VIP on
 * lo and running HTTP (80) and echo (7) servers; backends answer the client directly (L2 DSR).
 * On it, one Sluice instance at a time:
 *   - health checks: a backend whose server stops is marked down, avoided, and comes back;
 *   - drain/undrain through the CLI, with long-lived connections on the drained backend;
 *   - spares: 2 primaries + 1 spare, minPrimaries 2;
 *   - client affinity (source-ip) on one instance;
 *   - least privilege: Sluice as user nobody with CAP_NET_RAW only (what examples/sluice.service grants).
 * Topology B (same, 2 balancers): the router has an ECMP route (L4 hash) over lb1 and lb2, one
 * Sluice on each: affinity holds across instances while ECMP spreads one client's connections.
 *
 * Bounded waits everywhere (poll state, never sleep for a fixed outcome); every lab is torn down
 * in afterAll.
 */
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, cpSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, type ConfigOptions, type ConfigService } from '../../scripts/lab/topology.js';
import type { HttpReport, LongConnection, LongReport, UdpReport } from '../../scripts/lib/reports.js';
import type { LoadRun } from '../../scripts/lab/topology.js';
import type { BackendStatus } from '../../src/observe/admin-api.js';
import { adminRequest } from '../../src/observe/admin-client.js';
import { REPO, admin, e2eEnabled, ensureBuilt, metric, scrape, sleep, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';

const enabled = e2eEnabled('e2e backend lifecycle (health, drain, spares, affinity, least privilege)');

const CLI = join(REPO, 'dist', 'src', 'cli.js');
/** The checks of acceptance 1: fast enough to see a transition within a second or two. */
const FAST = { intervalMs: 200, timeoutMs: 150, rise: 2, fall: 2 } as const;
/** Upper bound of every wait for a state change (a bound, not an expectation). */
const STATE_WAIT_MS = 8000;

// ---- config files: what configFor() writes, plus the lifecycle keys it does not know ----------
interface BackendJson {
  address: string;
  weight?: number;
  state?: 'active' | 'draining';
  role?: 'primary' | 'spare';
}
interface ServiceJson {
  name: string;
  vip: string;
  port: number | 'all';
  protocol: string;
  backends: BackendJson[];
  healthCheck?: Record<string, unknown>;
  minPrimaries?: number;
  affinity?: { mode: 'source-ip'; timeoutS?: number; ipv4Prefix?: number; ipv6Prefix?: number };
}
interface ConfigJson {
  services: ServiceJson[];
  admin: { socket: string };
  [key: string]: unknown;
}

/** Write a lab config, then let `extend` add health checks, roles, affinity... per service. */
function writeConfig(lab: Lab, services: ConfigService[], extend: (s: ServiceJson) => void, opts: ConfigOptions = {}): string {
  const file = lab.configFor(services, opts);
  const cfg = JSON.parse(readFileSync(file, 'utf8')) as ConfigJson;
  for (const s of cfg.services) extend(s);
  writeFileSync(file, JSON.stringify(cfg, null, 2) + '\n');
  return file;
}

// ---- the CLI as an operator runs it ---------------------------------------------------------
interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function sluiceCli(args: readonly string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 20_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** The line of a human table that names both words (service and backend address). */
function rowOf(table: string, ...words: string[]): string {
  const line = table.split('\n').find((l) => words.every((w) => l.split(/\s+/).includes(w)));
  if (!line) throw new Error(`no row with ${words.join(' ')} in:\n${table}`);
  return line;
}

// ---- polling ----------------------------------------------------------------------------------
/** Poll `probe` every 50 ms until it returns a value; throws after `timeoutMs`. Returns the value and how long it took. */
async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<{ value: T; ms: number }> {
  const t0 = Date.now();
  const maxRounds = Math.ceil(timeoutMs / 50) + 1;
  let last: unknown = null;
  for (let round = 0; round < maxRounds; round++) {
    try {
      const v = await probe();
      if (v !== undefined) return { value: v, ms: Date.now() - t0 };
    } catch (e) {
      last = e;
    }
    if (Date.now() - t0 > timeoutMs) break;
    await sleep(50);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
}

interface StatusJson {
  generation: number;
  dataplane: { generation: number };
}

async function backendsOf(s: RunningSluice): Promise<BackendStatus[]> {
  return (await admin<{ backends: BackendStatus[] }>(s, 'GET', '/backends')).backends;
}

function find(rows: BackendStatus[], service: string, address: string): BackendStatus {
  const r = rows.find((b) => b.service === service && b.address === address);
  if (!r) throw new Error(`no backend ${address} in service ${service}`);
  return r;
}

/** Wait until every (service, address) has the wanted status; returns the time it took. */
async function waitStatus(s: RunningSluice, want: { service: string; address: string; status: string }[]): Promise<number> {
  const { ms } = await waitFor(`status ${want.map((w) => `${w.service}/${w.address}=${w.status}`).join(', ')}`, STATE_WAIT_MS, async () => {
    const rows = await backendsOf(s);
    return want.every((w) => find(rows, w.service, w.address).status === w.status) ? true : undefined;
  });
  return ms;
}

/** Wait until a generation after `after` is in force in the data plane; returns it. */
async function waitApplied(s: RunningSluice, after: number): Promise<number> {
  const { value } = await waitFor(`a generation after ${after} applied`, STATE_WAIT_MS, async () => {
    const st = await admin<StatusJson>(s, 'GET', '/status');
    return st.generation > after && st.dataplane.generation === st.generation ? st.generation : undefined;
  });
  return value;
}

async function generationOf(s: RunningSluice): Promise<number> {
  return (await admin<StatusJson>(s, 'GET', '/status')).generation;
}

// ---- load ---------------------------------------------------------------------------------
function http(lab: Lab, count: number): Promise<HttpReport> {
  return lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', String(count), '--concurrency', '6', '--duration', '60']) as Promise<HttpReport>;
}

function countOf(r: HttpReport, backend: string): number {
  return r.backends[backend]?.count ?? 0;
}

function startLong(lab: Lab, connections: number): LoadRun {
  return lab.startLoad(['--mode', 'long', '--target', `${VIP4}:7`, '--connections', String(connections), '--interval', '100', '--stall-ms', '2000', '--duration', '90']);
}

async function established(lab: Lab, load: LoadRun, n: number): Promise<LongReport> {
  // Ask load.js for a snapshot (SIGUSR2) only once its connections are up: before it installs its
  // handler, SIGUSR2 would kill it. The backends' own count says when that is.
  await waitFor(`${n} echo connections open on the backends`, 15_000, async () => {
    let open = 0;
    for (const st of Object.values(await lab.allBackendStats())) open += st.tcp.byPort['7']?.open ?? 0;
    return open >= n ? true : undefined;
  });
  const { value } = await waitFor(`${n} long-lived connections established`, 15_000, async () => {
    const s = (await load.snapshot()) as LongReport;
    return s.established === n ? s : undefined;
  });
  return value;
}

const brief = (c: LongConnection[]): string => JSON.stringify(c.map((x) => ({ id: x.id, backend: x.backend, reason: x.reason, stall: x.maxStallMs })));

describe.skipIf(!enabled)('backend lifecycle: one Sluice, 3 backends (stick)', () => {
  let lab: Lab;
  let sluice: RunningSluice | null = null;
  let b1: string;
  let b2: string;
  let b3: string;
  const figures: string[] = [];

  const restart = async (config: string): Promise<RunningSluice> => {
    if (sluice) await stopSluice(sluice);
    sluice = null;
    sluice = await startSluice(lab, config);
    return sluice;
  };
  const running = (): RunningSluice => {
    if (!sluice) throw new Error('Sluice is not running');
    return sluice;
  };

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick', ipv6: false });
    [b1, b2, b3] = lab.backends().map((b) => b.ipv4);
  });
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
    if (figures.length > 0) console.log(`lifecycle e2e figures:\n  ${figures.join('\n  ')}`);
  });

  it('health: a backend whose server stops is marked down (metrics, CLI), new connections avoid it, long-lived ones elsewhere are untouched; restarted, it serves again', async () => {
    // Both services carry the same check (the backend's HTTP endpoint, port 80): Sluice runs it
    // once per backend, so one transition makes one generation, and the echo service's table
    // changes under its long-lived connections too (invariant 1: they keep their backends).
    const config = writeConfig(
      lab,
      [
        { name: 'web', vip: VIP4, port: 80, protocol: 'tcp' },
        { name: 'echo', vip: VIP4, port: 7, protocol: 'tcp' },
      ],
      (s) => {
        s.healthCheck = { type: 'http', port: 80, path: '/', ...FAST };
      },
    );
    const s = await restart(config);
    const long = startLong(lab, 30);
    try {
      const before = await established(lab, long, 30);
      expect(Object.keys(before.backends).sort()).toEqual(['b1', 'b2', 'b3']);
      const m0 = await scrape(lab);
      const gen0 = await generationOf(s);

      await lab.stopServer(2);
      const downMs = await waitStatus(s, [
        { service: 'web', address: b2, status: 'down' },
        { service: 'echo', address: b2, status: 'down' },
      ]);
      figures.push(`health: b2 marked down (http check, fall 2 x 200 ms) ${downMs} ms after its server stopped`);
      const gen1 = await waitApplied(s, gen0);
      expect(gen1).toBe(gen0 + 1);

      // Metrics: one transition to down (the check both services share), counted in each
      // service's series of b2.
      const m1 = await scrape(lab);
      for (const service of ['web', 'echo']) {
        const down = { service, backend: b2, to: 'down' };
        expect(metric(m1, 'sluice_health_transitions_total', down) - metric(m0, 'sluice_health_transitions_total', down)).toBe(1);
      }
      expect(metric(m1, 'sluice_config_generation')).toBeGreaterThanOrEqual(gen1);

      // The CLI: `backends` shows the state and the health detail, `status` the new generation and the status.
      const bj = await sluiceCli(['backends', '--socket', s.socket, '--json']);
      expect(bj.code, bj.stderr).toBe(0);
      const web2 = find((JSON.parse(bj.stdout) as { backends: BackendStatus[] }).backends, 'web', b2);
      expect(web2.status).toBe('down');
      expect(web2.health?.check).toBe('http');
      expect(web2.health?.state).toBe('down');
      expect(web2.health?.lastError).toBeTruthy();
      const bh = await sluiceCli(['backends', '--socket', s.socket]);
      expect(bh.code, bh.stderr).toBe(0);
      expect(rowOf(bh.stdout, 'web', b2)).toMatch(/\bdown\b.*\bhttp down\b/);
      expect(rowOf(bh.stdout, 'echo', b2)).toMatch(/\bdown\b.*\bhttp down\b/);
      expect(rowOf(bh.stdout, 'web', b1)).toMatch(/\bserving\b/);
      const st = await sluiceCli(['status', '--socket', s.socket]);
      expect(st.code, st.stderr).toBe(0);
      expect(st.stdout).toMatch(new RegExp(`generation ${gen1}\\b`));
      expect(rowOf(st.stdout, 'web', b2)).toMatch(/\bdown\b/);

      // New connections avoid b2.
      const during = await http(lab, 90);
      expect(during.failed, JSON.stringify(during.errorKinds)).toBe(0);
      expect(during.ok).toBe(90);
      expect(countOf(during, 'b2')).toBe(0);
      expect(countOf(during, 'b1')).toBeGreaterThan(0);
      expect(countOf(during, 'b3')).toBeGreaterThan(0);

      // b2 comes back: rise 2 probes, then a generation with it serving.
      const gen2 = await generationOf(s);
      await lab.startServer(2);
      const upMs = await waitStatus(s, [
        { service: 'web', address: b2, status: 'serving' },
        { service: 'echo', address: b2, status: 'serving' },
      ]);
      await waitApplied(s, gen2);
      const web2up = find(await backendsOf(s), 'web', b2);
      expect(web2up.health?.state).toBe('up');
      const after = await http(lab, 90);
      expect(after.ok).toBe(90);
      expect(countOf(after, 'b2')).toBeGreaterThan(0);
      const m2 = await scrape(lab);
      const up = { service: 'web', backend: b2, to: 'up' };
      expect(metric(m2, 'sluice_health_transitions_total', up) - metric(m1, 'sluice_health_transitions_total', up)).toBe(1);

      const report = (await long.stop()) as LongReport;
      const others = report.perConnection.filter((c) => c.backend !== 'b2');
      const onB2 = report.perConnection.filter((c) => c.backend === 'b2');
      expect(others.length + onB2.length).toBe(30);
      expect(others.filter((c) => c.broken), brief(others.filter((c) => c.broken))).toEqual([]);
      expect(others.filter((c) => c.stalled), brief(others.filter((c) => c.stalled))).toEqual([]);
      figures.push(
        `health: b2 back to serving ${upMs} ms after its server restarted; new HTTP connections while down: ${JSON.stringify(during.backends)}; after: ${JSON.stringify(after.backends)}`,
        `health: long-lived echo connections: ${others.length} on b1/b3, 0 broken, longest stall ${Math.max(0, ...others.map((c) => c.maxStallMs)).toFixed(0)} ms; ${onB2.filter((c) => c.broken).length} of ${onB2.length} on b2 broke with its server`,
      );
    } finally {
      await long.stop().catch(() => undefined);
      await lab.startServer(2);
    }
  });

  it('drain through the CLI: no new connections reach b1, its long-lived connections keep working (listed as active flows); undrain brings it back', async () => {
    const s = running();
    await waitStatus(s, [
      { service: 'web', address: b1, status: 'serving' },
      { service: 'web', address: b2, status: 'serving' },
      { service: 'web', address: b3, status: 'serving' },
    ]);
    const long = startLong(lab, 30);
    try {
      const before = await established(lab, long, 30);
      const onB1 = before.perConnection.filter((c) => c.backend === 'b1');
      expect(onB1.length).toBeGreaterThan(0);
      const gen0 = await generationOf(s);

      const drained = await sluiceCli(['drain', b1, '--socket', s.socket]);
      expect(drained.code, drained.stderr).toBe(0);
      expect(drained.stdout).toContain(`drain ${b1} in web, echo`);
      await waitApplied(s, gen0);

      const fresh = await http(lab, 90);
      expect(fresh.ok).toBe(90);
      expect(countOf(fresh, 'b1')).toBe(0);
      expect(countOf(fresh, 'b2') + countOf(fresh, 'b3')).toBe(90);

      // While they live, b1's connections are b1's active flows in the echo service, and they keep echoing.
      const rows = (JSON.parse((await sluiceCli(['backends', '--socket', s.socket, '--json', '--service', 'echo'])).stdout) as { backends: BackendStatus[] }).backends;
      const echo1 = find(rows, 'echo', b1);
      expect(echo1.status).toBe('draining');
      expect(echo1.overridden).toBe(true);
      expect(echo1.activeFlows).toBeGreaterThanOrEqual(onB1.length);
      const human = await sluiceCli(['backends', '--socket', s.socket]);
      expect(rowOf(human.stdout, 'echo', b1)).toMatch(/draining \(operator\)/);
      expect(rowOf(human.stdout, 'web', b1)).toMatch(/draining \(operator\)/);
      const okAtDrain = new Map(onB1.map((c) => [c.id, c.ok]));
      await waitFor("b1's long-lived connections echo after the drain", STATE_WAIT_MS, async () => {
        const snap = (await long.snapshot()) as LongReport;
        const mine = snap.perConnection.filter((c) => okAtDrain.has(c.id));
        return mine.every((c) => !c.broken && c.ok > (okAtDrain.get(c.id) ?? 0)) ? true : undefined;
      });

      const report = (await long.stop()) as LongReport;
      expect(report.broken, brief(report.perConnection.filter((c) => c.broken))).toBe(0);
      expect(report.stalled, brief(report.perConnection.filter((c) => c.stalled))).toBe(0);
      figures.push(
        `drain: ${onB1.length} long-lived connections on b1 (activeFlows ${echo1.activeFlows}) kept echoing, 0 of 30 broken; new HTTP connections while drained: ${JSON.stringify(fresh.backends)}`,
      );

      const gen1 = await generationOf(s);
      const undrained = await sluiceCli(['undrain', b1, '--socket', s.socket]);
      expect(undrained.code, undrained.stderr).toBe(0);
      await waitApplied(s, gen1);
      expect(find(await backendsOf(s), 'web', b1).status).toBe('serving');
      const back = await http(lab, 90);
      expect(back.ok).toBe(90);
      expect(countOf(back, 'b1')).toBeGreaterThan(0);
    } finally {
      await long.stop().catch(() => undefined);
    }
  });

  it('spares: 2 primaries + 1 spare (minPrimaries 2): a primary fails, the spare takes new flows; the primary returns, the spare stands by again', async () => {
    const config = writeConfig(lab, [{ name: 'web', vip: VIP4, port: 80, protocol: 'tcp' }], (s) => {
      s.healthCheck = { type: 'http', path: '/', ...FAST };
      s.minPrimaries = 2;
      for (const b of s.backends) if (b.address === b3) b.role = 'spare';
    });
    const s = await restart(config);
    await waitStatus(s, [
      { service: 'web', address: b1, status: 'serving' },
      { service: 'web', address: b2, status: 'serving' },
      { service: 'web', address: b3, status: 'spare-standby' },
    ]);
    const normal = await http(lab, 60);
    expect(normal.ok).toBe(60);
    expect(countOf(normal, 'b3')).toBe(0);

    const gen0 = await generationOf(s);
    let gen1 = gen0;
    await lab.stopServer(1);
    try {
      await waitStatus(s, [
        { service: 'web', address: b1, status: 'down' },
        { service: 'web', address: b3, status: 'spare-serving' },
      ]);
      await waitApplied(s, gen0);
      const failover = await http(lab, 90);
      expect(failover.ok).toBe(90);
      expect(countOf(failover, 'b1')).toBe(0);
      expect(countOf(failover, 'b3')).toBeGreaterThan(0);
      expect(countOf(failover, 'b2')).toBeGreaterThan(0);
      const st = await sluiceCli(['status', '--socket', s.socket]);
      expect(rowOf(st.stdout, 'web', b3)).toMatch(/\bspare-serving\b/);
      figures.push(`spares: b1 down -> new HTTP connections ${JSON.stringify(failover.backends)}`);
      gen1 = await generationOf(s);
    } finally {
      await lab.startServer(1);
    }
    await waitStatus(s, [
      { service: 'web', address: b1, status: 'serving' },
      { service: 'web', address: b3, status: 'spare-standby' },
    ]);
    await waitApplied(s, gen1);
    const recovered = await http(lab, 90);
    expect(recovered.ok).toBe(90);
    expect(countOf(recovered, 'b3')).toBe(0);
    expect(countOf(recovered, 'b1')).toBeGreaterThan(0);
    figures.push(`spares: b1 back -> ${JSON.stringify(recovered.backends)} (b3 spare-standby)`);
  });

  it('affinity (source-ip): 50 connections from one client, each from its own source port, all reach one backend', async () => {
    const config = writeConfig(lab, [{ name: 'web', vip: VIP4, port: 80, protocol: 'tcp' }], (s) => {
      s.affinity = { mode: 'source-ip', timeoutS: 300, ipv4Prefix: 32 };
    });
    const s = await restart(config);
    const r = await http(lab, 50);
    expect(r.ok).toBe(50);
    const names = Object.keys(r.backends);
    expect(names, JSON.stringify(r.backends)).toHaveLength(1);
    expect(r.backends[names[0]].count).toBe(50);
    // The flow table agrees: 50 distinct flows (source ports) of the client, one backend.
    const flows = await admin<{ total: number; rows: { clientPort: number; backend: string }[] }>(s, 'GET', '/flows?client=10.99.1.2&limit=1000');
    expect(new Set(flows.rows.map((f) => f.clientPort)).size).toBeGreaterThanOrEqual(50);
    expect(new Set(flows.rows.map((f) => f.backend)).size).toBe(1);
    const { value: entries } = await waitFor('sluice_affinity_entries > 0', STATE_WAIT_MS, async () => {
      const v = metric(await scrape(lab), 'sluice_affinity_entries');
      return v > 0 ? v : undefined;
    });
    expect(entries).toBe(1);
    figures.push(`affinity, one instance: 50 of 50 connections on ${names[0]} (${flows.rows.length} flows of the client in the table)`);
  });

  it('least privilege: Sluice runs as user nobody with CAP_NET_RAW only (as examples/sluice.service) and forwards; with no capability it refuses to start, saying what it needs', async () => {
    if (sluice) await stopSluice(sluice);
    sluice = null;
    const nobody = await userIds('nobody');
    const dir = join(lab.describe().runDir, 'unprivileged');
    mkdirSync(dir, { recursive: true });
    chownSync(dir, nobody.uid, nobody.gid);
    // nobody may not be able to read the checkout (a clone in a 0700 home): it runs a copy of
    // what `sluice run` loads, in the lab's run directory, readable by everyone.
    const cli = readableRuntime(join(lab.describe().runDir, 'runtime'));
    const socket = join(dir, 'admin.sock');
    const config = writeConfig(
      lab,
      [
        { name: 'web', vip: VIP4, port: 80, protocol: 'tcp' },
        { name: 'dns', vip: VIP4, port: 53, protocol: 'udp' },
      ],
      (s) => {
        // ICMP echo checks open a raw socket: the other consumer of CAP_NET_RAW.
        if (s.name === 'web') s.healthCheck = { type: 'icmp', ...FAST };
      },
      { file: 'unprivileged.json', extra: { admin: { socket } } },
    );
    const setpriv = (caps: string): string[] => [
      'setpriv',
      `--reuid=${nobody.uid}`,
      `--regid=${nobody.gid}`,
      '--init-groups',
      `--inh-caps=${caps}`,
      ...(caps === '-all' ? [] : [`--ambient-caps=${caps}`]),
      '--bounding-set=' + (caps === '-all' ? '-all' : `-all,${caps}`),
    ];

    // Without any capability: a clear refusal, exit 2.
    const denied = await lab.exec('lb1', [...setpriv('-all'), process.execPath, cli, 'run', '--config', config], { timeoutMs: 20_000 }).then(
      () => null,
      (e: unknown) => e as { code: unknown; stderr: string },
    );
    expect(denied, 'sluice started without CAP_NET_RAW').not.toBeNull();
    expect(denied?.code).toBe(2);
    expect(denied?.stderr).toMatch(/CAP_NET_RAW/);

    const child = lab.spawn('lb1', [...setpriv('+net_raw'), process.execPath, cli, 'run', '--config', config], { logName: 'sluice-unprivileged.log' });
    try {
      await waitFor('unprivileged Sluice answers on its admin socket', 20_000, async () => {
        if (child.exitCode !== null) throw new Error(`exited ${child.exitCode}; log ${join(lab.describe().runDir, 'sluice-unprivileged.log')}`);
        const r = await adminRequest(socket, 'GET', '/status', 1000);
        return r.status === 200 ? true : undefined;
      });
      // The process really is nobody with exactly CAP_NET_RAW (bit 13) effective, and so is its data-plane child.
      const proc = readFileSync(`/proc/${child.pid}/status`, 'utf8');
      expect(proc).toMatch(new RegExp(`^Uid:\\s+${nobody.uid}\\s`, 'm'));
      expect(proc).toMatch(/^CapEff:\s+0000000000002000$/m);
      const st = (await adminRequest(socket, 'GET', '/status')).body as { dataplane: { pid: number; up: boolean } };
      expect(st.dataplane.up).toBe(true);
      expect(readFileSync(`/proc/${st.dataplane.pid}/status`, 'utf8')).toMatch(/^CapEff:\s+0000000000002000$/m);

      const r = await http(lab, 60);
      expect(r.ok).toBe(60);
      expect(Object.keys(r.backends).sort()).toEqual(['b1', 'b2', 'b3']);
      const u = (await lab.runLoad(['--mode', 'udp', '--target', `${VIP4}:53`, '--flows', '30', '--per-flow', '3', '--duration', '60'])) as UdpReport;
      expect(u.flowsComplete).toBe(30);
      const { value: rows } = await waitFor('ICMP checks up (raw socket as nobody)', STATE_WAIT_MS, async () => {
        const b = ((await adminRequest(socket, 'GET', '/backends')).body as { backends: BackendStatus[] }).backends.filter((x) => x.service === 'web');
        return b.every((x) => x.health?.state === 'up') ? b : undefined;
      });
      expect(rows).toHaveLength(3);
      figures.push(`least privilege: uid ${nobody.uid}, CapEff 0x2000 (CAP_NET_RAW) in both processes: 60/60 HTTP, 30/30 UDP flows, ICMP checks up`);
    } finally {
      await lab.processes.stop(child);
    }
  });
});

describe.skipIf(!enabled)('affinity across 2 instances behind the router\'s ECMP route (stick, 2 balancers)', () => {
  let lab: Lab;
  const instances: RunningSluice[] = [];
  const services: ConfigService[] = [{ name: 'web', vip: VIP4, port: 80, protocol: 'tcp' }];
  const withAffinity = (s: ServiceJson): void => {
    s.affinity = { mode: 'source-ip', timeoutS: 300, ipv4Prefix: 32 };
  };

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick', balancers: 2, ipv6: false });
    for (const k of [1, 2]) instances.push(await startSluice(lab, writeConfig(lab, services, withAffinity, { balancer: k }), k));
  });
  afterAll(async () => {
    for (const s of instances) await stopSluice(s);
    await lab?.destroy();
  });

  const flowsByInstance = async (): Promise<{ total: number[]; byBackend: Map<string, number> }> => {
    const total: number[] = [];
    const byBackend = new Map<string, number>();
    for (const k of [1, 2]) {
      const m = await scrape(lab, k);
      total.push(metric(m, 'sluice_service_flows_created_total', { service: 'web' }));
      for (const b of lab.backends()) byBackend.set(b.name, (byBackend.get(b.name) ?? 0) + metric(m, 'sluice_backend_flows_created_total', { service: 'web', backend: b.ipv4 }));
    }
    return { total, byBackend };
  };

  it('50 connections of one client: ECMP spreads them over both instances, yet all reach one backend', async () => {
    const r = await http(lab, 50);
    expect(r.ok).toBe(50);
    const names = Object.keys(r.backends);
    expect(names, JSON.stringify(r.backends)).toHaveLength(1);
    const seen = await flowsByInstance();
    expect(seen.total[0], 'flows created on lb1').toBeGreaterThan(0);
    expect(seen.total[1], 'flows created on lb2').toBeGreaterThan(0);
    // Both instances sent every flow they created to that one backend.
    const chosen = names[0];
    for (const [name, n] of seen.byBackend) if (name !== chosen) expect(n, `flows to ${name}`).toBe(0);
    expect(seen.byBackend.get(chosen)).toBe(seen.total[0] + seen.total[1]);
    console.log(`lifecycle e2e figures:\n  affinity, 2 instances: 50 of 50 connections on ${chosen}; flows created lb1 ${seen.total[0]}, lb2 ${seen.total[1]}`);
  });

  // The affinity hash must not depend on instance-local service ids (they follow the file's
  // order and each instance's reload history): lb2 lists the same service fifth.
  let reorderedRun: HttpReport | null = null;
  it('lb2 restarted with the same web service listed fifth: every connection still succeeds', async () => {
    const reordered: ConfigService[] = [81, 82, 83, 84].map((port) => ({ name: `p${port}`, vip: VIP4, port, protocol: 'tcp' as const }));
    reordered.push(...services);
    const old = instances.pop();
    if (old) await stopSluice(old);
    const config = writeConfig(
      lab,
      reordered,
      (s) => {
        if (s.name === 'web') withAffinity(s);
      },
      { balancer: 2 },
    );
    instances.push(await startSluice(lab, config, 2));
    reorderedRun = await http(lab, 50);
    expect(reorderedRun.ok).toBe(50);
    console.log(`lifecycle e2e figures:\n  affinity, 2 instances, web listed first on lb1 and fifth on lb2: ${JSON.stringify(reorderedRun.backends)}`);
  });

  it('with the service listed in another order on lb2, one client still reaches one backend', () => {
    if (!reorderedRun) throw new Error('the previous test did not run');
    expect(Object.keys(reorderedRun.backends), JSON.stringify(reorderedRun.backends)).toHaveLength(1);
  });
});

/**
 * A copy of what `sluice run` loads (package.json, dist/src and dist/schema, the build record,
 * the native addons and the runtime dependencies listed in package-lock.json), readable by every
 * user whatever the checkout's permissions or the umask; returns the copy's CLI path.
 */
function readableRuntime(dest: string): string {
  const copy = (rel: string): void => cpSync(join(REPO, rel), join(dest, rel), { recursive: true });
  // Every addon the build made (the capture addon, the ring addon, ...), not a list that can go stale.
  const release = join('src', 'dataplane', 'native', 'build', 'Release');
  const addons = readdirSync(join(REPO, release)).filter((f) => f.endsWith('.node')).map((f) => join(release, f));
  for (const rel of ['package.json', join('dist', 'src'), join('dist', 'schema'), join('dist', 'build-info.json'), ...addons]) copy(rel);
  const lock = JSON.parse(readFileSync(join(REPO, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean; optional?: boolean }> };
  const runtime = Object.entries(lock.packages)
    .filter(([path, p]) => path.startsWith('node_modules/') && !p.dev)
    .map(([path]) => path)
    .sort();
  // A nested package comes along with its parent's folder.
  const roots = runtime.filter((path) => !runtime.some((other) => other !== path && path.startsWith(other + '/')));
  for (const path of roots) copy(path);
  const open = (p: string): void => {
    for (const e of readdirSync(p, { withFileTypes: true })) {
      const full = join(p, e.name);
      if (e.isDirectory()) open(full);
      else if (e.isFile()) chmodSync(full, 0o644);
    }
    chmodSync(p, 0o755);
  };
  open(dest);
  return join(dest, 'dist', 'src', 'cli.js');
}

/** uid and primary gid of a local user (nobody is 65534 on Debian, but ask). */
async function userIds(name: string): Promise<{ uid: number; gid: number }> {
  const run = (flag: string): Promise<number> =>
    new Promise((resolve, reject) => execFile('id', [flag, name], { encoding: 'utf8' }, (err, out) => (err ? reject(err) : resolve(Number(out.trim())))));
  return { uid: await run('-u'), gid: await run('-g') };
}
