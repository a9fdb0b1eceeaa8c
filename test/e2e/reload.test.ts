/**
 * e2e: config changes under live traffic. One-armed lab (client -> router -> Sluice -> 3 backends,
 * a 4th added on the fly), 100 long-lived TCP connections to the echo service, each sending a
 * line every 100 ms and expecting its echo.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, type ConfigService } from '../../scripts/lab/topology.js';
import type { HttpReport, LongReport } from '../../scripts/lib/reports.js';
import { admin, e2eEnabled, ensureBuilt, metric, scrape, sleep, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';

const enabled = e2eEnabled('e2e reload under live traffic');

describe.skipIf(!enabled)('reloads keep established connections', () => {
  let lab: Lab;
  let sluice: RunningSluice;
  let configPath: string;

  const services = (backends: { address: string; weight?: number }[]): ConfigService[] => [
    { name: 'web', vip: VIP4, port: 80, protocol: 'tcp', backends },
    { name: 'echo', vip: VIP4, port: 7, protocol: 'tcp', backends },
  ];
  /** Replace the config file the way an editor or config management does: write aside, rename over. */
  const writeConfig = (backends: { address: string; weight?: number }[]): void => {
    const tmp = lab.configFor(services(backends), { file: 'next.json' });
    renameSync(tmp, configPath);
  };
  const waitGeneration = async (g: number): Promise<void> => {
    for (let i = 0; i < 100; i++) {
      const s = await admin<{ generation: number }>(sluice, 'GET', '/status');
      if (s.generation >= g) return;
      await sleep(100);
    }
    throw new Error(`generation ${g} not reached`);
  };

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick' });
    configPath = lab.configFor(services(lab.backends().map((b) => ({ address: b.ipv4 }))));
    sluice = await startSluice(lab, configPath);
  });
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  it('add a backend and change weights: 0 of 100 connections break, new ones reach the new backend; remove one: only its connections move; an invalid file is refused', async () => {
    const load = lab.startLoad(['--mode', 'long', '--target', `${VIP4}:7`, '--connections', '100', '--interval', '100', '--stall-ms', '1000', '--duration', '60']);
    let snap = await (async () => {
      for (let i = 0; i < 50; i++) {
        await sleep(200);
        const s = (await load.snapshot()) as LongReport;
        if (s.established === 100) return s;
      }
      throw new Error('100 long-lived connections did not establish');
    })();
    expect(Object.keys(snap.backends).length).toBe(3);

    // 1. Add b4 and give b1 weight 3, by rewriting the file (the watcher applies it).
    const b4 = await lab.addBackend();
    const [b1, b2, b3] = lab.backends();
    writeConfig([{ address: b1.ipv4, weight: 3 }, { address: b2.ipv4 }, { address: b3.ipv4 }, { address: b4.ipv4 }]);
    await waitGeneration(2);
    await sleep(1500);
    snap = (await load.snapshot()) as LongReport;
    expect(snap.broken, JSON.stringify(snap.perConnection.filter((c) => c.broken))).toBe(0);
    expect(snap.stalled).toBe(0);
    const fresh = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '120', '--concurrency', '8', '--duration', '60'])) as HttpReport;
    expect(fresh.ok).toBe(120);
    expect(fresh.backends[b4.name]?.count ?? 0).toBeGreaterThan(0);
    // Weight 3 of 6: b1 takes about half of the new connections.
    expect(fresh.backends[b1.name].share).toBeGreaterThan(0.3);

    // 2. An invalid file: refused, counted, and traffic keeps flowing on generation 2.
    const before = await scrape(lab);
    writeFileSync(`${configPath}.tmp`, '{ "interface": "sl-lb0", "services": [ { "name": "web" } ] }');
    renameSync(`${configPath}.tmp`, configPath);
    for (let i = 0; i < 50; i++) {
      if (metric(await scrape(lab), 'sluice_config_reloads_total', { result: 'failed' }) > metric(before, 'sluice_config_reloads_total', { result: 'failed' })) break;
      await sleep(100);
    }
    const after = await scrape(lab);
    expect(metric(after, 'sluice_config_reloads_total', { result: 'failed' })).toBe(metric(before, 'sluice_config_reloads_total', { result: 'failed' }) + 1);
    expect(metric(after, 'sluice_config_generation')).toBe(2);
    const still = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '40', '--concurrency', '4', '--duration', '60'])) as HttpReport;
    expect(still.ok).toBe(40);

    // 3. Remove b3: its connections move (and break: b3's peer state is gone), the others stay untouched.
    writeConfig([{ address: b1.ipv4, weight: 3 }, { address: b2.ipv4 }, { address: b4.ipv4 }]);
    await waitGeneration(3);
    await sleep(1500);
    const report = (await load.stop()) as LongReport;
    const others = report.perConnection.filter((c) => c.backend !== b3.name);
    const onB3 = report.perConnection.filter((c) => c.backend === b3.name);
    expect(onB3.length).toBeGreaterThan(0);
    expect(others.filter((c) => c.broken || c.stalled), 'connections to backends that stayed').toEqual([]);
    expect(others.length + onB3.length).toBe(100);
    console.log(`reload e2e: ${others.length} connections on backends that stayed: 0 broken; ${onB3.filter((c) => c.broken).length} of ${onB3.length} on the removed backend broke`);
  }, 120_000);
});
