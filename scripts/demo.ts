/**
 * The lab demo: builds a namespace lab (client -> router -> Sluice -> 3 backends with the VIPs on
 * lo), starts Sluice with a generated config, drives bounded HTTP, UDP, IPv6 and long-lived
 * traffic through it, prints per-backend shares and a verdict, and tears everything down (also
 * on Ctrl-C or failure: the lab's signal handlers remove every namespace it made).
 *
 *   sudo npm run demo            (needs root: network namespaces and raw sockets)
 *   sudo npm run demo -- --cluster   three instances announcing over BGP, one killed and back
 *                                    (scripts/demo-cluster.ts)
 */
import { join } from 'node:path';
import { Lab, VIP4, VIP6 } from './lab/topology.js';
import type { LoadReport } from './lib/reports.js';
import { adminRequest } from '../src/observe/admin-client.js';
import { repoRoot } from './lib/repo.js';

const REPO_ROOT = repoRoot();

const FAIR_TOLERANCE_PCT = 25;

function line(s = ''): void {
  process.stdout.write(`${s}\n`);
}

function shareTable(title: string, r: LoadReport, unit: string): boolean {
  line(`\n${title}`);
  const names = Object.keys(r.backends).sort();
  let ok = true;
  for (const n of names) {
    const b = r.backends[n];
    const dev = b.deviationPct;
    const flag = Math.abs(dev) <= FAIR_TOLERANCE_PCT ? '' : '  <-- outside the fair band';
    if (flag) ok = false;
    line(`  ${n.padEnd(4)} ${String(b.count).padStart(5)} ${unit}  ${(b.share * 100).toFixed(1).padStart(5)}%  (${dev >= 0 ? '+' : ''}${dev.toFixed(1)}% from fair)${flag}`);
  }
  return ok && names.length === r.fairOver;
}

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write('demo: needs root (network namespaces, raw sockets): sudo npm run demo\n');
    return 2;
  }
  const started = Date.now();
  line('Sluice demo: building the lab (client -> router -> Sluice -> 3 backends) ...');
  const lab = await Lab.create({ backends: 3, mode: 'stick' });
  const checks: [string, boolean][] = [];
  try {
    const d = lab.describe();
    line(`  namespaces: ${[d.namespaces.client, d.namespaces.router, ...d.namespaces.balancers, ...d.namespaces.backends].join(' ')}`);
    line(`  VIPs ${VIP4} and ${VIP6}; backends ${lab.backends().map((b) => `${b.name}=${b.ipv4}`).join(' ')}`);
    const config = lab.configFor();
    const socket = lab.adminSocket(1);
    lab.spawn('lb', [process.execPath, join(REPO_ROOT, 'dist', 'src', 'cli.js'), 'run', '--config', config], { logName: 'sluice.log' });
    for (let i = 0; ; i++) {
      try {
        if ((await adminRequest(socket, 'GET', '/status', 1000)).status === 200) break;
      } catch {
        if (i > 150) throw new Error(`Sluice did not start; see ${join(d.runDir, 'sluice.log')}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    line(`  Sluice is forwarding (config ${config})\n`);

    line('Traffic (bounded):');
    const http = await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '600', '--concurrency', '16', '--duration', '60', '--backends', '3']);
    const udp = await lab.runLoad(['--mode', 'udp', '--target', `${VIP4}:53`, '--flows', '600', '--per-flow', '5', '--duration', '60', '--backends', '3']);
    const v6 = await lab.runLoad(['--mode', 'http', '--target', `[${VIP6}]:80`, '--count', '600', '--concurrency', '16', '--duration', '60', '--backends', '3']);
    const long = await lab.runLoad(['--mode', 'long', '--target', `${VIP4}:7`, '--connections', '60', '--interval', '100', '--duration', '4', '--backends', '3']);
    if (http.mode !== 'http' || udp.mode !== 'udp' || v6.mode !== 'http' || long.mode !== 'long') throw new Error('unexpected load report');

    checks.push([`HTTP over IPv4: ${http.ok}/${http.requests} ok, p50 ${http.latencyMs.p50.toFixed(1)} ms, p99 ${http.latencyMs.p99.toFixed(1)} ms`, http.ok === 600 && http.failed === 0]);
    checks.push([`UDP: ${udp.flowsComplete}/${udp.flows} flows fully answered, ${udp.flowsSplit} split across backends`, udp.flowsComplete === 600 && udp.flowsSplit === 0]);
    checks.push([`HTTP over IPv6: ${v6.ok}/${v6.requests} ok`, v6.ok === 600]);
    checks.push([`long-lived TCP: ${long.established}/${long.connections} connections, ${long.messagesOk} echoes, ${long.broken} broken, ${long.stalled} stalled`, long.established === 60 && long.broken === 0 && long.stalled === 0]);
    checks.push(['HTTP IPv4 shares within 25% of fair', shareTable('HTTP IPv4 requests per backend', http, 'requests')]);
    checks.push(['UDP shares within 25% of fair', shareTable('UDP flows per backend', udp, 'flows')]);
    checks.push(['HTTP IPv6 shares within 25% of fair', shareTable('HTTP IPv6 requests per backend', v6, 'requests')]);

    const status = (await adminRequest(socket, 'GET', '/status')).body as { flows: { active: number; created: number }; drops: Record<string, number>; traffic: { rxFrames: number; txFrames: number } };
    line(`\nSluice: ${status.traffic.rxFrames} frames in, ${status.traffic.txFrames} out, ${status.flows.created} flows created, ${status.flows.active} tracked; drops: ${Object.keys(status.drops).length === 0 ? 'none' : JSON.stringify(status.drops)}`);
  } finally {
    await lab.destroy();
  }
  line('\nResult:');
  for (const [what, ok] of checks) line(`  ${ok ? 'PASS' : 'FAIL'}  ${what}`);
  const pass = checks.length > 0 && checks.every(([, ok]) => ok);
  line(`\nVerdict: ${pass ? 'PASS' : 'FAIL'} (${((Date.now() - started) / 1000).toFixed(1)} s; lab torn down)`);
  return pass ? 0 : 1;
}

if (process.argv.includes('--cluster')) {
  // The cluster demo runs on its own when imported.
  await import('./demo-cluster.js');
} else {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      process.stderr.write(`demo failed: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
