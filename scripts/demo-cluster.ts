/**
 * The cluster demo: a router running BIRD 2 learns the VIP from three Sluice instances over BGP
 * and spreads clients over them with ECMP. One instance is killed (control and data plane), the
 * router withdraws its route, traffic goes on through the other two; the instance comes back and
 * is announced again. Prints a timeline, per-phase traffic and a verdict; everything is torn down
 * (also on failure: the lab removes every namespace it made).
 *
 *   sudo npm run demo -- --cluster     (needs root: network namespaces, raw sockets, BIRD)
 */
import type { ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Lab, VIP4, type ConfigService } from './lab/topology.js';
import { LAB_TIMERS, announceSection, balancerSegment4, startRouterBgp, type RouterBgp } from './lab/bgp.js';
import type { LoadReport } from './lib/reports.js';
import { adminRequest } from '../src/observe/admin-client.js';
import { repoRoot } from './lib/repo.js';

const N = 3;
const CLI = join(repoRoot(), 'dist', 'src', 'cli.js');
const started = Date.now();

function line(s = ''): void {
  process.stdout.write(`${s}\n`);
}
const at = (): string => `+${((Date.now() - started) / 1000).toFixed(1).padStart(5)} s`;
const event = (s: string): void => line(`  ${at()}  ${s}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Instance {
  k: number;
  child: ChildProcess;
  socket: string;
}

/** Start instance k and wait (bounded) until its admin socket answers. */
async function startInstance(lab: Lab, k: number, config: string): Promise<Instance> {
  const socket = lab.adminSocket(k);
  const child = lab.spawn(`lb${k}`, [process.execPath, CLI, 'run', '--config', config], { logName: `sluice-lb${k}-${Date.now()}.log` });
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`lb${k} exited with ${child.exitCode} during start; see ${lab.describe().runDir}`);
    try {
      if ((await adminRequest(socket, 'GET', '/status', 1000)).status === 200) return { k, child, socket };
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`lb${k} did not answer within 20 s`);
    await sleep(100);
  }
}

/** Poll (bounded) until the router's next hops for the VIP are `want`; returns the ms it took. */
async function nextHopsBecome(router: RouterBgp, want: string[], timeoutMs: number): Promise<number> {
  const t = Date.now();
  const key = want.slice().sort().join(',');
  while (Date.now() - t < timeoutMs) {
    if ((await router.nextHops(VIP4)).join(',') === key) return Date.now() - t;
    await sleep(20);
  }
  throw new Error(`the router did not reach next hops [${key}] within ${timeoutMs} ms (has [${(await router.nextHops(VIP4)).join(',')}])`);
}

function configFor(lab: Lab, k: number): string {
  const services: ConfigService[] = [
    { name: 'web', vip: VIP4, port: lab.ports.http, protocol: 'tcp' },
    { name: 'echo', vip: VIP4, port: lab.ports.echo, protocol: 'tcp' },
  ];
  const file = lab.configFor(services, { balancer: k, extra: { announce: announceSection(lab, k) } });
  const doc = JSON.parse(readFileSync(file, 'utf8')) as { services: Record<string, unknown>[] };
  for (const s of doc.services) s.healthCheck = { type: 'tcp', intervalMs: 200, timeoutMs: 150, rise: 1, fall: 2 };
  writeFileSync(file, JSON.stringify(doc, null, 2) + '\n');
  return file;
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('demo --cluster: needs root (network namespaces, raw sockets): sudo npm run demo -- --cluster\n');
    return 2;
  }
  const checks: [string, boolean][] = [];
  const hops = (ks: number[]): string[] => ks.map(balancerSegment4);
  line(`Sluice cluster demo: client -> router (BIRD 2, ECMP) -> ${N} Sluice instances announcing over BGP -> 3 backends`);
  line(`Router timers: BFD ${LAB_TIMERS.bfdIntervalMs} ms x ${LAB_TIMERS.bfdMultiplier}, BGP hold ${LAB_TIMERS.holdTimeS} s\n`);
  line('Timeline:');
  const lab = await Lab.create({ balancers: N, backends: 3, vipRoutes: 'bgp' });
  const instances: Instance[] = [];
  try {
    event(`lab ${lab.runId} up; the router has no static route to ${VIP4}`);
    const router = await startRouterBgp(lab, N);
    event('router BIRD up');
    const configs = Array.from({ length: N }, (_, i) => configFor(lab, i + 1));
    instances.push(...(await Promise.all(configs.map((c, i) => startInstance(lab, i + 1, c)))));
    event(`lb1..lb${N} started, each with its own BIRD`);
    const learnMs = await nextHopsBecome(router, hops([1, 2, 3]), 20_000);
    event(`router learned ${VIP4} via ${hops([1, 2, 3]).join(', ')} (${learnMs} ms after the last instance answered)`);
    checks.push([`the router learns ${VIP4} from all ${N} instances`, true]);

    const before = await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:${lab.ports.http}`, '--count', '300', '--concurrency', '8', '--duration', '30', '--backends', '3']);
    event(`HTTP through all 3: ${okText(before)}`);
    checks.push([`HTTP through ${N} instances: ${okText(before)}`, before.mode === 'http' && before.failed === 0]);

    const long = lab.startLoad(['--mode', 'long', '--target', `${VIP4}:${lab.ports.echo}`, '--connections', '60', '--interval', '100', '--duration', '12', '--backends', '3']);
    await sleep(2000);
    const victim = instances[N - 1];
    const dp = ((await adminRequest(victim.socket, 'GET', '/status', 2000)).body as { dataplane: { pid: number | null } }).dataplane.pid;
    victim.child.kill('SIGKILL');
    if (dp) process.kill(dp, 'SIGKILL');
    event(`lb${N} killed (SIGKILL of its control and data-plane processes), under 60 long-lived connections`);
    const withdrawMs = await nextHopsBecome(router, hops([1, 2]), LAB_TIMERS.holdTimeS * 1000 + 2000);
    event(`router withdrew lb${N}: ${VIP4} via ${hops([1, 2]).join(', ')} after ${withdrawMs} ms`);
    checks.push([`lb${N} withdrawn within the hold time (${withdrawMs} ms <= ${LAB_TIMERS.holdTimeS * 1000} ms)`, withdrawMs <= LAB_TIMERS.holdTimeS * 1000]);

    const during = await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:${lab.ports.http}`, '--count', '300', '--concurrency', '8', '--duration', '30', '--backends', '3']);
    event(`HTTP through the 2 survivors: ${okText(during)}`);
    checks.push([`HTTP while lb${N} is down: ${okText(during)}`, during.mode === 'http' && during.failed === 0]);

    const back = await startInstance(lab, N, configs[N - 1]);
    instances[N - 1] = back;
    event(`lb${N} started again`);
    const returnMs = await nextHopsBecome(router, hops([1, 2, 3]), 20_000);
    event(`router announced lb${N} again after ${returnMs} ms: ${VIP4} via ${hops([1, 2, 3]).join(', ')}`);
    checks.push([`lb${N} re-announced`, true]);

    const l = await long.done;
    if (l.mode !== 'long') throw new Error('unexpected load report');
    event(`long-lived connections: ${l.established}/60 established, ${l.broken} broken, ${l.stalled} stalled over 1 s`);
    // Connections that ECMP had on lb3 move to lb1/lb2, whose Maglev tables pick the same backends.
    checks.push([`long-lived connections through the kill and the return: ${l.broken} of ${l.established} broken`, l.established === 60 && l.broken === 0]);

    const after = await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:${lab.ports.http}`, '--count', '300', '--concurrency', '8', '--duration', '30', '--backends', '3']);
    event(`HTTP through all 3 again: ${okText(after)}`);
    checks.push([`HTTP after lb${N} returned: ${okText(after)}`, after.mode === 'http' && after.failed === 0]);
  } finally {
    for (const i of instances) {
      if (i.child.exitCode === null) i.child.kill('SIGTERM');
    }
    await sleep(500);
    await lab.destroy();
  }
  line('\nResult:');
  for (const [what, ok] of checks) line(`  ${ok ? 'PASS' : 'FAIL'}  ${what}`);
  const pass = checks.length >= 7 && checks.every(([, ok]) => ok);
  line(`\nVerdict: ${pass ? 'PASS' : 'FAIL'} (${((Date.now() - started) / 1000).toFixed(1)} s; lab torn down)`);
  return pass ? 0 : 1;
}

function okText(r: LoadReport): string {
  return r.mode === 'http' ? `${r.ok}/${r.requests} ok, p99 ${r.latencyMs.p99.toFixed(1)} ms` : r.mode;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`demo --cluster failed: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  },
);
