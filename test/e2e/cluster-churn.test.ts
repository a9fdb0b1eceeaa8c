/**
 * e2e (root: network namespaces, raw sockets): TCP and UDP through cluster churn, on routes the
 * router learned over BGP.
 *
 * Lab: client -> router running BIRD 2 (ECMP "merge paths", L4 hash, BFD 100 ms x 3, hold 3 s;
 * scripts/lab/bgp.ts) -> 3 Sluice instances lb1..lb3 (dsr-l2, one-armed, cluster with owner sync),
 * each announcing the VIP through its own BIRD -> backends b1..b3 (echo :7, UDP :53 answering
 * "<name> <seq>", and for IPv4 mptcp-peer.py :8080). No static VIP route (vipRoutes: 'bgp').
 *
 * Per family (IPv4, IPv6), once with sync and once without:
 *   200 long-lived TCP echo connections (a line every 100 ms), 200 long-lived UDP sessions (one
 *   socket each: a fixed 5-tuple; a request every 100 ms; each answer names its backend), and
 *   over IPv4 20 MPTCP connections with 2 subflows (an INFO round trip every 100 ms). Then:
 *     1. b4 and b5 join and b3 leaves on every instance (each watcher reloads its file);
 *     2. lb2 is killed (SIGKILL, control and data plane): its BIRD dies with it and the router
 *        removes its next hop (measured);
 *     3. lb2 comes back: it rejoins the cluster and announces again (measured).
 *   With sync: among the connections and sessions whose backend stayed in the config, 0 TCP
 *   broken or stalled > 1 s, 0 UDP sessions answered by a second backend, MPTCP keeps both
 *   subflows. Without sync: misdeliveries of both kinds (printed beside the sync figures).
 *
 * SLUICE_CHURN_FAMILIES=4 (or 6) runs one family only (the repeat runs use it).
 * Every wait is bounded; namespaces and processes are removed in finally/afterAll, also on failure.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, VIP6, type ConfigService, type LoadRun } from '../../scripts/lab/topology.js';
import type { LongReport, UdpReport } from '../../scripts/lib/reports.js';
import { announceSection, balancerSegment4, balancerSegment6, startRouterBgp, type RouterBgp } from '../../scripts/lab/bgp.js';
import { REPO, e2eEnabled, ensureBuilt, metric, scrape, sleep, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';
import {
  ECHO_PORT,
  MPTCP_PORT,
  alive,
  configPath,
  startMptcpLong,
  startMptcpServer,
  status,
  waitConverged,
  waitFor,
  writeClusterKey,
  writeInstanceConfig,
  type MptcpLongConn,
} from './cluster-helpers.js';

const enabled = e2eEnabled('e2e cluster churn (3 instances, BGP-learned ECMP, owner sync)');
const t0 = Date.now();
const step = (msg: string): void => {
  process.stderr.write(`[churn e2e +${((Date.now() - t0) / 1000).toFixed(1)} s] ${msg}\n`);
};

const PEER = join(REPO, 'scripts', 'mptcp-peer.py');
const N = 3;
const ALL = ['lb1', 'lb2', 'lb3'];
const TCP_CONNECTIONS = 200;
const UDP_SESSIONS = 200;
const MPTCP_CONNECTIONS = 20;
const UDP_PORT = 53;
const FAMILIES = (process.env.SLUICE_CHURN_FAMILIES ?? '4,6').split(',').map((f) => Number(f.trim())).filter((f): f is 4 | 6 => f === 4 || f === 6);

const OWNER_METRICS = [
  'sluice_owner_queries_total',
  'sluice_owner_queries_udp_total',
  'sluice_owner_query_hits_total',
  'sluice_owner_query_misses_total',
  'sluice_owner_query_timeouts_total',
  'sluice_owner_query_unanswered_total',
  'sluice_owner_query_retried_total',
  'sluice_owner_late_answers_total',
  'sluice_owner_queries_over_budget_total',
  'sluice_owner_held_packets_total',
  'sluice_owner_entries_published_total',
  'sluice_cluster_query_late_found_total',
  'sluice_cluster_query_resends_total',
  'sluice_mptcp_joins_steered_total',
  'sluice_mptcp_joins_unknown_token_total',
];

interface Churn {
  lab: Lab;
  router: RouterBgp;
  family: 4 | 6;
  sync: boolean;
  keyFile: string;
  sluice: (RunningSluice | undefined)[];
}

export interface ChurnResult {
  family: 4 | 6;
  sync: boolean;
  tcp: LongReport;
  udp: UdpReport;
  mptcp: MptcpLongConn[];
  removed: string;
  tcpBad: LongReport['perConnection'];
  tcpKept: number;
  udpKept: number;
  /** UDP sessions whose first backend stayed in the config that were answered by a second one. */
  udpMisdelivered: UdpReport['perFlowDetail'];
  mptcpBad: { c: MptcpLongConn; why: string }[];
  counters: Record<string, number>;
  withdrawnMs: number;
  reannouncedMs: number;
}

const vipOf = (f: 4 | 6): string => (f === 4 ? VIP4 : VIP6);
const target = (f: 4 | 6, port: number): string => (f === 4 ? `${VIP4}:${port}` : `[${VIP6}]:${port}`);
const hopOf = (f: 4 | 6, k: number): string => (f === 4 ? balancerSegment4(k) : balancerSegment6(k));
const hops = (f: 4 | 6, ks: number[]): string[] => ks.map((k) => hopOf(f, k)).sort();
const same = (a: string[], b: string[]): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

function services(c: Churn): ConfigService[] {
  const addrs = c.lab.backends().map((b) => (c.family === 4 ? b.ipv4 : b.ipv6) ?? '');
  const backends = addrs.map((address) => ({ address }));
  const vip = vipOf(c.family);
  const out: ConfigService[] = [
    { name: 'echo', vip, port: ECHO_PORT, protocol: 'tcp', backends },
    { name: 'game', vip, port: UDP_PORT, protocol: 'udp', backends },
  ];
  if (c.family === 4) out.push({ name: 'mp', vip, port: MPTCP_PORT, protocol: 'tcp', mptcp: true, mptcpUnknownJoin: 'drop', backends });
  return out;
}

function writeConfigs(c: Churn, only?: string[]): void {
  const svc = services(c);
  const keep = only === undefined ? svc : svc.map((s) => ({ ...s, backends: (s.backends ?? []).filter((b) => only.includes(b.address)) }));
  for (let k = 1; k <= N; k++) writeInstanceConfig(c.lab, k, N, keep, c.keyFile, c.sync, { announce: announceSection(c.lab, k) });
}

function running(c: Churn): RunningSluice[] {
  return c.sluice.filter((s): s is RunningSluice => s !== undefined && s.child.exitCode === null && s.child.signalCode === null);
}

async function ownerCounters(lab: Lab, k: number): Promise<Record<string, number>> {
  const m = await scrape(lab, k);
  const out: Record<string, number> = {};
  for (const name of OWNER_METRICS) out[name] = metric(m, name);
  out['cluster_queries_timeout'] = metric(m, 'sluice_cluster_queries_total', { result: 'timeout' });
  return out;
}

function addInto(sum: Record<string, number>, more: Record<string, number>): void {
  for (const [k, v] of Object.entries(more)) sum[k] = (sum[k] ?? 0) + v;
}

async function phase(c: Churn, tcp?: LoadRun, udp?: LoadRun): Promise<string> {
  const parts: string[] = [];
  // Where in the sequence connections broke and sessions split (printed, not asserted).
  const t = tcp ? ((await tcp.snapshot().catch(() => null)) as LongReport | null) : null;
  const u = udp ? ((await udp.snapshot().catch(() => null)) as UdpReport | null) : null;
  // Connections and sessions on b3 (the backend that leaves) break or move by design: not counted.
  if (t) parts.push(`TCP on kept backends broken so far ${t.perConnection.filter((x) => x.backend !== 'b3' && x.broken).length}, stalled ${t.perConnection.filter((x) => x.backend !== 'b3' && x.stalled).length}`);
  if (u) parts.push(`UDP sessions split so far ${u.perFlowDetail.filter((f) => f.backends.length > 1 && f.backends[0] !== 'b3').length}`);
  for (const s of running(c)) {
    const m = await scrape(c.lab, s.balancer).catch(() => new Map<string, number>());
    parts.push(`lb${s.balancer} q ${metric(m, 'sluice_owner_queries_total')} (udp ${metric(m, 'sluice_owner_queries_udp_total')}) hit ${metric(m, 'sluice_owner_query_hits_total')} retried ${metric(m, 'sluice_owner_query_retried_total')} unanswered ${metric(m, 'sluice_owner_query_unanswered_total')}`);
  }
  return parts.join('; ');
}

async function createChurn(family: 4 | 6, sync: boolean): Promise<Churn> {
  step(`IPv${family} sync ${sync}: creating the lab`);
  const lab = await Lab.create({ backends: 3, balancers: N, clientPaths: family === 4 ? 2 : 1, ipv6: family === 6, vipRoutes: 'bgp' });
  const c: Churn = { lab, router: undefined as unknown as RouterBgp, family, sync, keyFile: writeClusterKey(lab), sluice: [] };
  try {
    c.router = await startRouterBgp(lab, N);
    if (family === 4) await Promise.all(lab.backends().map((b) => startMptcpServer(lab, b.index, PEER)));
    writeConfigs(c);
    c.sluice = await Promise.all(Array.from({ length: N }, (_, i) => startSluice(lab, configPath(lab, i + 1), i + 1)));
    await waitConverged(running(c), ALL, 'the 3 instances to see each other');
    await waitFor(`${vipOf(family)} via 3 next hops`, () => c.router.nextHops(vipOf(family)), (h) => same(h, hops(family, [1, 2, 3])), 300, 100);
    step(`IPv${family} sync ${sync}: cluster converged, router learned ${vipOf(family)} from all 3`);
    return c;
  } catch (e) {
    await destroyChurn(c);
    throw e;
  }
}

async function destroyChurn(c: Churn | undefined): Promise<void> {
  if (!c) return;
  await Promise.all(
    running(c).map(async (s) => {
      await Promise.race([stopSluice(s).catch(() => undefined), sleep(10_000)]);
    }),
  );
  await c.lab.destroy();
}

async function waitUp(load: LoadRun, what: string, ok: (r: LongReport | UdpReport) => boolean): Promise<LongReport | UdpReport> {
  return waitFor(
    what,
    () => {
      if (load.child.exitCode !== null || load.child.signalCode !== null) throw new Error(`load.js exited (${String(load.child.exitCode ?? load.child.signalCode)})`);
      return load.snapshot() as Promise<LongReport | UdpReport>;
    },
    ok,
    150,
    200,
  );
}

/** The acceptance sequence under load; returns what the clients saw and the owner counters. */
async function runChurn(c: Churn): Promise<ChurnResult> {
  const { lab, family, router } = c;
  const tag = `IPv${family} ${c.sync ? 'sync' : 'no sync'}`;
  const vip = vipOf(family);
  const tcpLoad = lab.startLoad(['--mode', 'long', '--target', target(family, ECHO_PORT), '--connections', String(TCP_CONNECTIONS), '--interval', '100', '--stall-ms', '1000', '--duration', '150']);
  await sleep(5);
  const udpLoad = lab.startLoad(['--mode', 'udp', '--target', target(family, UDP_PORT), '--flows', String(UDP_SESSIONS), '--per-flow', '1500', '--interval', '100', '--timeout', '1000', '--duration', '150']);
  const mp = family === 4 ? startMptcpLong(lab, `mptcp-long-${c.sync ? 'sync' : 'nosync'}`, { connections: MPTCP_CONNECTIONS, seed: c.sync ? 7000 : 8000, duration: 150, joinWait: c.sync ? 12 : 4 }) : undefined;
  try {
    const est = (await waitUp(tcpLoad, `${TCP_CONNECTIONS} TCP connections`, (r) => r.mode === 'long' && r.established + r.broken >= TCP_CONNECTIONS)) as LongReport;
    expect(est.established, 'TCP connections established').toBe(TCP_CONNECTIONS);
    await waitUp(udpLoad, `${UDP_SESSIONS} UDP sessions answered`, (r) => r.mode === 'udp' && r.perFlowDetail.filter((f) => f.replies > 0).length >= UDP_SESSIONS);
    if (mp) await mp.ready(60_000);
    step(`${tag}: ${TCP_CONNECTIONS} TCP, ${UDP_SESSIONS} UDP${mp ? `, ${MPTCP_CONNECTIONS} MPTCP` : ''} up (${await phase(c, tcpLoad, udpLoad)})`);
    await sleep(1000);

    // 1. Backend change: b4 and b5 join, b3 leaves; every instance reloads from its file.
    const gens = await Promise.all(running(c).map(async (s) => (await status(s)).generation));
    const b4 = await lab.addBackend();
    const b5 = await lab.addBackend();
    if (family === 4) await Promise.all([startMptcpServer(lab, b4.index, PEER), startMptcpServer(lab, b5.index, PEER)]);
    const [b1, b2, b3] = lab.backends();
    const addr = (b: typeof b1): string => (family === 4 ? b.ipv4 : b.ipv6) ?? '';
    writeConfigs(c, [b1, b2, b4, b5].map(addr));
    await waitFor(
      'every instance on the new generation',
      () => Promise.all(running(c).map((s) => status(s))),
      (all) => all.every((st, i) => st.generation > gens[i] && st.dataplane.generation === st.generation),
      150,
    );
    await waitConverged(running(c), ALL, 'the same backend set everywhere after the reload');
    step(`${tag}: every instance reloaded (${await phase(c, tcpLoad, udpLoad)})`);
    await sleep(2000);

    // 2. lb2 dies (control and data plane): its BIRD goes with it, the router drops its next hop.
    const counters: Record<string, number> = {};
    addInto(counters, await ownerCounters(lab, 2)); // lb2's counters die with it
    const lb2 = c.sluice[1] as RunningSluice;
    const lb2Worker = (await status(lb2)).dataplane.pid;
    const exited = new Promise<void>((r) => lb2.child.once('exit', () => r()));
    const killedAt = Date.now();
    lb2.child.kill('SIGKILL');
    if (lb2Worker) process.kill(lb2Worker, 'SIGKILL');
    await exited;
    c.sluice[1] = undefined;
    await waitFor('the router to drop lb2', () => router.nextHops(vip), (h) => same(h, hops(family, [1, 3])), 300, 20);
    const withdrawnMs = Date.now() - killedAt;
    await waitFor('lb2\'s data-plane process to exit', () => Promise.resolve(alive(lb2Worker)), (a) => !a, 100, 50);
    step(`${tag}: lb2 killed; router dropped its next hop after ${withdrawnMs} ms (${await phase(c, tcpLoad, udpLoad)})`);
    await waitFor('lb2 reported down by lb1 and lb3', () => Promise.all(running(c).map((s) => status(s))), (all) => all.every((st) => st.cluster?.live.join(',') === 'lb1,lb3'), 100, 50);
    await sleep(2000);

    // 3. lb2 comes back: it rejoins the cluster and announces again by itself.
    const restartAt = Date.now();
    c.sluice[1] = await startSluice(lab, configPath(lab, 2), 2);
    await waitFor('the router to learn lb2 again', () => router.nextHops(vip), (h) => same(h, hops(family, [1, 2, 3])), 300, 50);
    const reannouncedMs = Date.now() - restartAt;
    await waitConverged(running(c), ALL, 'lb2 back in every live set');
    step(`${tag}: lb2 restarted; announced again after ${reannouncedMs} ms (${await phase(c, tcpLoad, udpLoad)})`);
    await sleep(4000);

    const tcp = (await tcpLoad.stop()) as LongReport;
    const udp = (await udpLoad.stop()) as UdpReport;
    const mptcp = mp ? await mp.stop() : [];
    for (let k = 1; k <= N; k++) addInto(counters, await ownerCounters(lab, k));
    const removed = b3.name;
    const tcpBad = tcp.perConnection.filter((x) => x.backend !== removed && (x.broken || x.stalled));
    const udpKept = udp.perFlowDetail.filter((f) => f.backends.length > 0 && f.backends[0] !== removed);
    const mptcpBad: { c: MptcpLongConn; why: string }[] = [];
    for (const m of mptcp) {
      if (m.backend === removed) continue;
      if (m.broken) mptcpBad.push({ c: m, why: `broken: ${m.reason ?? '?'}` });
      else if (m.maxStallMs > 1000) mptcpBad.push({ c: m, why: `stalled ${Math.round(m.maxStallMs)} ms` });
      else if (m.joinedMs === null || m.serverJoinedMs === null) mptcpBad.push({ c: m, why: `never had 2 subflows` });
      else if (m.minSubflows !== 2 || m.finalSubflows !== 2 || m.minServerSubflows !== 2 || m.finalServerSubflows !== 2) {
        mptcpBad.push({ c: m, why: `subflows client min ${m.minSubflows ?? '?'} final ${m.finalSubflows ?? '?'}, server min ${m.minServerSubflows ?? '?'} final ${m.finalServerSubflows ?? '?'}` });
      }
    }
    return {
      family,
      sync: c.sync,
      tcp,
      udp,
      mptcp,
      removed,
      tcpBad,
      tcpKept: tcp.perConnection.filter((x) => x.backend !== removed).length,
      udpKept: udpKept.length,
      udpMisdelivered: udpKept.filter((f) => f.backends.length > 1),
      mptcpBad,
      counters,
      withdrawnMs,
      reannouncedMs,
    };
  } finally {
    await tcpLoad.stop().catch(() => undefined);
    await udpLoad.stop().catch(() => undefined);
    await mp?.stop().catch(() => undefined);
  }
}

function describeRun(r: ChurnResult): string {
  const k = r.counters;
  const n = (name: string): number => k[name] ?? 0;
  return [
    `churn IPv${r.family} ${r.sync ? 'sync on' : 'sync off'}: TCP ${r.tcpKept} on backends that stayed: ${r.tcpBad.filter((x) => x.broken).length} broken, ${r.tcpBad.filter((x) => !x.broken).length} stalled > 1 s (longest ${r.tcp.maxStallMs} ms); ` +
      `UDP ${r.udpKept} sessions on backends that stayed: ${r.udpMisdelivered.length} answered by a second backend (lost datagrams ${r.udp.lost} of ${r.udp.sent})` +
      (r.family === 4 ? `; MPTCP ${r.mptcp.filter((m) => m.backend !== r.removed).length}: ${r.mptcpBad.length} broken/lost a subflow` : ''),
    `  router: lb2 dropped ${r.withdrawnMs} ms after SIGKILL, learned again ${r.reannouncedMs} ms after its restart`,
    `  owner queries ${n('sluice_owner_queries_total')} (UDP ${n('sluice_owner_queries_udp_total')}), hits ${n('sluice_owner_query_hits_total')}, misses ${n('sluice_owner_query_misses_total')}, ` +
      `unanswered: retried ${n('sluice_owner_query_retried_total')}, took the table ${n('sluice_owner_query_unanswered_total')} (data-plane deadline ${n('sluice_owner_query_timeouts_total')}, control timeouts ${n('cluster_queries_timeout')}), ` +
      `late answers ${n('sluice_owner_late_answers_total')} (control: late FOUND ${n('sluice_cluster_query_late_found_total')}), resends ${n('sluice_cluster_query_resends_total')}, over budget ${n('sluice_owner_queries_over_budget_total')}, ` +
      `held packets ${n('sluice_owner_held_packets_total')}, entries published ${n('sluice_owner_entries_published_total')}, joins steered ${n('sluice_mptcp_joins_steered_total')}, joins unknown ${n('sluice_mptcp_joins_unknown_token_total')}`,
  ].join('\n');
}

describe.skipIf(!enabled)('cluster churn on BGP-learned ECMP: TCP and UDP keep their backends', () => {
  let current: Churn | undefined;

  beforeAll(() => {
    ensureBuilt();
    if (FAMILIES.includes(4) && !existsSync('/proc/sys/net/mptcp/enabled')) throw new Error('this kernel has no MPTCP (/proc/sys/net/mptcp missing)');
  });
  afterAll(async () => {
    await destroyChurn(current);
  });

  for (const family of FAMILIES) {
    it(`IPv${family}: add 2 backends and remove 1, kill an instance, bring it back: with sync 0 TCP broken or stalled and 0 UDP misdelivered; without sync both misdeliver`, async () => {
      current = await createChurn(family, true);
      const on = await runChurn(current);
      console.log(describeRun(on));
      await destroyChurn(current);
      current = undefined;

      current = await createChurn(family, false);
      const off = await runChurn(current);
      console.log(describeRun(off));
      await destroyChurn(current);
      current = undefined;

      console.log(
        `churn IPv${family}, misdelivered among those whose backend stayed: with sync ${on.tcpBad.length} TCP (broken or stalled) + ${on.udpMisdelivered.length} UDP; ` +
          `without sync ${off.tcpBad.filter((x) => x.broken).length} TCP broken + ${off.udpMisdelivered.length} UDP`,
      );
      // With sync.
      expect(on.tcp.established).toBe(TCP_CONNECTIONS);
      expect(on.tcpBad.map((x) => `#${x.id} ${x.backend ?? '?'} ${x.broken ? `broken ${x.reason ?? ''}` : `stalled ${x.maxStallMs} ms`}`)).toEqual([]);
      expect(on.udpKept).toBeGreaterThan(UDP_SESSIONS / 2);
      expect(on.udpMisdelivered.map((f) => `session ${f.id}: ${f.backends.join(' then ')}`)).toEqual([]);
      expect(on.mptcpBad.map((b) => `#${b.c.index} ${b.c.backend ?? '?'}: ${b.why}`)).toEqual([]);
      expect(on.counters['sluice_owner_queries_udp_total']).toBeGreaterThan(0);
      expect(on.counters['sluice_owner_query_hits_total']).toBeGreaterThan(0);
      // Without sync nobody asks, and both kinds misdeliver.
      expect(off.tcp.established).toBe(TCP_CONNECTIONS);
      expect(off.counters['sluice_owner_queries_total']).toBe(0);
      expect(off.tcpBad.filter((x) => x.broken).length).toBeGreaterThan(0);
      expect(off.udpMisdelivered.length).toBeGreaterThan(0);
    }, 420_000);
  }
});
