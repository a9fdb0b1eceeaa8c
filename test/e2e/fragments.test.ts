/**
 * e2e (root: network namespaces): fragmented UDP, IPv4 options and IPv6 extension headers
 * through Sluice to a 3-backend service, dsr-l2, clients at the kernel's default settings.
 *
 * - 500 datagrams of 4000 bytes over IPv4 and over IPv6 (the client's kernel fragments them to
 *   the 1500-byte path): each arrives whole at exactly one backend (the backend's kernel
 *   reassembles; a datagram whose fragments were split between backends never arrives) and is
 *   answered.
 * - The same with fragments crafted by the client (scripts/fragment-client.py, raw socket) and
 *   the first fragment sent last: the early fragments wait in Sluice's hold and follow it.
 * - TCP with an IPv4 option, and TCP and UDP with IPv6 hop-by-hop and destination-options
 *   headers, reach the VIP's service and get answers.
 * Every wait is bounded (the client's --timeout, vitest's timeouts); the lab is torn down in afterAll.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildFrame } from '../../src/packet/build.js';
import { Lab, VIP4, VIP6 } from '../../scripts/lab/topology.js';
import { REPO, e2eEnabled, ensureBuilt, metric, scrape, sleep, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';

const enabled = e2eEnabled('e2e fragments, IP options and IPv6 extension headers');
const CLIENT = join(REPO, 'scripts', 'fragment-client.py');
const DATAGRAMS = 500;
const SIZE = 4000;

interface UdpResult {
  sent: number;
  answered: number;
}

describe.skipIf(!enabled)('fragments, IP options and IPv6 extension headers, dsr-l2', () => {
  let lab: Lab;
  let sluice: RunningSluice;
  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick' });
    // The lab's services plus UDP over IPv6 (the defaults have none).
    sluice = await startSluice(lab, lab.configFor(SERVICES()));
    // Warm-up, not measured: neighbours resolved on every hop before the counted runs.
    for (const vip of [VIP4, VIP6]) await client(['udp', '--vip', vip, '--port', '53', '--count', '20', '--size', '100', '--timeout', '3']);
  }, 120_000);
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  async function client(args: string[]): Promise<unknown> {
    const r = await lab.exec('client', ['python3', CLIENT, ...args], { timeoutMs: 60_000 });
    return JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as unknown;
  }

  /** Per backend: how many datagrams it received whole, and from how many client ports. */
  async function backendUdp(): Promise<{ datagrams: number; bytes: number; ports: Map<string, number> }> {
    let datagrams = 0;
    let bytes = 0;
    const ports = new Map<string, number>();
    for (const [name, s] of Object.entries(await lab.allBackendStats())) {
      datagrams += s.udp.datagrams;
      bytes += s.udp.bytes;
      for (const [flow, n] of Object.entries(s.udp.flows)) {
        expect(n, `${flow} sent one datagram but ${name} saw ${n}`).toBe(1);
        ports.set(flow, (ports.get(flow) ?? 0) + 1);
      }
    }
    return { datagrams, bytes, ports };
  }

  const cases = [
    { family: 'IPv4', vip: VIP4, reorder: false },
    { family: 'IPv6', vip: VIP6, reorder: false },
    { family: 'IPv4', vip: VIP4, reorder: true },
    { family: 'IPv6', vip: VIP6, reorder: true },
  ];
  it.each(cases)('$family: 500 UDP datagrams of 4000 bytes, reordered=$reorder, each whole at exactly one backend and answered', async ({ vip, reorder }) => {
    await lab.resetStats();
    const before = await scrape(lab);
    const args = ['udp', '--vip', vip, '--port', '53', '--count', String(DATAGRAMS), '--size', String(SIZE), '--timeout', '15'];
    const r = (await client(reorder ? [...args, '--reorder'] : args)) as UdpResult;
    const b = await backendUdp();
    const after = await scrape(lab);
    const d = (name: string): number => metric(after, name) - metric(before, name);
    const drops = [...after.entries()].filter(([k, v]) => k.startsWith('sluice_dropped_packets_total') && v - (before.get(k) ?? 0) > 0).map(([k, v]) => `${k} +${v - (before.get(k) ?? 0)}`);
    console.log(`drops: ${drops.join(', ') || 'none'}; capture dropped +${d('sluice_capture_dropped_total')}`);
    console.log(
      `fragments ${vip} reorder=${reorder}: sent ${r.sent}, answered ${r.answered}, backends got ${b.datagrams} whole (${b.bytes} bytes) from ${b.ports.size} ports; ` +
        `datagrams ${d('sluice_fragment_datagrams_total')}, matched ${d('sluice_fragments_matched_total')}, held ${d('sluice_fragments_held_total')}, released ${d('sluice_fragments_released_total')}, expired ${d('sluice_fragments_expired_total')}`,
    );
    expect(r.sent).toBe(DATAGRAMS);
    expect(b.datagrams).toBe(DATAGRAMS);
    expect(b.bytes).toBe(DATAGRAMS * SIZE);
    expect(b.ports.size).toBe(DATAGRAMS);
    for (const n of b.ports.values()) expect(n).toBe(1);
    expect(r.answered).toBe(DATAGRAMS);
    expect(d('sluice_fragment_datagrams_total')).toBe(DATAGRAMS);
    if (reorder) expect(d('sluice_fragments_released_total')).toBeGreaterThanOrEqual(DATAGRAMS);
    expect(d('sluice_fragments_expired_total')).toBe(0);
  }, 120_000);

  it('TCP with an IPv4 option, TCP and UDP with IPv6 hop-by-hop and destination options: answered', async () => {
    const v4 = (await client(['options', '--vip', VIP4])) as Record<string, string>;
    const v6 = (await client(['options', '--vip', VIP6])) as Record<string, string>;
    console.log(`options: v4 ${JSON.stringify(v4)}, v6 ${JSON.stringify(v6)}`);
    expect(v4.tcp).toMatch(/^HTTP\/1\.[01] 200/);
    expect(v4.udp).toMatch(/^\S+ 1$/);
    expect(v6.tcp).toMatch(/^HTTP\/1\.[01] 200/);
    expect(v6.udp).toMatch(/^\S+ 1$/);
    const m = await scrape(lab);
    expect(metric(m, 'sluice_dropped_packets_total', { reason: 'bad_ipv4_options' })).toBe(0);
    expect(metric(m, 'sluice_dropped_packets_total', { reason: 'bad_ipv6_extension_header' })).toBe(0);
  }, 60_000);

  const SERVICES = (): ReturnType<Lab['defaultServices']> => [...lab.defaultServices(), { name: 'dns6', vip: VIP6, port: 53, protocol: 'udp' }];

  /** Inject 40 tagged UDP frames (802.1Q and QinQ) on the balancer's segment from the router; what the backends delivered and Sluice counted. */
  async function injectTagged(): Promise<{ delivered: number; stripped: number; forwarded: number }> {
    // A tagged client segment is what the lab does not have; the backend's kernel has no VLAN
    // device, so a datagram it delivers to its server arrived untagged. One flow per frame.
    const src = lab.describe().client.interfaces.find((i) => i.ipv4 !== null)?.ipv4;
    expect(src).toBeTruthy();
    const frames = [];
    for (let i = 0; i < 40; i++) {
      const vlan = i % 2 === 0 ? { id: 100 } : { id: 100, outerId: 200 };
      const f = buildFrame({ eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' }, vlan, ipv4: { src: src!, dst: VIP4 }, udp: { sport: 30000 + i, dport: 53 }, payload: `tagged ${i}` });
      frames.push({ name: `tagged-${i}`, hex: f.toString('hex') });
    }
    const file = join(lab.describe().runDir, 'tagged.json');
    writeFileSync(file, JSON.stringify(frames));
    await lab.resetStats();
    const before = await scrape(lab);
    const rtIf = lab.describe().router.interfaces.find((i) => i.ipv4?.startsWith('10.99.0.'))!.name;
    await lab.exec('router', lab.nodeArgv('inject-frames', ['--interface', rtIf, '--dst-mac', lab.mac('lb', 'sl-lb0'), '--frames', file]));
    await sleep(500);
    const after = await scrape(lab);
    const b = await backendUdp();
    const d = (name: string): number => metric(after, name) - metric(before, name);
    return { delivered: b.datagrams, stripped: d('sluice_vlan_tags_stripped_total'), forwarded: d('sluice_tx_frames_total') };
  }

  it('802.1Q and QinQ tagged frames reach the untagged backend segment untagged (vlan.egress default); with "keep" they would not', async () => {
    const untagged = await injectTagged();
    // The opposite policy, to show the check can fail: the file is rewritten and the watcher applies it.
    const gen = metric(await scrape(lab), 'sluice_config_generation');
    lab.configFor(SERVICES(), { extra: { vlan: { egress: 'keep' } } });
    for (let i = 0; i < 100 && metric(await scrape(lab), 'sluice_config_generation') <= gen; i++) await sleep(100);
    const kept = await injectTagged();
    console.log(
      `vlan: 40 tagged frames; egress untagged: ${untagged.stripped} stripped, ${untagged.delivered} delivered by the backends; ` +
        `egress keep: ${kept.forwarded} forwarded with their tags, ${kept.delivered} delivered`,
    );
    expect(untagged.stripped).toBe(40);
    expect(untagged.delivered).toBe(40);
    expect(kept.stripped).toBe(0);
    expect(kept.forwarded).toBeGreaterThanOrEqual(40);
    expect(kept.delivered).toBe(0);
  }, 60_000);
});
