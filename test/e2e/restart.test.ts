/**
 * e2e (needs root): the data plane outlives its control process, and restarts and upgrades keep
 * every connection (issue 10, items 2 and 3).
 *
 * Lab: topology "stick" (scripts/lab/topology.ts) with 6 backends and a client with two paths
 * (10.99.1.2, and 10.99.9.2 as an MPTCP `subflow` endpoint); the backends run the lab's echo and
 * HTTP servers and scripts/mptcp-peer.py on :8080. Client, router and backends keep the kernel's
 * defaults (offloads included); nothing on Sluice's interface is changed.
 *
 *  a. Control process killed: SIGKILL of `sluice run` under 100 long-lived echo connections and a
 *     stream of new HTTP connections. The data plane forwards on (0 broken, every new connection
 *     answered); a new `sluice run` adopts the same data-plane pid, and /flows shows the same
 *     flows on the same backends.
 *  b. Hitless restart: 200 long-lived echo connections and 20 MPTCP connections (2 subflows each,
 *     held open), on 3 backends; a reload to 6 backends moves the table pick of about half of the
 *     flows away from their backends (counted with /explain). Then `sluice restart` + `sluice run`
 *     (same build: the data plane is adopted), and again with a rebuilt copy of Sluice (another
 *     build identity: the new data plane takes over the flow table). Result: 0 broken, every
 *     MPTCP connection still has both subflows. The same run with SLUICE_HANDOVER=off (the
 *     control process stops its data plane, the next one starts with an empty table) shows the
 *     breakage; both counts are printed.
 * Every wait is bounded; the lab is torn down in afterAll, also on failure.
 */
import { cpSync, existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, type ConfigService, type LoadRun } from '../../scripts/lab/topology.js';
import type { HttpReport, LongReport } from '../../scripts/lib/reports.js';
import type { ExplainReport, FlowsReport, StatusReport } from '../../src/observe/admin-api.js';
import { adminRequest } from '../../src/observe/admin-client.js';
import { REPO, e2eEnabled, ensureBuilt, sleep } from './sluice-harness.js';

const enabled = e2eEnabled('e2e restart: the data plane outlives its control process; hitless restart and upgrade');

const PEER = join(REPO, 'scripts', 'mptcp-peer.py');
const MPTCP_PORT = 8080;
const PATH1 = '10.99.1.2';
const PATH2 = '10.99.9.2';

interface Control {
  child: ChildProcess;
  cli: string;
  env: NodeJS.ProcessEnv;
  log: string;
}

interface MptcpConn {
  index: number;
  error: string | null;
  subflows?: number;
  subflowsAfterHold?: number;
}
interface MptcpReport {
  connections: number;
  perConnection: MptcpConn[];
}

interface ScenarioResult {
  longBroken: number;
  longEstablished: number;
  moved: number;
  tracked: number;
  mptcpKept: number;
  mptcpConnections: number;
  origins: string[];
  brokenReasons: Record<string, number>;
}

describe.skipIf(!enabled)('restart: adoption after SIGKILL, hitless restart and upgrade (6 backends, 2 client paths)', () => {
  let lab: Lab;
  let dir: string;
  let socket: string;
  let config: string;
  /** The checkout's CLI, and a rebuilt copy of it (another build identity). */
  const cli1 = join(REPO, 'dist', 'src', 'cli.js');
  let cli2 = '';
  let control: Control | null = null;
  const figures: string[] = [];

  const services = (n: number): ConfigService[] => {
    const backends = lab
      .backends()
      .slice(0, n)
      .map((b) => ({ address: b.ipv4 }));
    return [
      { name: 'echo', vip: VIP4, port: 7, protocol: 'tcp', backends },
      { name: 'web', vip: VIP4, port: 80, protocol: 'tcp', backends },
      { name: 'mp', vip: VIP4, port: MPTCP_PORT, protocol: 'tcp', mptcp: true, mptcpUnknownJoin: 'drop', backends },
    ];
  };
  const writeConfig = (n: number): string => lab.configFor(services(n), { file: 'restart.json' });

  const status = async (): Promise<StatusReport> => {
    const r = await adminRequest(socket, 'GET', '/status', 5000);
    if (r.status !== 200) throw new Error(`/status: ${r.status}`);
    return r.body as StatusReport;
  };

  /** `sluice run` from `cli` in lb1's namespace; resolves once its admin API answers. */
  const startControl = async (cli: string, env: NodeJS.ProcessEnv): Promise<Control> => {
    const logName = `sluice-${Date.now()}.log`;
    const child = lab.spawn('lb1', [process.execPath, cli, 'run', '--config', config], { logName, env: { ...process.env, ...env } });
    const deadline = Date.now() + 30_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`sluice exited with ${child.exitCode} during start; log ${join(dir, logName)}:\n${readFileSync(join(dir, logName), 'utf8')}`);
      try {
        // The admin API answers before the data plane is adopted or started: wait for that too.
        const r = await adminRequest(socket, 'GET', '/status', 1000);
        const st = r.body as StatusReport;
        if (r.status === 200 && st.dataplane.up && st.dataplane.generation === st.generation) return { child, cli, env, log: join(dir, logName) };
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`sluice did not answer within 30 s; log ${join(dir, logName)}`);
      await sleep(100);
    }
  };

  const exited = (c: Control, timeoutMs: number): Promise<boolean> =>
    c.child.exitCode !== null || c.child.signalCode !== null
      ? Promise.resolve(true)
      : new Promise((resolve) => {
          const t = setTimeout(() => resolve(false), timeoutMs);
          c.child.once('exit', () => {
            clearTimeout(t);
            resolve(true);
          });
        });

  const stopControl = async (c: Control): Promise<void> => {
    c.child.kill('SIGTERM');
    if (!(await exited(c, 10_000))) c.child.kill('SIGKILL');
  };

  /** `sluice restart` as an operator runs it, then the next `sluice run` from `nextCli`. */
  const restartControl = async (c: Control, nextCli: string): Promise<Control> => {
    const t0 = Date.now();
    await lab.exec('lb1', [process.execPath, c.cli, 'restart', '--socket', socket], { timeoutMs: 30_000, env: { ...process.env, ...c.env } });
    expect(await exited(c, 10_000), 'the old control process exits after `sluice restart`').toBe(true);
    const next = await startControl(nextCli, c.env);
    // A replacement logs how long no data plane captured (TCP retransmits across it).
    const gap = /"event":"dataplane_replaced".*?"gapMs":(\d+)/.exec(readFileSync(next.log, 'utf8'));
    figures.push(`  restart to ${nextCli === cli1 ? 'the same build' : 'a rebuilt copy'}: control back in ${Date.now() - t0} ms${gap ? `; ${gap[1]} ms without capture during the data-plane replacement` : ''}`);
    return next;
  };

  const waitFor = async <T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> => {
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
  };

  /** A stall over 2.5 s counts: forwarding stopped (TCP retransmits across anything shorter). */
  const startLong = (n: number, durationS: number): LoadRun =>
    lab.startLoad(['--mode', 'long', '--target', `${VIP4}:7`, '--connections', String(n), '--interval', '200', '--stall-ms', '2500', '--duration', String(durationS)]);

  const longEstablished = async (load: LoadRun, n: number): Promise<void> => {
    await waitFor(`${n} echo connections open on the backends`, 20_000, async () => {
      let open = 0;
      for (const st of Object.values(await lab.allBackendStats())) open += st.tcp.byPort['7']?.open ?? 0;
      return open >= n ? true : undefined;
    });
    await waitFor(`${n} long-lived connections established`, 20_000, async () => ((await load.snapshot()) as LongReport).established === n || undefined);
  };

  /** Flows of port `port` from `client` whose tracked backend is not the current table's pick. */
  const movedOf = async (client: string, port: number): Promise<{ moved: number; tracked: number }> => {
    const r = await adminRequest(socket, 'GET', `/explain?protocol=tcp&client=${client}&vip=${VIP4}&port=${port}`, 10_000);
    if (r.status !== 200) throw new Error(`/explain: ${r.status} ${JSON.stringify(r.body)}`);
    const flows = (r.body as ExplainReport).flows.filter((f) => f.tracked !== null);
    return { moved: flows.filter((f) => f.tracked?.backendId !== f.tableBackendId).length, tracked: flows.length };
  };

  const flowsOnPort = async (port: number): Promise<Map<string, string>> => {
    const r = await adminRequest(socket, 'GET', `/flows?vip=${VIP4}&limit=10000`, 10_000);
    const out = new Map<string, string>();
    for (const row of (r.body as FlowsReport).rows) if (row.port === port) out.set(`${row.client}:${row.clientPort}`, row.backend);
    return out;
  };

  const processAlive = (pid: number): boolean => existsSync(`/proc/${pid}`);

  beforeAll(async () => {
    ensureBuilt();
    if (!existsSync('/proc/sys/net/mptcp/enabled')) throw new Error('this kernel has no MPTCP (/proc/sys/net/mptcp missing)');
    lab = await Lab.create({ backends: 6, mode: 'stick', clientPaths: 2, ipv6: false });
    dir = lab.describe().runDir;
    socket = lab.adminSocket(1);
    await Promise.all(
      lab.backends().map(async (b) => {
        const log = `mptcp-${b.name}.log`;
        lab.spawn(b.name, ['python3', '-u', PEER, 'server', '--port', String(MPTCP_PORT), '--name', b.name, '--report', join(dir, `server-${b.name}.jsonl`)], { logName: log });
        await waitFor(`mptcp-peer server in ${b.name}`, 5000, async () => (existsSync(join(dir, log)) && readFileSync(join(dir, log), 'utf8').includes('listening') ? true : undefined));
      }),
    );
    // A rebuilt Sluice: the same code under another build identity (what an upgrade looks like to the handover).
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
    cli2 = join(app, 'dist', 'src', 'cli.js');
  }, 120_000);

  afterAll(async () => {
    if (control) await stopControl(control);
    if (figures.length > 0) console.log(`restart e2e:\n${figures.join('\n')}`);
    // SLUICE_E2E_KEEP_LOGS=<dir>: keep the run's logs (Sluice, load, MPTCP peers) for a post-mortem.
    const keep = process.env.SLUICE_E2E_KEEP_LOGS;
    if (keep && dir) cpSync(dir, keep, { recursive: true, filter: (f) => f === dir || /\.(log|json|jsonl)$/.test(f) });
    await lab?.destroy();
  });

  it('a: SIGKILL of the control process under 100 long-lived connections and a stream of new ones: 0 broken, the next control process adopts the same data plane and flows', async () => {
    config = writeConfig(3);
    control = await startControl(cli1, {});
    const long = startLong(100, 60);
    await longEstablished(long, 100);
    const before = await flowsOnPort(7);
    const dp = (await status()).dataplane.pid as number;
    expect(before.size).toBe(100);

    // New connections all through the kill and the restart (bounded: 400 requests, 40/s).
    const stream = lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '400', '--rate', '40', '--concurrency', '4', '--duration', '30']) as Promise<HttpReport>;
    await sleep(1500);
    const killed = control;
    killed.child.kill('SIGKILL');
    expect(await exited(killed, 5000)).toBe(true);
    control = null;
    await sleep(3000);
    expect(processAlive(dp), 'the data plane outlives its control process').toBe(true);

    control = await startControl(cli1, {});
    const st = await status();
    expect(st.dataplane.pid).toBe(dp);
    expect(st.dataplane.origin).toBe('adopted');
    const after = await flowsOnPort(7);
    const same = [...before].filter(([k, b]) => after.get(k) === b).length;
    const http = await stream;
    await sleep(2000);
    const rep = (await long.stop()) as LongReport;
    figures.push(
      `a. SIGKILL of the control process: ${rep.broken} of ${rep.established} long-lived connections broken; new connections meanwhile ${http.ok} ok, ${http.failed} failed of ${http.requests}; data plane pid ${dp} adopted (origin ${st.dataplane.origin}, ${st.dataplane.keptFlows} flows); ${same} of ${before.size} echo flows listed with the same backend after adoption`,
    );
    expect(rep.established).toBe(100);
    expect(rep.broken).toBe(0);
    expect(http.failed).toBe(0);
    expect(http.ok).toBe(http.requests);
    expect(same).toBe(before.size);

    // A clean stop still stops the data plane, and removes the table file.
    await stopControl(control);
    control = null;
    await waitFor('the data plane to exit after a clean stop', 10_000, async () => (processAlive(dp) ? undefined : true));
    expect(existsSync(`${socket}.flows`)).toBe(false);
  }, 240_000);

  it('a, with the handover off (SLUICE_HANDOVER=off): the same SIGKILL stops forwarding until a new control process starts a new data plane (the comparison)', async () => {
    const env = { SLUICE_HANDOVER: 'off' };
    config = writeConfig(3);
    control = await startControl(cli1, env);
    const long = startLong(100, 60);
    await longEstablished(long, 100);
    const dp = (await status()).dataplane.pid as number;
    const stream = lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '400', '--rate', '40', '--concurrency', '4', '--duration', '30']) as Promise<HttpReport>;
    await sleep(1500);
    const killed = control;
    killed.child.kill('SIGKILL');
    expect(await exited(killed, 5000)).toBe(true);
    control = null;
    await sleep(3000);
    const alive = processAlive(dp);
    control = await startControl(cli1, env);
    const st = await status();
    const http = await stream;
    await sleep(2000);
    const rep = (await long.stop()) as LongReport;
    figures.push(
      `a, handover off: after SIGKILL of the control process the data plane ${alive ? 'lived on' : 'exited'}; the next one was ${st.dataplane.origin} (pid ${st.dataplane.pid}); long-lived: ${rep.broken} broken, ${rep.stalled} of ${rep.established} stalled over ${rep.stallThresholdMs} ms; new connections meanwhile ${http.ok} ok, ${http.failed} failed of ${http.requests}`,
    );
    expect(alive).toBe(false);
    expect(st.dataplane.origin).toBe('started');
    expect(rep.stalled).toBeGreaterThan(0);
    await stopControl(control);
    control = null;
  }, 240_000);

  /** One run of scenario b; `handover` false runs every control process with SLUICE_HANDOVER=off. */
  const scenario = async (handover: boolean): Promise<ScenarioResult> => {
    const env: NodeJS.ProcessEnv = handover ? {} : { SLUICE_HANDOVER: 'off' };
    const tag = handover ? 'on' : 'off';
    config = writeConfig(3);
    control = await startControl(cli1, env);
    const long = startLong(200, 150);
    const hold = join(dir, `mptcp-hold-${tag}`);
    const ready = join(dir, `mptcp-ready-${tag}`);
    const reportFile = join(dir, `mptcp-${tag}.json`);
    rmSync(hold, { force: true });
    const mptcp = lab.spawn(
      'client',
      ['python3', PEER, 'client', '--target', `${VIP4}:${MPTCP_PORT}`, '--connections', '20', '--bytes', '65536', '--concurrency', '20', '--seed', handover ? '1000' : '2000', '--hold-ms', '3000', '--timeout', '150', '--report', reportFile, '--hold-until', hold, '--ready', ready],
      { logName: `mptcp-client-${tag}.log` },
    );
    const mptcpDone = new Promise<void>((r) => mptcp.once('exit', () => r()));
    await longEstablished(long, 200);
    await waitFor('20 MPTCP connections held with their subflows', 60_000, async () => (existsSync(ready) ? true : undefined));

    // 3 -> 6 backends: the table picks of about half the flows move away from their backends.
    const gen = (await status()).generation;
    writeConfig(6);
    const rl = await adminRequest(socket, 'POST', '/reload', 20_000);
    expect(rl.status, JSON.stringify(rl.body)).toBe(200);
    await waitFor('the 6-backend generation applied', 10_000, async () => {
      const s = await status();
      return s.generation > gen && s.dataplane.generation === s.generation ? true : undefined;
    });
    const counts = [await movedOf(PATH1, 7), await movedOf(PATH1, MPTCP_PORT), await movedOf(PATH2, MPTCP_PORT)];
    const moved = counts.reduce((a, c) => a + c.moved, 0);
    const tracked = counts.reduce((a, c) => a + c.tracked, 0);
    await sleep(1000);
    const afterReload = ((await long.snapshot()) as LongReport).broken;
    figures.push(`  handover ${tag}: ${afterReload} long-lived connections broken by the reload itself (before any restart)`);

    const origins: string[] = [];
    control = await restartControl(control, cli1);
    origins.push((await status()).dataplane.origin ?? '?');
    await sleep(3000);
    figures.push(`  handover ${tag}: ${((await long.snapshot()) as LongReport).broken} broken after the same-build restart`);
    control = await restartControl(control, cli2);
    origins.push((await status()).dataplane.origin ?? '?');
    await sleep(3000);

    writeFileSync(hold, '1\n');
    await Promise.race([mptcpDone, sleep(60_000)]);
    const mp = JSON.parse(readFileSync(reportFile, 'utf8')) as MptcpReport;
    const kept = mp.perConnection.filter((c) => c.error === null && c.subflows === 2 && c.subflowsAfterHold === 2).length;
    const rep = (await long.stop()) as LongReport;
    await stopControl(control);
    control = null;
    return {
      longBroken: rep.broken,
      longEstablished: rep.established,
      moved,
      tracked,
      mptcpKept: kept,
      mptcpConnections: mp.connections,
      origins,
      brokenReasons: rep.errorKinds,
    };
  };

  it('b: 200 long-lived TCP + 20 MPTCP connections, 3 -> 6 backends, restart (same build, then a rebuilt one): 0 broken, both subflows kept; with the handover off the moved flows break', async () => {
    const on = await scenario(true);
    const off = await scenario(false);
    const line = (name: string, r: ScenarioResult): string =>
      `  handover ${name}: ${r.moved} of ${r.tracked} tracked flows (as many as /explain lists per client) had their table picks moved by the reload (${Math.round((100 * r.moved) / Math.max(1, r.tracked))}%); after the restarts (data plane ${r.origins.join(', then ')}): ${r.longBroken} of ${r.longEstablished} long-lived TCP connections broken ${JSON.stringify(r.brokenReasons)}, ${r.mptcpKept} of ${r.mptcpConnections} MPTCP connections kept both subflows`;
    figures.push(`b. hitless restart:\n${line('on', on)}\n${line('off (SLUICE_HANDOVER=off)', off)}`);
    expect(on.moved / on.tracked).toBeGreaterThanOrEqual(0.3);
    expect(on.origins).toEqual(['adopted', 'replaced']);
    expect(on.longEstablished).toBe(200);
    expect(on.longBroken).toBe(0);
    expect(on.mptcpKept).toBe(20);
    // The comparison: without the handover the flows whose pick moved break.
    expect(off.origins).toEqual(['started', 'started']);
    expect(off.moved / off.tracked).toBeGreaterThanOrEqual(0.3);
    expect(off.longBroken).toBeGreaterThan(0);
    expect(off.mptcpKept).toBeLessThan(20);
  }, 600_000);
});
