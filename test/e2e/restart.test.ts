/**
 * e2e (needs root): the data plane outlives its control process, and restarts and upgrades keep
 * every connection (issue 10, items 2 and 3).
 *
 * Lab: topology "stick" (scripts/lab/topology.ts) with 6 backends and a client with two paths
 * (10.99.1.2, and 10.99.9.2 as an MPTCP `subflow` endpoint); the backends run the lab's echo and
 * HTTP servers and scripts/mptcp-peer.py on :8080. Client, router and backends keep the kernel's
 * defaults (offloads included); nothing on Sluice's interface is changed.
 *
 *  a. Control process killed: SIGKILL of `sluice run` under 100 long-lived echo connections and a
 *     stream of new HTTP connections. The data plane forwards on (0 broken, every new connection
 *     answered); a new `sluice run` adopts the same data-plane pid, and /flows shows the same
 *     flows on the same backends.
 *  b. Hitless restart: 200 long-lived echo connections and 20 MPTCP connections (2 subflows each,
 *     held open), on 3 backends; a reload to 6 backends moves the table pick of about half of the
 *     flows away from their backends (counted with /explain). Then `sluice restart` + `sluice run`
 *     (same build: the data plane is adopted), and again with a rebuilt copy of Sluice (another
 *     build identity: the new data plane takes over the flow table). Result: 0 broken, every
 *     MPTCP connection still has both subflows. The same run with SLUICE_HANDOVER=off (the
 *     control process stops its data plane, the next one starts with an empty table) shows the
 *     breakage; both counts are printed.
 * Every wait is bounded; the lab is torn down in afterAll, also on failure.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VIP4 } from '../../scripts/lab/topology.js';
import type { HttpReport, LongReport } from '../../scripts/lib/reports.js';
import { e2eEnabled, sleep } from './sluice-harness.js';
import { RestartRig, processAlive, waitFor } from './restart-helpers.js';

const enabled = e2eEnabled('e2e restart: the data plane outlives its control process; hitless restart and upgrade');

interface ScenarioResult {
  longBroken: number;
  longEstablished: number;
  moved: number;
  tracked: number;
  mptcpKept: number;
  mptcpConnections: number;
  origins: string[];
  brokenReasons: Record<string, number>;
}

describe.skipIf(!enabled)('restart: adoption after SIGKILL, hitless restart and upgrade (6 backends, 2 client paths)', () => {
  let rig: RestartRig;

  beforeAll(async () => {
    rig = await RestartRig.create();
  }, 120_000);

  afterAll(async () => {
    await rig?.destroy('restart e2e');
  });

  it('a: SIGKILL of the control process under 100 long-lived connections and a stream of new ones: 0 broken, the next control process adopts the same data plane and flows', async () => {
    rig.writeConfig(3);
    rig.control = await rig.startControl(rig.cli1, {});
    const long = rig.startLong(100, 60);
    await rig.longEstablished(long, 100);
    const before = await rig.flowsOnPort(7);
    const dp = (await rig.status()).dataplane.pid as number;
    expect(before.size).toBe(100);

    // New connections all through the kill and the restart.
    const stream = await rig.killControlAndStartNext(dp);
    const st = await rig.status();
    expect(st.dataplane.pid).toBe(dp);
    expect(st.dataplane.origin).toBe('adopted');
    const after = await rig.flowsOnPort(7);
    const same = [...before].filter(([k, b]) => after.get(k)?.backend === b.backend).length;
    const http = await stream;
    await sleep(2000);
    const rep = (await long.stop()) as LongReport;
    rig.figures.push(
      `a. SIGKILL of the control process: ${rep.broken} of ${rep.established} long-lived connections broken; new connections meanwhile ${http.ok} ok, ${http.failed} failed of ${http.requests}; data plane pid ${dp} adopted (origin ${st.dataplane.origin}, ${st.dataplane.keptFlows} flows); ${same} of ${before.size} echo flows listed with the same backend after adoption`,
    );
    expect(rep.established).toBe(100);
    expect(rep.broken).toBe(0);
    expect(http.failed).toBe(0);
    expect(http.ok).toBe(http.requests);
    expect(same).toBe(before.size);

    // A clean stop still stops the data plane, and removes the table file.
    await rig.stopControl(rig.control);
    rig.control = null;
    await waitFor('the data plane to exit after a clean stop', 10_000, async () => (processAlive(dp) ? undefined : true));
    expect(existsSync(`${rig.socket}.flows`)).toBe(false);
  }, 240_000);

  it('a, with the handover off (SLUICE_HANDOVER=off): the same SIGKILL stops forwarding until a new control process starts a new data plane (the comparison)', async () => {
    const env = { SLUICE_HANDOVER: 'off' };
    rig.writeConfig(3);
    rig.control = await rig.startControl(rig.cli1, env);
    const long = rig.startLong(100, 60);
    await rig.longEstablished(long, 100);
    const dp = (await rig.status()).dataplane.pid as number;
    const stream = rig.lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', '400', '--rate', '40', '--concurrency', '4', '--duration', '30']) as Promise<HttpReport>;
    await sleep(1500);
    const killed = rig.control;
    killed.child.kill('SIGKILL');
    expect(await rig.exited(killed, 5000)).toBe(true);
    rig.control = null;
    await sleep(3000);
    const alive = processAlive(dp);
    rig.control = await rig.startControl(rig.cli1, env);
    const st = await rig.status();
    const http = await stream;
    await sleep(2000);
    const rep = (await long.stop()) as LongReport;
    rig.figures.push(
      `a, handover off: after SIGKILL of the control process the data plane ${alive ? 'lived on' : 'exited'}; the next one was ${st.dataplane.origin} (pid ${st.dataplane.pid}); long-lived: ${rep.broken} broken, ${rep.stalled} of ${rep.established} stalled over ${rep.stallThresholdMs} ms; new connections meanwhile ${http.ok} ok, ${http.failed} failed of ${http.requests}`,
    );
    expect(alive).toBe(false);
    expect(st.dataplane.origin).toBe('started');
    expect(rep.stalled).toBeGreaterThan(0);
    await rig.stopControl(rig.control);
    rig.control = null;
  }, 240_000);

  /** One run of scenario b; `handover` false runs every control process with SLUICE_HANDOVER=off. */
  const scenario = async (handover: boolean): Promise<ScenarioResult> => {
    const env: NodeJS.ProcessEnv = handover ? {} : { SLUICE_HANDOVER: 'off' };
    const tag = handover ? 'on' : 'off';
    // 3 -> 6 backends: the table picks of about half the flows move away from their backends.
    const { long, mptcp, moved, tracked } = await rig.loadThenReload({ env, tag, long: 200, mptcp: 20, seed: handover ? 1000 : 2000 });
    await sleep(1000);
    const afterReload = ((await long.snapshot()) as LongReport).broken;
    rig.figures.push(`  handover ${tag}: ${afterReload} long-lived connections broken by the reload itself (before any restart)`);

    const origins: string[] = [];
    rig.control = await rig.restartControl(rig.control, rig.cli1);
    origins.push((await rig.status()).dataplane.origin ?? '?');
    await sleep(3000);
    rig.figures.push(`  handover ${tag}: ${((await long.snapshot()) as LongReport).broken} broken after the same-build restart`);
    rig.control = await rig.restartControl(rig.control, rig.cli2);
    origins.push((await rig.status()).dataplane.origin ?? '?');
    await sleep(3000);

    const mp = await mptcp.release();
    const kept = mp.perConnection.filter((c) => c.error === null && c.subflows === 2 && c.subflowsAfterHold === 2).length;
    const rep = (await long.stop()) as LongReport;
    await rig.stopControl(rig.control);
    rig.control = null;
    return {
      longBroken: rep.broken,
      longEstablished: rep.established,
      moved,
      tracked,
      mptcpKept: kept,
      mptcpConnections: mp.connections,
      origins,
      brokenReasons: rep.errorKinds,
    };
  };

  it('b: 200 long-lived TCP + 20 MPTCP connections, 3 -> 6 backends, restart (same build, then a rebuilt one): 0 broken, both subflows kept; with the handover off the moved flows break', async () => {
    const on = await scenario(true);
    const off = await scenario(false);
    const line = (name: string, r: ScenarioResult): string =>
      `  handover ${name}: ${r.moved} of ${r.tracked} tracked flows (as many as /explain lists per client) had their table picks moved by the reload (${Math.round((100 * r.moved) / Math.max(1, r.tracked))}%); after the restarts (data plane ${r.origins.join(', then ')}): ${r.longBroken} of ${r.longEstablished} long-lived TCP connections broken ${JSON.stringify(r.brokenReasons)}, ${r.mptcpKept} of ${r.mptcpConnections} MPTCP connections kept both subflows`;
    rig.figures.push(`b. hitless restart:\n${line('on', on)}\n${line('off (SLUICE_HANDOVER=off)', off)}`);
    expect(on.moved / on.tracked).toBeGreaterThanOrEqual(0.3);
    expect(on.origins).toEqual(['adopted', 'replaced']);
    expect(on.longEstablished).toBe(200);
    expect(on.longBroken).toBe(0);
    expect(on.mptcpKept).toBe(20);
    // The comparison: without the handover the flows whose pick moved break.
    expect(off.origins).toEqual(['started', 'started']);
    expect(off.moved / off.tracked).toBeGreaterThanOrEqual(0.3);
    expect(off.longBroken).toBeGreaterThan(0);
    expect(off.mptcpKept).toBeLessThan(20);
  }, 600_000);
});
