/**
 * e2e (root, namespaces): the ring engine transmitting through the mapped TX ring
 * (SLUICE_TX=ring) with PACKET_QDISC_BYPASS (SLUICE_QDISC_BYPASS=1), dsr-l2 stick lab, clients
 * with the kernel's default offloads. Real TCP (HTTP over IPv4 and IPv6) and UDP flows pass,
 * /status names the transmit path, and nothing is counted as a transmit error. The default path
 * (sendmmsg) is covered by every other e2e file.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, VIP6 } from '../../scripts/lab/topology.js';
import type { HttpReport, UdpReport } from '../../scripts/lib/reports.js';
import { e2eEnabled, engineOf, ensureBuilt, metric, scrape, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';

const enabled = e2eEnabled('e2e tx ring');

describe.skipIf(!enabled)('ring engine transmitting through the TX ring with QDISC_BYPASS, dsr-l2', () => {
  let lab: Lab;
  let sluice: RunningSluice | null = null;

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick' });
    sluice = await startSluice(lab, lab.configFor(), 1, 20_000, { SLUICE_TX: 'ring', SLUICE_QDISC_BYPASS: '1' });
  });
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  it('HTTP v4/v6 and UDP flows pass; status names the transmit path; no transmit errors', async () => {
    expect(await engineOf(sluice!)).toBe('ring (tx-ring+qdisc-bypass)');
    const load = (args: string[]): Promise<unknown> => lab.runLoad(args);
    const h4 = (await load(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '200', '--concurrency', '16', '--duration', '60', '--timeout', '3000'])) as HttpReport;
    const h6 = (await load(['--mode', 'http', '--target', `[${VIP6}]:80`, '--count', '200', '--concurrency', '16', '--duration', '60', '--timeout', '3000'])) as HttpReport;
    const u = (await load(['--mode', 'udp', '--target', `${VIP4}:53`, '--flows', '200', '--per-flow', '3', '--duration', '60', '--timeout', '1500'])) as UdpReport;
    const m = await scrape(lab);
    const tx = metric(m, 'sluice_tx_frames_total');
    const txErrors = metric(m, 'sluice_tx_errors_total');
    console.log(`tx ring e2e: http v4 ${h4.ok}/200, http v6 ${h6.ok}/200, udp flows ${u.flowsComplete}/200 (split ${u.flowsSplit}); tx frames ${tx}, tx errors ${txErrors}`);
    expect(h4.ok, JSON.stringify(h4.errorKinds)).toBe(200);
    expect(h6.ok, JSON.stringify(h6.errorKinds)).toBe(200);
    expect(u.flowsComplete).toBe(200);
    expect(u.flowsSplit).toBe(0);
    expect(tx).toBeGreaterThan(0);
    expect(txErrors).toBe(0);
  });
});
