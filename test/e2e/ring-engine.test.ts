/**
 * e2e (root, namespaces): the ring engine (the default) against traffic as real hosts send it.
 * Every veth in the lab keeps the kernel's default offloads, so the client's kernel leaves TCP and
 * UDP checksums partial (TP_STATUS_CSUMNOTREADY) and hands its bulk TCP down as GSO super-frames
 * of up to 64 KiB, which its veth passes on uncut to the balancer.
 *
 * - dsr-l2 (stick lab): HTTP over IPv4 and IPv6 and UDP flows all succeed through the ring engine,
 *   which completes the checksums it is told are partial (in its addon, in the ring frame the
 *   forwarder then reads in place: most frames are never copied); 1 MiB uploads (GSO) echo back intact.
 *   The same run through the libpcap `batch` engine, which cannot see the flag, fails: the test
 *   prints both counts.
 * - ipip: the same uploads and HTTP through IP-in-IP, where a super-frame could not be
 *   encapsulated at all without being cut first.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, VIP6 } from '../../scripts/lab/topology.js';
import type { HttpReport, UdpReport } from '../../scripts/lib/reports.js';
import { e2eEnabled, engineOf, ensureBuilt, metric, scrape, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';

const enabled = e2eEnabled('e2e ring engine');

/**
 * N uploads of 1 MiB to the echo service (a line echo: it answers `hello <backend>`, then every
 * line at once), each read back and compared; sender and reader run side by side. Prints JSON.
 */
const UPLOAD_PY = String.raw`
import json, socket, sys, threading
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
ok, backends, errors = 0, {}, {}
for i in range(n):
    line = bytes([97 + i % 26]) * 1023 + b'\n'
    data = line * 1024
    try:
        s = socket.create_connection((host, port), timeout=15)
        f = s.makefile('rb')
        hello = f.readline().decode().strip().split(' ')[-1]
        t = threading.Thread(target=s.sendall, args=(data,))
        t.start()
        got, good = 0, True
        while got < len(data):
            l = f.readline()
            if not l:
                break
            good = good and l == line
            got += len(l)
        t.join()
        s.close()
        if good and got == len(data):
            ok += 1
            backends[hello] = backends.get(hello, 0) + 1
        else:
            errors['short or corrupt'] = errors.get('short or corrupt', 0) + 1
    except Exception as e:
        errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
print(json.dumps({'ok': ok, 'n': n, 'backends': backends, 'errors': errors}))
`;

interface UploadReport {
  ok: number;
  n: number;
  backends: Record<string, number>;
  errors: Record<string, number>;
}

async function uploads(lab: Lab, n: number): Promise<UploadReport> {
  const { stdout } = await lab.exec('client', ['python3', '-c', UPLOAD_PY, VIP4, String(lab.describe().ports.echo), String(n)], { timeoutMs: 120_000 });
  return JSON.parse(stdout.trim().split('\n').pop() as string) as UploadReport;
}

async function http(lab: Lab, target: string, count: number): Promise<HttpReport> {
  return (await lab.runLoad(['--mode', 'http', '--target', target, '--count', String(count), '--concurrency', '16', '--duration', '60', '--timeout', '3000'])) as HttpReport;
}

async function udp(lab: Lab, flows: number): Promise<UdpReport> {
  return (await lab.runLoad(['--mode', 'udp', '--target', `${VIP4}:53`, '--flows', String(flows), '--per-flow', '3', '--duration', '60', '--timeout', '1500'])) as UdpReport;
}

/** Offloads as the kernel set them on the client's interface (TSO on implies checksum offload on). */
async function clientOffloads(lab: Lab): Promise<string> {
  const ifname = lab.describe().client.interfaces[0].name;
  return (await lab.exec('client', ['ethtool', '-k', ifname])).stdout;
}

function counters(m: Map<string, number>): Record<string, number> {
  return {
    completed: metric(m, 'sluice_checksums_completed_total'),
    gsoFrames: metric(m, 'sluice_gso_frames_total'),
    gsoSegments: metric(m, 'sluice_gso_segments_total'),
    unverifiable: metric(m, 'sluice_checksum_unverifiable_total'),
    txErrors: metric(m, 'sluice_tx_errors_total'),
    inPlace: metric(m, 'sluice_capture_frames_in_place_total'),
    copied: metric(m, 'sluice_capture_frames_copied_total'),
  };
}

describe.skipIf(!enabled)('ring engine, dsr-l2, clients with the kernel default offloads', () => {
  let lab: Lab;
  let sluice: RunningSluice | null = null;

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick' });
  });
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  it('HTTP v4/v6, UDP and 1 MiB uploads pass through the ring engine; the libpcap engine fails the same run', async () => {
    const features = await clientOffloads(lab);
    expect(features).toMatch(/^tcp-segmentation-offload: on/m);

    // The default engine: the ring.
    sluice = await startSluice(lab, lab.configFor());
    expect(await engineOf(sluice)).toBe('ring');
    const h4 = await http(lab, `${VIP4}:80`, 200);
    const h6 = await http(lab, `[${VIP6}]:80`, 200);
    const u = await udp(lab, 200);
    const up = await uploads(lab, 5);
    // A trickle (about 1 datagram per ms over 10 flows): what the ring's block timeout adds to a round trip.
    const slow = (await lab.runLoad(['--mode', 'udp', '--target', `${VIP4}:53`, '--flows', '10', '--per-flow', '50', '--interval', '10', '--duration', '30'])) as UdpReport;
    const ring = counters(await scrape(lab));
    await stopSluice(sluice);
    sluice = null;

    // The same run through libpcap, which cannot see TP_STATUS_CSUMNOTREADY.
    sluice = await startSluice(lab, lab.configFor(undefined, { file: 'config-batch.json', extra: { capture: { engine: 'batch' } } }));
    expect(await engineOf(sluice)).toBe('batch');
    const b4 = await http(lab, `${VIP4}:80`, 20);
    const bu = await udp(lab, 20);
    const batch = counters(await scrape(lab));
    await stopSluice(sluice);
    sluice = null;

    console.log(
      `ring engine e2e (dsr-l2): ring: http v4 ${h4.ok}/200, http v6 ${h6.ok}/200, udp flows ${u.flowsComplete}/200, 1 MiB uploads ${up.ok}/5 ${JSON.stringify(up.backends)}; ` +
        `checksums completed ${ring.completed}, GSO frames ${ring.gsoFrames} -> ${ring.gsoSegments} segments, tx errors ${ring.txErrors}, frames read in place ${ring.inPlace}, copied ${ring.copied}; ` +
        `UDP round trip at ~1k datagrams/s p50 ${slow.latencyMs.p50.toFixed(2)} ms, p99 ${slow.latencyMs.p99.toFixed(2)} ms | ` +
        `batch (libpcap): http v4 ${b4.ok}/20, udp flows ${bu.flowsComplete}/20, frames passed unchecked ${batch.unverifiable}`,
    );
    expect(h4.ok, JSON.stringify(h4.errorKinds)).toBe(200);
    expect(h6.ok, JSON.stringify(h6.errorKinds)).toBe(200);
    expect(u.flowsComplete).toBe(200);
    expect(u.flowsSplit).toBe(0);
    expect(up.ok, JSON.stringify(up.errors)).toBe(5);
    expect(slow.flowsComplete).toBe(10);
    expect(ring.completed).toBeGreaterThan(0);
    expect(ring.gsoFrames).toBeGreaterThan(0);
    expect(ring.gsoSegments).toBeGreaterThan(ring.gsoFrames);
    expect(ring.txErrors).toBe(0);
    // TPACKET_V2 (the default): frames are read where the kernel wrote them; only GSO super-frames
    // (too big for a ring frame: TP_STATUS_COPY) are copied. TPACKET_V3 (SLUICE_RING_TPACKET=3)
    // copies every frame that fits a slot and reads only super-frames in place, in their block.
    if (process.env.SLUICE_RING_TPACKET === '3') expect([ring.inPlace <= ring.gsoFrames, ring.copied > ring.inPlace]).toEqual([true, true]);
    else expect(ring.inPlace).toBeGreaterThan(ring.copied);
    // Without the kernel's flag the partial checksums leave as they came and backends drop them.
    expect(b4.ok).toBeLessThan(20);
    expect(bu.flowsComplete).toBeLessThan(20);
    expect(batch.unverifiable).toBeGreaterThan(0);
  });
});

describe.skipIf(!enabled)('ring engine, ipip, clients with the kernel default offloads', () => {
  let lab: Lab;
  let sluice: RunningSluice | null = null;

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick', ipip: true });
    sluice = await startSluice(lab, lab.configFor());
  });
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  it('1 MiB uploads (GSO super-frames cut, then encapsulated), HTTP and UDP through IP-in-IP', async () => {
    const up = await uploads(lab, 5);
    const h4 = await http(lab, `${VIP4}:80`, 100);
    const u = await udp(lab, 100);
    const c = counters(await scrape(lab));
    console.log(
      `ring engine e2e (ipip): 1 MiB uploads ${up.ok}/5 ${JSON.stringify(up.backends)}, http v4 ${h4.ok}/100, udp flows ${u.flowsComplete}/100; ` +
        `checksums completed ${c.completed}, GSO frames ${c.gsoFrames} -> ${c.gsoSegments} segments, encap_too_big ${metric(await scrape(lab), 'sluice_dropped_packets_total', { reason: 'encap_too_big' })}`,
    );
    expect(up.ok, JSON.stringify(up.errors)).toBe(5);
    expect(h4.ok, JSON.stringify(h4.errorKinds)).toBe(100);
    expect(u.flowsComplete).toBe(100);
    expect(c.gsoFrames).toBeGreaterThan(0);
    expect(c.completed).toBeGreaterThan(0);
  });
});
