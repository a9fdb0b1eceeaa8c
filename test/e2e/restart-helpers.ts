/**
 * What the restart e2e suites share (restart.test.ts with one packet worker,
 * restart-workers.test.ts with two): a lab of 6 backends and two client paths running the MPTCP
 * peer servers, `sluice run` / `sluice restart` / SIGKILL of the control process as an operator
 * does them, a rebuilt copy of Sluice (another build identity: what an upgrade looks like to the
 * handover), long-lived echo connections and held MPTCP connections, and what /explain and
 * /flows say about the flows. Every wait is bounded.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { ChildProcess } from 'node:child_process';
import { expect } from 'vitest';
import { Lab, VIP4, type ConfigService, type LoadRun } from '../../scripts/lab/topology.js';
import type { HttpReport, LongReport } from '../../scripts/lib/reports.js';
import type { ExplainReport, FlowReportRow, FlowsReport, StatusReport } from '../../src/observe/admin-api.js';
import { adminRequest } from '../../src/observe/admin-client.js';
import { REPO, ensureBuilt, sleep } from './sluice-harness.js';
import { PATH1, PATH2, PEER, PORT as MPTCP_PORT, startPeerServers, type SubflowAddrs } from './mptcp-helpers.js';

export { MPTCP_PORT };

export interface Control {
  child: ChildProcess;
  cli: string;
  env: NodeJS.ProcessEnv;
  log: string;
}

export interface HeldMptcpConn {
  index: number;
  error: string | null;
  localPort?: number;
  subflows?: number;
  subflowsAfterHold?: number;
  subflowAddrs?: SubflowAddrs[] | null;
}
export interface HeldMptcpReport {
  connections: number;
  perConnection: HeldMptcpConn[];
}

/** MPTCP connections held open by scripts/mptcp-peer.py until release(). */
export interface HeldMptcp {
  /** Resolves once every connection has its subflows and is held. */
  ready(): Promise<void>;
  /** Let them finish; their report (both subflows before and after the hold). */
  release(): Promise<HeldMptcpReport>;
}

/** The lab, the config, the control process and the figures a restart suite prints. */
export class RestartRig {
  readonly lab: Lab;
  readonly dir: string;
  readonly socket: string;
  /** The checkout's CLI, and a rebuilt copy of it (another build identity). */
  readonly cli1 = join(REPO, 'dist', 'src', 'cli.js');
  readonly cli2: string;
  readonly figures: string[] = [];
  /** The `dataplane` section of every config written (absent: the default, one worker). */
  readonly #dataplane: Record<string, unknown> | undefined;
  config = '';
  control: Control | null = null;

  private constructor(lab: Lab, cli2: string, dataplane: Record<string, unknown> | undefined) {
    this.lab = lab;
    this.dir = lab.describe().runDir;
    this.socket = lab.adminSocket(1);
    this.cli2 = cli2;
    this.#dataplane = dataplane;
  }

  /**
   * Topology "stick" with 6 backends (echo, HTTP and MPTCP peer servers on each), a client with
   * two paths; lab run ids "rw" and two random characters (restart suites' namespaces are told apart).
   */
  static async create(dataplane?: Record<string, unknown>): Promise<RestartRig> {
    ensureBuilt();
    if (!existsSync('/proc/sys/net/mptcp/enabled')) throw new Error('this kernel has no MPTCP (/proc/sys/net/mptcp missing)');
    const runId = `rw${randomBytes(2).reduce((id, b) => id + (b % 36).toString(36), '')}`;
    const lab = await Lab.create({ backends: 6, mode: 'stick', clientPaths: 2, ipv6: false, runId });
    const dir = lab.describe().runDir;
    await startPeerServers(lab, dir);
    return new RestartRig(lab, rebuiltCopy(dir), dataplane);
  }

  /** echo :7, web :80 and the MPTCP service on the first `n` backends, written as the config file. */
  writeConfig(n: number): string {
    const backends = this.lab
      .backends()
      .slice(0, n)
      .map((b) => ({ address: b.ipv4 }));
    const services: ConfigService[] = [
      { name: 'echo', vip: VIP4, port: 7, protocol: 'tcp', backends },
      { name: 'web', vip: VIP4, port: 80, protocol: 'tcp', backends },
      { name: 'mp', vip: VIP4, port: MPTCP_PORT, protocol: 'tcp', mptcp: true, mptcpUnknownJoin: 'drop', backends },
    ];
    this.config = this.lab.configFor(services, { file: 'restart.json', extra: this.#dataplane ? { dataplane: this.#dataplane } : undefined });
    return this.config;
  }

  async status(): Promise<StatusReport> {
    const r = await adminRequest(this.socket, 'GET', '/status', 5000);
    if (r.status !== 200) throw new Error(`/status: ${r.status}`);
    return r.body as StatusReport;
  }

  /** `sluice run` from `cli` in lb1's namespace; resolves once its admin API answers and its data plane runs the generation. */
  async startControl(cli: string, env: NodeJS.ProcessEnv): Promise<Control> {
    const logName = `sluice-${Date.now()}.log`;
    const log = join(this.dir, logName);
    const child = this.lab.spawn('lb1', [process.execPath, cli, 'run', '--config', this.config], { logName, env: { ...process.env, ...env } });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`sluice exited with ${child.exitCode} during start; log ${log}:\n${readFileSync(log, 'utf8')}`);
      try {
        // The admin API answers before the data plane is adopted or started: wait for that too.
        const r = await adminRequest(this.socket, 'GET', '/status', 1000);
        const st = r.body as StatusReport;
        if (r.status === 200 && st.dataplane.up && st.dataplane.generation === st.generation) return { child, cli, env, log };
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`sluice did not answer within 30 s; log ${log}`);
      await sleep(100);
    }
  }

  exited(c: Control, timeoutMs: number): Promise<boolean> {
    return c.child.exitCode !== null || c.child.signalCode !== null
      ? Promise.resolve(true)
      : new Promise((resolve) => {
          const t = setTimeout(() => resolve(false), timeoutMs);
          c.child.once('exit', () => {
            clearTimeout(t);
            resolve(true);
          });
        });
  }

  async stopControl(c: Control): Promise<void> {
    c.child.kill('SIGTERM');
    if (!(await this.exited(c, 10_000))) c.child.kill('SIGKILL');
  }

  /** `sluice restart` as an operator runs it, then the next `sluice run` from `nextCli`; the figure names the gap. */
  async restartControl(c: Control | null, nextCli: string): Promise<Control> {
    if (!c) throw new Error('no control process to restart');
    const t0 = Date.now();
    await this.lab.exec('lb1', [process.execPath, c.cli, 'restart', '--socket', this.socket], { timeoutMs: 30_000, env: { ...process.env, ...c.env } });
    expect(await this.exited(c, 10_000), 'the old control process exits after `sluice restart`').toBe(true);
    const next = await this.startControl(nextCli, c.env);
    // A replacement logs how long no data plane captured (TCP retransmits across it).
    const gap = /"event":"dataplane_replaced".*?"gapMs":(\d+)/.exec(readFileSync(next.log, 'utf8'));
    this.figures.push(`  restart to ${nextCli === this.cli1 ? 'the same build' : 'a rebuilt copy'}: control back in ${Date.now() - t0} ms${gap ? `; ${gap[1]} ms without capture during the data-plane replacement` : ''}`);
    return next;
  }

  /**
   * SIGKILL the control process while new connections keep coming (bounded: 400 requests,
   * 40/s), check that data plane `dp` outlives it, start the next control process; resolves
   * with the stream of new connections still running.
   */
  async killControlAndStartNext(dp: number): Promise<Promise<HttpReport>> {
    const stream = this.lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '400', '--rate', '40', '--concurrency', '4', '--duration', '30']) as Promise<HttpReport>;
    await sleep(1500);
    const killed = this.control;
    if (!killed) throw new Error('no control process to kill');
    killed.child.kill('SIGKILL');
    expect(await this.exited(killed, 5000)).toBe(true);
    this.control = null;
    await sleep(3000);
    expect(processAlive(dp), 'the data plane outlives its control process').toBe(true);
    this.control = await this.startControl(this.cli1, {});
    return stream;
  }

  /**
   * The start of a restart scenario: 3 backends, a control process (with `env`), `long`
   * long-lived connections and `mptcp` held MPTCP connections established, then a reload to 6
   * backends, which moves the table picks of about half the flows away from their backends.
   */
  async loadThenReload(o: { env: NodeJS.ProcessEnv; tag: string; long: number; mptcp: number; seed: number }): Promise<{ long: LoadRun; mptcp: HeldMptcp; moved: number; tracked: number }> {
    this.writeConfig(3);
    this.control = await this.startControl(this.cli1, o.env);
    const long = this.startLong(o.long, o.long > 100 ? 150 : 120);
    const mptcp = this.startHeldMptcp(o.tag, o.mptcp, o.seed, 150);
    await this.longEstablished(long, o.long);
    await mptcp.ready();
    await this.reloadTo(6);
    const { moved, tracked } = await this.movedFlows();
    return { long, mptcp, moved, tracked };
  }

  /** A stall over 2.5 s counts: forwarding stopped (TCP retransmits across anything shorter). */
  startLong(n: number, durationS: number): LoadRun {
    return this.lab.startLoad(['--mode', 'long', '--target', `${VIP4}:7`, '--connections', String(n), '--interval', '200', '--stall-ms', '2500', '--duration', String(durationS)]);
  }

  async longEstablished(load: LoadRun, n: number): Promise<void> {
    await waitFor(`${n} echo connections open on the backends`, 20_000, async () => {
      let open = 0;
      for (const st of Object.values(await this.lab.allBackendStats())) open += st.tcp.byPort['7']?.open ?? 0;
      return open >= n ? true : undefined;
    });
    await waitFor(`${n} long-lived connections established`, 20_000, async () => ((await load.snapshot()) as LongReport).established === n || undefined);
  }

  /** `n` MPTCP connections from the client (2 subflows each), held open until release(). */
  startHeldMptcp(tag: string, n: number, seed: number, timeoutS: number): HeldMptcp {
    const hold = join(this.dir, `mptcp-hold-${tag}`);
    const readyFile = join(this.dir, `mptcp-ready-${tag}`);
    const reportFile = join(this.dir, `mptcp-${tag}.json`);
    rmSync(hold, { force: true });
    const child = this.lab.spawn(
      'client',
      ['python3', PEER, 'client', '--target', `${VIP4}:${MPTCP_PORT}`, '--connections', String(n), '--bytes', '65536', '--concurrency', String(n), '--seed', String(seed), '--hold-ms', '3000', '--timeout', String(timeoutS), '--report', reportFile, '--hold-until', hold, '--ready', readyFile],
      { logName: `mptcp-client-${tag}.log` },
    );
    const done = new Promise<void>((r) => child.once('exit', () => r()));
    return {
      ready: () => waitFor(`${n} MPTCP connections held with their subflows`, 60_000, async () => (existsSync(readyFile) ? true : undefined)).then(() => undefined),
      release: async () => {
        writeFileSync(hold, '1\n');
        await Promise.race([done, sleep(60_000)]);
        return JSON.parse(readFileSync(reportFile, 'utf8')) as HeldMptcpReport;
      },
    };
  }

  /** Write a config with `n` backends, POST /reload, wait until the data plane runs the new generation. */
  async reloadTo(n: number): Promise<void> {
    const gen = (await this.status()).generation;
    this.writeConfig(n);
    const rl = await adminRequest(this.socket, 'POST', '/reload', 20_000);
    expect(rl.status, JSON.stringify(rl.body)).toBe(200);
    await waitFor(`the ${n}-backend generation applied`, 10_000, async () => {
      const s = await this.status();
      return s.generation > gen && s.dataplane.generation === s.generation ? true : undefined;
    });
  }

  /** Echo flows and both MPTCP subflows (the client's two paths) whose table pick is not their backend. */
  async movedFlows(): Promise<{ moved: number; tracked: number }> {
    const counts = [await this.movedOf(PATH1, 7), await this.movedOf(PATH1, MPTCP_PORT), await this.movedOf(PATH2, MPTCP_PORT)];
    return { moved: counts.reduce((a, c) => a + c.moved, 0), tracked: counts.reduce((a, c) => a + c.tracked, 0) };
  }

  /** Flows of port `port` from `client` whose tracked backend is not the current table's pick. */
  async movedOf(client: string, port: number): Promise<{ moved: number; tracked: number }> {
    const r = await adminRequest(this.socket, 'GET', `/explain?protocol=tcp&client=${client}&vip=${VIP4}&port=${port}`, 10_000);
    if (r.status !== 200) throw new Error(`/explain: ${r.status} ${JSON.stringify(r.body)}`);
    const flows = (r.body as ExplainReport).flows.filter((f) => f.tracked !== null);
    return { moved: flows.filter((f) => f.tracked?.backendId !== f.tableBackendId).length, tracked: flows.length };
  }

  /** The flows to the VIP's `port` by "client:clientPort" (a flow listed twice, by two workers, keeps the last row). */
  async flowsOnPort(port: number): Promise<Map<string, FlowReportRow>> {
    const rows = await this.flowRows(port);
    return new Map(rows.map((row) => [`${row.client}:${row.clientPort}`, row]));
  }

  /** Every flow-table row to the VIP's `port`, from every worker. */
  async flowRows(port: number): Promise<FlowReportRow[]> {
    const r = await adminRequest(this.socket, 'GET', `/flows?vip=${VIP4}&limit=10000`, 10_000);
    if (r.status !== 200) throw new Error(`/flows: ${r.status} ${JSON.stringify(r.body)}`);
    return (r.body as FlowsReport).rows.filter((row) => row.port === port);
  }

  /** Stop the control process left running, print the figures, keep the logs if asked, tear the lab down. */
  async destroy(title: string): Promise<void> {
    if (this.control) await this.stopControl(this.control);
    this.control = null;
    if (this.figures.length > 0) console.log(`${title}:\n${this.figures.join('\n')}`);
    // SLUICE_E2E_KEEP_LOGS=<dir>: keep the run's logs (Sluice, load, MPTCP peers) for a post-mortem.
    const keep = process.env.SLUICE_E2E_KEEP_LOGS;
    if (keep) cpSync(this.dir, keep, { recursive: true, filter: (f) => f === this.dir || /\.(log|json|jsonl)$/.test(f) });
    await this.lab.destroy();
  }
}

export async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown = null;
  while (Date.now() < deadline) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`${what}: not within ${timeoutMs} ms${last ? ` (${String(last)})` : ''}`);
}

export const processAlive = (pid: number): boolean => existsSync(`/proc/${pid}`);

/** A rebuilt Sluice in `dir`/app2: the same code under another build identity (what an upgrade looks like to the handover). Its CLI. */
function rebuiltCopy(dir: string): string {
  const app = join(dir, 'app2');
  mkdirSync(join(app, 'src', 'dataplane', 'native', 'build'), { recursive: true });
  cpSync(join(REPO, 'dist'), join(app, 'dist'), { recursive: true });
  cpSync(join(REPO, 'schema'), join(app, 'schema'), { recursive: true });
  cpSync(join(REPO, 'package.json'), join(app, 'package.json'));
  cpSync(join(REPO, 'src', 'dataplane', 'native', 'build', 'Release'), join(app, 'src', 'dataplane', 'native', 'build', 'Release'), { recursive: true });
  symlinkSync(join(REPO, 'node_modules'), join(app, 'node_modules'));
  const infoFile = join(app, 'dist', 'build-info.json');
  const info = JSON.parse(readFileSync(infoFile, 'utf8')) as { builtAt: string };
  writeFileSync(infoFile, JSON.stringify({ ...info, builtAt: `${new Date().toISOString()} (rebuilt for the restart e2e)` }));
  return join(app, 'dist', 'src', 'cli.js');
}
