/**
 * e2e (needs root): Sluice with two packet workers ("dataplane": {"workers": 2}): two worker
 * threads whose ring sockets share the capture interface in one PACKET_FANOUT_HASH group.
 *
 * Lab: a client with two paths (the second for MPTCP joins) -> router -> Sluice (dsr-l2,
 * one-armed) -> 3 backends running HTTP, UDP and echo servers and scripts/mptcp-peer.py.
 * Clients, router and backends keep the kernel's default offloads: the client's partial
 * checksums reach each worker's ring with the kernel's status, and the worker completes them.
 *
 *  1. 600 HTTP connections and 600 UDP flows: all succeed, every UDP flow on one backend, both
 *     workers carried traffic (the kernel split it by flow), checksums completed.
 *  2. 60 MPTCP connections: each ends with 2 subflows on one backend. A join has another
 *     5-tuple than its connection's first subflow, so the fanout hash sends about half of the
 *     joins to the other worker: /flows names the worker of each subflow, and the test counts
 *     the connections whose two subflows live on different workers. Those joins found their
 *     token in the token table the workers share.
 *  3. The same with SLUICE_SHARED_TABLES=off (each worker its own token table, as if the
 *     tables were not shared): the joins that crossed workers meet an unknown token and are
 *     dropped ("mptcpUnknownJoin": "drop"); both counts are printed.
 *  4. A reload (a 4th backend, a weight change) under 100 long-lived connections: 0 broken; the
 *     generation reached both workers before the reload answered.
 */
import { readFileSync, renameSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, VIP6, type ConfigService } from '../../scripts/lab/topology.js';
import type { HttpReport, LongReport, UdpReport } from '../../scripts/lib/reports.js';
import { admin, e2eEnabled, ensureBuilt, expectEachUdpFlowOnOneBackend, metric, scrape, sleep, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';
import { MIB, PATH1, PATH2, PORT, connectionProblems, peerClientArgs, serverRecordsOf, startPeerServers, type ClientReport } from './mptcp-helpers.js';

const enabled = e2eEnabled('e2e two packet workers');

interface FlowRowView {
  protocol: string;
  client: string;
  clientPort: number;
  backend: string;
  worker?: number;
}

describe.skipIf(!enabled)('two packet workers in one fanout group (dsr-l2, 3 backends, 2 client paths)', () => {
  let lab: Lab;
  let sluice: RunningSluice | undefined;
  let dir: string;
  let configPath: string;

  const services = (backends?: { address: string; weight?: number }[]): ConfigService[] => [
    ...lab.defaultServices().map((s) => (backends && !s.vip.includes(':') ? { ...s, backends } : s)),
    { name: 'mp', vip: VIP4, port: PORT, protocol: 'tcp', mptcp: true, mptcpUnknownJoin: 'drop' },
  ];
  const config = (file: string, backends?: { address: string; weight?: number }[]): string => lab.configFor(services(backends), { file, extra: { dataplane: { workers: 2 } } });
  const workerRx = (m: Map<string, number>): number[] => [0, 1].map((w) => metric(m, 'sluice_worker_rx_frames_total', { worker: String(w) }));

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick', clientPaths: 2 });
    dir = lab.describe().runDir;
    await startPeerServers(lab, dir);
    configPath = config('workers.json');
    sluice = await startSluice(lab, configPath);
  }, 120_000);
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  it('600 HTTP connections (v4 and v6) and 600 UDP flows succeed; every UDP flow stays on one backend; both workers forward; partial checksums completed', async () => {
    const m0 = await scrape(lab);
    const http = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '600', '--concurrency', '16', '--duration', '90', '--backends', '3'])) as HttpReport;
    expect(http.failed, JSON.stringify(http.errorKinds)).toBe(0);
    expect(http.ok).toBe(600);
    const http6 = (await lab.runLoad(['--mode', 'http', '--target', `[${VIP6}]:80`, '--count', '600', '--concurrency', '16', '--duration', '90', '--backends', '3'])) as HttpReport;
    expect(http6.failed, JSON.stringify(http6.errorKinds)).toBe(0);
    expect(http6.ok).toBe(600);
    await lab.resetStats();
    const udp = (await lab.runLoad(['--mode', 'udp', '--target', `${VIP4}:53`, '--flows', '600', '--per-flow', '5', '--duration', '90', '--backends', '3'])) as UdpReport;
    expect(udp.flowsComplete).toBe(600);
    expect(udp.flowsSplit).toBe(0);
    await expectEachUdpFlowOnOneBackend(lab, 600, 5);
    await sleep(300);
    const m1 = await scrape(lab);
    const rx = workerRx(m1).map((v, i) => v - workerRx(m0)[i]);
    const completed = metric(m1, 'sluice_checksums_completed_total') - metric(m0, 'sluice_checksums_completed_total');
    const status = await admin<{ dataplane: { workers?: { worker: number; rxFrames: number; flows: number; cpuSeconds: number }[] } }>(sluice as RunningSluice, 'GET', '/status');
    console.log(`workers e2e: 600/600 HTTP v4, 600/600 HTTP v6, 600/600 UDP flows; frames per worker ${rx.join(' / ')}; partial checksums completed ${completed}; status ${JSON.stringify(status.dataplane.workers)}`);
    expect(status.dataplane.workers?.length).toBe(2);
    // The fanout hash splits flows between the workers: each takes a real share (1200 connections and 600 flows: far from all on one).
    const total = rx[0] + rx[1];
    expect(Math.min(...rx)).toBeGreaterThan(total * 0.2);
    expect(completed).toBeGreaterThan(0);
  }, 300_000);

  /** 60 MPTCP connections; how many ended whole, and how many had their join on the other worker. */
  const mptcpRun = async (name: string, seed: number): Promise<{ rep: ClientReport; problems: string[]; whole: number; crossed: number; located: number; steered: number; unknown: number }> => {
    const m0 = await scrape(lab);
    await lab.exec('client', peerClientArgs(dir, name, { connections: 60, bytes: MIB, concurrency: 10, seed, holdMs: 3000 }), { timeoutMs: 90_000 });
    const report = JSON.parse(readFileSync(`${dir}/${name}.json`, 'utf8')) as ClientReport;
    const m1 = await scrape(lab);
    const servers = await serverRecordsOf(lab, dir, report.perConnection.map((c) => c.seed));
    const problemsPer = report.perConnection.map((c) => connectionProblems(c, servers, report.bytes));
    const problems = problemsPer.flat();
    // Closed subflows stay in the flow table while they close: each names its worker.
    const flows = await admin<{ rows: FlowRowView[] }>(sluice as RunningSluice, 'GET', `/flows?vip=${VIP4}&limit=10000`);
    const workerOf = new Map(flows.rows.filter((r) => r.protocol === 'tcp').map((r) => [`${r.client}:${r.clientPort}`, r.worker]));
    let crossed = 0;
    let located = 0;
    for (const c of report.perConnection) {
      const first = workerOf.get(`${PATH1}:${c.localPort ?? -1}`);
      const join = (c.subflowAddrs ?? []).find((s) => s.local?.[0] === PATH2);
      const second = join?.local ? workerOf.get(`${PATH2}:${join.local[1]}`) : undefined;
      if (first === undefined || second === undefined) continue;
      located++;
      if (first !== second) crossed++;
    }
    return {
      rep: report,
      problems,
      whole: problemsPer.filter((p) => p.length === 0).length,
      crossed,
      located,
      steered: metric(m1, 'sluice_mptcp_joins_steered_total') - metric(m0, 'sluice_mptcp_joins_steered_total'),
      unknown: metric(m1, 'sluice_mptcp_joins_unknown_token_total') - metric(m0, 'sluice_mptcp_joins_unknown_token_total'),
    };
  };

  let sharedCrossed = 0;
  let sharedWhole = 0;
  it('60 MPTCP connections end with 2 subflows on one backend; about half of the joins crossed to the other worker and found their token there', async () => {
    const r = await mptcpRun('mptcp-shared', 7000);
    sharedCrossed = r.crossed;
    sharedWhole = r.whole;
    console.log(`workers e2e, MPTCP (shared token table): ${r.rep.twoSubflows}/${r.rep.connections} with 2 subflows on one backend; joins on the other worker than their connection: ${r.crossed} of ${r.located}; joins steered ${r.steered}, unknown ${r.unknown}`);
    expect(r.rep.timedOut).toBe(false);
    expect(r.problems, r.problems.slice(0, 20).join('\n')).toEqual([]);
    expect(r.rep.twoSubflows).toBe(60);
    expect(r.located).toBe(60);
    // Each join lands on either worker with about even odds: none crossing in 60 would be 2^-60.
    expect(r.crossed).toBeGreaterThan(0);
    expect(r.steered).toBeGreaterThanOrEqual(60);
    expect(r.unknown).toBe(0);
  }, 180_000);

  it('with each worker its own token table (SLUICE_SHARED_TABLES=off), the joins that cross workers are unknown and dropped', async () => {
    await stopSluice(sluice as RunningSluice);
    sluice = undefined;
    process.env.SLUICE_SHARED_TABLES = 'off';
    try {
      sluice = await startSluice(lab, configPath);
    } finally {
      delete process.env.SLUICE_SHARED_TABLES;
    }
    const r = await mptcpRun('mptcp-private', 8000);
    console.log(`workers e2e, MPTCP (tables NOT shared): ${r.whole}/${r.rep.connections} whole (2 subflows on one backend, by the server's view); joins on the other worker: ${r.crossed}; joins unknown ${r.unknown} (shared: ${sharedWhole}/60 whole, ${sharedCrossed} crossed)`);
    expect(r.unknown).toBeGreaterThan(0);
    expect(r.whole).toBeLessThan(60);
    await stopSluice(sluice);
    sluice = await startSluice(lab, configPath);
  }, 240_000);

  it('a reload (4th backend, a weight change) under 100 long-lived connections breaks 0; new connections reach the new backend', async () => {
    const load = lab.startLoad(['--mode', 'long', '--target', `${VIP4}:7`, '--connections', '100', '--interval', '100', '--stall-ms', '1000', '--duration', '60']);
    for (let i = 0; i < 50; i++) {
      await sleep(200);
      if (((await load.snapshot()) as LongReport).established === 100) break;
    }
    const b4 = await lab.addBackend();
    const [b1, b2, b3] = lab.backends();
    const before = (await admin<{ generation: number }>(sluice as RunningSluice, 'GET', '/status')).generation;
    renameSync(config('next.json', [{ address: b1.ipv4, weight: 3 }, { address: b2.ipv4 }, { address: b3.ipv4 }, { address: b4.ipv4 }]), configPath);
    let generation = before;
    for (let i = 0; i < 100 && generation <= before; i++) {
      await sleep(100);
      generation = (await admin<{ generation: number }>(sluice as RunningSluice, 'GET', '/status')).generation;
    }
    expect(generation).toBeGreaterThan(before);
    await sleep(1500);
    const fresh = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '120', '--concurrency', '8', '--duration', '60'])) as HttpReport;
    const report = (await load.stop()) as LongReport;
    const m = await scrape(lab);
    console.log(`workers e2e, reload: ${report.broken} of ${report.established} long-lived connections broken, ${report.stalled} stalled; new connections ${fresh.ok}/120, ${fresh.backends[b4.name]?.count ?? 0} on the new backend; data plane generation ${metric(m, 'sluice_dataplane_generation')}`);
    expect(report.established).toBe(100);
    expect(report.broken, JSON.stringify(report.perConnection.filter((c) => c.broken))).toBe(0);
    expect(report.stalled).toBe(0);
    expect(fresh.ok).toBe(120);
    expect(fresh.backends[b4.name]?.count ?? 0).toBeGreaterThan(0);
    // The summed gauge is the lowest generation any worker applied.
    expect(metric(m, 'sluice_dataplane_generation')).toBe(generation);
  }, 180_000);
});
