/**
 * e2e: the other two shapes of deployment.
 * - split: client -> router -> Sluice ingress sl-lbi (its own link) ... egress sl-lb0 on the
 *   backend segment (3 backends, VIPs on lo). A frame is never sent back where it came from.
 * - ipip: one-armed Sluice encapsulates to 3 backends whose userspace decapsulator (raw socket
 *   in, TUN out: this kernel has no IPIP module) hands the inner packet to the real servers.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, VIP6 } from '../../scripts/lab/topology.js';
import type { HttpReport, UdpReport } from '../../scripts/lib/reports.js';
import { e2eEnabled, ensureBuilt, metric, scrape, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';

const enabled = e2eEnabled('e2e deployment modes (split, ipip)');

describe.skipIf(!enabled)('split ingress and egress interfaces, dsr-l2', () => {
  let lab: Lab;
  let sluice: RunningSluice;
  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'split' });
    sluice = await startSluice(lab, lab.configFor());
  });
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  it('HTTP and UDP over IPv4 and IPv6 all succeed on every backend', async () => {
    const http = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '150', '--concurrency', '10', '--duration', '60'])) as HttpReport;
    expect(http.ok).toBe(150);
    expect(Object.keys(http.backends)).toHaveLength(3);
    const udp = (await lab.runLoad(['--mode', 'udp', '--target', `${VIP4}:53`, '--flows', '150', '--per-flow', '4', '--duration', '60'])) as UdpReport;
    expect(udp.flowsComplete).toBe(150);
    expect(udp.flowsSplit).toBe(0);
    const v6 = (await lab.runLoad(['--mode', 'http', '--target', `[${VIP6}]:80`, '--count', '60', '--concurrency', '6', '--duration', '60'])) as HttpReport;
    expect(v6.ok).toBe(60);
    const m = await scrape(lab);
    expect(metric(m, 'sluice_dropped_packets_total', { reason: 'loop' })).toBe(0);
    expect(metric(m, 'sluice_tx_errors_total')).toBe(0);
  });
});

describe.skipIf(!enabled)('ipip to backends with a userspace decapsulator', () => {
  let lab: Lab;
  let sluice: RunningSluice;
  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick', ipip: true });
    sluice = await startSluice(lab, lab.configFor(undefined, { forwarding: 'ipip' }));
  });
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  it('real TCP (HTTP, 1 MB responses) and UDP end to end through IP-in-IP', async () => {
    const http = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '90', '--concurrency', '6', '--duration', '60'])) as HttpReport;
    expect(http.failed, JSON.stringify(http.errorKinds)).toBe(0);
    expect(Object.keys(http.backends)).toHaveLength(3);
    // Bigger transfers: the client's ACK stream goes through the tunnel for the whole transfer.
    const big = (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--path', '/bytes?n=1048576', '--count', '12', '--concurrency', '3', '--duration', '60'])) as HttpReport;
    expect(big.ok).toBe(12);
    const udp = (await lab.runLoad(['--mode', 'udp', '--target', `${VIP4}:53`, '--flows', '60', '--per-flow', '3', '--duration', '60'])) as UdpReport;
    expect(udp.flowsComplete).toBe(60);
    let decapsulated = 0;
    for (const b of lab.backends()) decapsulated += Number((await lab.decapStats(b.index)).decapsulated ?? 0);
    expect(decapsulated).toBeGreaterThan(90 * 3);
  });

  it('IPv6 VIP carried in IPv6 to the backends', async () => {
    const v6 = (await lab.runLoad(['--mode', 'http', '--target', `[${VIP6}]:80`, '--count', '45', '--concurrency', '5', '--duration', '60'])) as HttpReport;
    expect(v6.failed, JSON.stringify(v6.errorKinds)).toBe(0);
    expect(v6.ok).toBe(45);
  });
});
