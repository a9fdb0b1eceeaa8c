/**
 * e2e: `npm run load` (dist/scripts/load.js) against servers that know nothing of the lab:
 * `python3 -m http.server` in each backend, behind Sluice with weights 2, 1, 1 (topology
 * "stick", 1 balancer, 3 backends, L2 DSR; the lab's own backend servers are not started).
 * The tool tells the backends apart by the response body (a regex) and, without any help from the
 * servers, by Sluice's flow table through the admin socket; it judges shares against the weights
 * (given, or read from the balancer) and writes a self-contained HTML report.
 * Needs root (network namespaces). Every run is bounded in count and time; the lab is torn down
 * in afterAll.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4 } from '../../scripts/lab/topology.js';
import type { HttpReport } from '../../scripts/lib/reports.js';
import { e2eEnabled, ensureBuilt, sleep, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';

const enabled = e2eEnabled('e2e load tool against python3 -m http.server');

const WEIGHTS = { b1: 2, b2: 1, b3: 1 } as const;
const REQUESTS = 600;
/** Largest deviation from the weighted share allowed: 600 connections hashed over 3 backends put one
 * standard deviation of a weight-1 backend's share near 7%, so 30% is a 4-sigma bound. */
const TOLERANCE_PCT = 30;

describe.skipIf(!enabled)('load tool: python3 -m http.server backends behind Sluice, weights 2/1/1', () => {
  let lab: Lab;
  let sluice: RunningSluice | null = null;
  const figures: string[] = [];

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick', ipv6: false, servers: false });
    const runDir = lab.describe().runDir;
    for (const b of lab.backends()) {
      const www = join(runDir, `www-${b.name}`);
      mkdirSync(www, { recursive: true });
      writeFileSync(join(www, 'index.html'), `<!doctype html><title>${b.name}</title><p>served by ${b.name}</p>\n`);
      lab.spawn(b.name, ['python3', '-m', 'http.server', '80', '--bind', '0.0.0.0', '--directory', www], { logName: `http-server-${b.name}.log` });
    }
    for (const b of lab.backends()) {
      const deadline = Date.now() + 15_000;
      for (;;) {
        const ok = await lab.exec(b.name, ['curl', '-sf', '-m', '1', 'http://127.0.0.1/']).then(
          (r) => r.stdout.includes(`served by ${b.name}`),
          () => false,
        );
        if (ok) break;
        if (Date.now() > deadline) throw new Error(`python3 -m http.server in ${b.name} did not answer within 15 s`);
        await sleep(100);
      }
    }
    const config = lab.configFor([
      { name: 'web', vip: VIP4, port: 80, protocol: 'tcp', backends: lab.backends().map((b) => ({ address: b.ipv4, weight: WEIGHTS[b.name as keyof typeof WEIGHTS] })) },
    ]);
    sluice = await startSluice(lab, config);
  });

  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
    if (figures.length > 0) console.log(`load-tool e2e figures:\n  ${figures.join('\n  ')}`);
  });

  const http = (extra: string[]): Promise<HttpReport> =>
    lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', String(REQUESTS), '--concurrency', '8', '--duration', '60', ...extra]) as Promise<HttpReport>;

  const expectWeighted = (r: HttpReport, names: Record<string, number>): void => {
    expect(r.ok).toBe(REQUESTS);
    expect(r.unattributed).toBe(0);
    expect(r.fairness.basis).toBe('weights');
    expect(Object.keys(r.backends).sort()).toEqual(Object.keys(names).sort());
    for (const [name, weight] of Object.entries(names)) {
      const b = r.backends[name];
      expect(b?.weight, `${name} weight`).toBe(weight);
      expect(b?.expectedShare, `${name} expected share`).toBe(weight / 4);
      expect(Math.abs(b?.deviationPct ?? Infinity), `${name}: share ${b?.share} vs expected ${b?.expectedShare}`).toBeLessThanOrEqual(TOLERANCE_PCT);
    }
    expect(r.fairness.maxDeviationPct).toBeLessThanOrEqual(TOLERANCE_PCT);
  };

  it('by response body, against the given weights: every backend within 30% of its weighted share; the HTML report has its plots', async () => {
    const report = join(lab.describe().runDir, 'load-report.html');
    const r = await http(['--attribute', 'body:served by (b\\d+)', '--weights', 'b1=2,b2=1,b3=1', '--report', report]);
    expectWeighted(r, WEIGHTS);
    const html = readFileSync(report, 'utf8');
    expect((html.match(/<svg[\s>]/g) ?? []).length).toBe(3); // throughput, latency, shares (no errors)
    expect(html).toContain('Per-backend shares against configured weights');
    expect(html).not.toMatch(/<script|(src|href)="(https?:)?\/\//i);
    const shares = Object.entries(r.backends).map(([n, b]) => `${n} ${(b.share * 100).toFixed(1)}% (expected ${(b.expectedShare * 100).toFixed(0)}%, ${b.deviationPct >= 0 ? '+' : ''}${b.deviationPct}%)`);
    figures.push(`body attribution, weights given: ${r.ok}/${REQUESTS} ok, ${r.throughputRps} req/s; ${shares.join(', ')}`);
  });

  it('by the balancer\'s flow table (the server names nothing), against the weights Sluice reports', async () => {
    const r = await http(['--attribute', 'flows', '--admin-socket', lab.adminSocket(1)]);
    const byAddress = Object.fromEntries(lab.backends().map((b) => [b.ipv4, WEIGHTS[b.name as keyof typeof WEIGHTS]]));
    expectWeighted(r, byAddress);
    const shares = Object.entries(r.backends).map(([n, b]) => `${n} ${(b.share * 100).toFixed(1)}% (${b.deviationPct >= 0 ? '+' : ''}${b.deviationPct}%)`);
    figures.push(`flow-table attribution, weights from the admin API: ${r.ok}/${REQUESTS} ok; ${shares.join(', ')}`);
  });

  it('without weights the same servers look unfair (the weight-2 backend near +50%): the check can fail', async () => {
    const off = await http(['--attribute', 'body:served by (b\\d+)']);
    expect(off.fairness.basis).toBe('equal');
    const b1 = off.backends.b1?.deviationPct ?? 0;
    const on = (off.backends.b1?.share ?? 0) / 0.5 - 1;
    figures.push(`same run judged by an equal split: b1 ${b1 >= 0 ? '+' : ''}${b1}%; by its weight it would be ${(on * 100).toFixed(1)}%`);
    // +50% expected; 20% is 4 standard deviations below it.
    expect(b1).toBeGreaterThan(20);
    expect(Math.abs(on * 100)).toBeLessThanOrEqual(TOLERANCE_PCT);
  });

  it('without any attribution the run still reports, with every request counted as unattributed', async () => {
    const r = await http(['--count', '50']);
    expect(r.ok).toBe(50);
    expect(r.backends).toEqual({});
    expect(r.unattributed).toBe(50);
  });
});
