/**
 * e2e: MPTCP-aware subflow steering with the kernel's own MPTCP.
 *
 * Lab: a client with two paths (10.99.1.2 and 10.99.9.2, an MPTCP `subflow` endpoint on the
 * second) -> router -> Sluice (dsr-l2, one-armed) -> 3 backends that hold the VIP on lo and run
 * scripts/mptcp-peer.py (an MPTCP listener on :8080). Each client connection sends its request
 * first, reads 1 MiB and checks it byte for byte, waits for its second subflow (the kernel opens
 * the MP_JOIN from 10.99.9.2 to the VIP ~1 ms after the third ACK), asks the server which
 * subflows it holds (MPTCP_INFO + MPTCP_SUBFLOW_ADDRS) and closes.
 *
 *  1. Steering on: every connection ends with 2 subflows on ONE backend (client view, the
 *     serving backend's view, and `ss -tni` on every backend for a batch held open), and the
 *     Sluice counters say every token was learned and every join steered.
 *  2. The third ACK lost (an nft rule on the router drops the pure ACK carrying the 20-byte
 *     MP_CAPABLE for about half of the connections): the key is learned from the client's first
 *     data segment (22-byte MP_CAPABLE) and the joins still reach the right backend.
 *  3. Plain TCP to the same MPTCP service is unaffected and teaches Sluice nothing.
 *  4. Steering off ("mptcp": false, by reload): joins are hashed like new flows and most of them
 *     hit a backend that resets them, so connections stay single-path: the checks of 1 fail.
 *  5. ipip (its own lab, userspace decapsulators on the backends): the checks of 1 hold too.
 */
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, type ConfigService } from '../../scripts/lab/topology.js';
import { admin, e2eEnabled, ensureBuilt, metric, scrape, sleep, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';
import { ssRecords } from './explain-helpers.js';
import { MIB, PATH1, PATH2, PEER, PORT, connectionProblems, peerClientArgs, serverRecordsOf, startPeerServers, type ClientReport, type MptcpCounters, type PeerClientOptions, type ServerRecord } from './mptcp-helpers.js';

const enabled = e2eEnabled('e2e MPTCP subflow steering');

const NFT_TABLE = 'sl_mptcp_e2e';

describe.skipIf(!enabled)('MPTCP subflow steering with real kernel MPTCP (2 client paths, 3 backends)', () => {
  let lab: Lab;
  let sluice: RunningSluice | undefined;
  let configPath: string;
  let dir: string;
  let onCount = 0;
  let onTwo = 0;

  const services = (mptcp: boolean): ConfigService[] => [{ name: 'mp', vip: VIP4, port: PORT, protocol: 'tcp', mptcp, mptcpUnknownJoin: 'drop' }];

  const counters = async (): Promise<MptcpCounters> => {
    const m = await scrape(lab);
    return {
      learned: metric(m, 'sluice_mptcp_connections_learned_v1_total'),
      steered: metric(m, 'sluice_mptcp_joins_steered_total'),
      unknown: metric(m, 'sluice_mptcp_joins_unknown_token_total'),
      droppedUnknown: metric(m, 'sluice_dropped_packets_total', { reason: 'mptcp_join_unknown_token' }),
      collisions: metric(m, 'sluice_mptcp_token_collisions_total'),
    };
  };
  const delta = (a: MptcpCounters, b: MptcpCounters): MptcpCounters => ({
    learned: b.learned - a.learned,
    steered: b.steered - a.steered,
    unknown: b.unknown - a.unknown,
    droppedUnknown: b.droppedUnknown - a.droppedUnknown,
    collisions: b.collisions - a.collisions,
  });

  const clientArgs = (name: string, o: PeerClientOptions): string[] => peerClientArgs(dir, name, o);
  const readReport = (name: string): ClientReport => JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8')) as ClientReport;
  const runClient = async (name: string, o: Parameters<typeof clientArgs>[1]): Promise<ClientReport> => {
    await lab.exec('client', clientArgs(name, o), { timeoutMs: 90_000 });
    return readReport(name);
  };

  const serverRecords = (seeds: number[]): Promise<Map<number, ServerRecord[]>> => serverRecordsOf(lab, dir, seeds);

  const problemsOf = async (rep: ClientReport): Promise<string[]> => {
    const servers = await serverRecords(rep.perConnection.map((c) => c.seed));
    return rep.perConnection.flatMap((c) => connectionProblems(c, servers, rep.bytes));
  };

  beforeAll(async () => {
    ensureBuilt();
    if (!existsSync('/proc/sys/net/mptcp/enabled')) throw new Error('this kernel has no MPTCP (/proc/sys/net/mptcp missing)');
    lab = await Lab.create({ backends: 3, mode: 'stick', clientPaths: 2, ipv6: false, servers: false });
    dir = lab.describe().runDir;
    await startPeerServers(lab, dir);
    configPath = lab.configFor(services(true));
    sluice = await startSluice(lab, configPath);
  });

  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  it('steering on: 60 connections x 1 MiB, each ends with 2 subflows on one backend; every token learned, every join steered', async () => {
    const before = await counters();
    const rep = await runClient('on', { connections: 60, bytes: MIB, concurrency: 10, seed: 1000, holdMs: 3000 });
    const d = delta(before, await counters());
    const problems = await problemsOf(rep);
    onCount = rep.connections;
    onTwo = rep.twoSubflows;
    console.log(`mptcp e2e, steering on: ${rep.twoSubflows}/${rep.connections} connections with 2 subflows, ${rep.bytesOk} x 1 MiB verified, backends ${JSON.stringify(rep.backends)}; sluice: learned ${d.learned}, joins steered ${d.steered}, unknown ${d.unknown}`);
    expect(rep.timedOut).toBe(false);
    expect(problems, problems.slice(0, 20).join('\n')).toEqual([]);
    expect(rep.bytesOk).toBe(60);
    expect(rep.twoSubflows).toBe(60);
    expect(Object.keys(rep.backends).sort()).toEqual(['b1', 'b2', 'b3']);
    expect(d.learned).toBeGreaterThanOrEqual(60);
    expect(d.steered).toBeGreaterThanOrEqual(60);
    expect(d.unknown).toBe(0);
    expect(d.droppedUnknown).toBe(0);
    expect(d.collisions).toBe(0);
  });

  it('ss -tni on the backends: while 9 connections are held open, each token has its 2 subflows (MP_CAPABLE from path 1, MP_JOIN from path 2) on one backend only', async () => {
    const ready = join(dir, 'held.ready');
    const release = join(dir, 'held.release');
    rmSync(ready, { force: true });
    rmSync(release, { force: true });
    const n = 9;
    const running = lab.exec('client', clientArgs('held', { connections: n, bytes: 64 * 1024, concurrency: n, seed: 5000, holdMs: 3000, extra: ['--hold-until', release, '--ready', ready] }), { timeoutMs: 90_000 });
    running.catch(() => undefined);
    try {
      let up = false;
      for (let i = 0; i < 200 && !up; i++) {
        up = existsSync(ready);
        if (!up) await sleep(50);
      }
      expect(up, 'held connections never all got ready').toBe(true);
      // token -> subflows seen on each backend
      const seen = new Map<string, { backend: string; flags: string; peer: string }[]>();
      for (const b of lab.backends()) {
        const { stdout } = await lab.exec(b.name, ['ss', '-tniH', 'state', 'established', `( sport = :${PORT} )`]);
        const records = ssRecords(stdout);
        for (const r of records) {
          const fields = r.head.split(/\s+/);
          const peer = (fields[fields.length - 1] ?? '').replace(/:\d+$/, '').replace(/^\[(?:::ffff:)?/, '').replace(/\]$/, '');
          const ulp = /tcp-ulp-mptcp flags:(\w+) token:[0-9a-f]+\(id:\d+\)\/([0-9a-f]+)\(id:\d+\)/.exec(r.body);
          if (!ulp) continue;
          const token = ulp[2].padStart(8, '0');
          seen.set(token, [...(seen.get(token) ?? []), { backend: b.name, flags: ulp[1], peer }]);
        }
      }
      writeFileSync(release, '1\n');
      await running;
      const rep = readReport('held');
      expect(rep.completed).toBe(n);
      const lines: string[] = [];
      for (const c of rep.perConnection) {
        const sub = seen.get(c.serverToken ?? '') ?? [];
        const ok =
          sub.length === 2 &&
          sub.every((s) => s.backend === c.backend) &&
          sub.some((s) => s.flags.includes('M') && s.peer === PATH1) &&
          sub.some((s) => s.flags.includes('J') && s.peer === PATH2);
        if (!ok) lines.push(`#${c.index} token ${c.serverToken ?? '?'} on ${c.backend ?? '?'}: ss saw ${JSON.stringify(sub)}`);
      }
      const perBackend: Record<string, number> = {};
      for (const sub of seen.values()) for (const x of sub) perBackend[x.backend] = (perBackend[x.backend] ?? 0) + 1;
      console.log(`mptcp e2e, ss -tni while ${n} connections are held: ${seen.size} tokens, subflows per backend ${JSON.stringify(perBackend)}, ${rep.perConnection.length - lines.length}/${n} with M from ${PATH1} + J from ${PATH2} on the serving backend`);
      expect(lines, lines.join('\n')).toEqual([]);
      // Nothing else: no stray subflow anywhere (every subflow belongs to a held connection).
      expect([...seen.values()].flat().length).toBe(2 * n);
    } finally {
      writeFileSync(release, '1\n');
      await running.catch(() => undefined);
    }
  });

  it('third ACK dropped for about half of the connections: keys learned from the first data segment, joins still steered', async () => {
    // Router, forward chain: drop client->VIP pure ACKs (flags == ack) whose MPTCP option is
    // MP_CAPABLE (subtype 0) of length 20 - the third ACK - when bit 1 of the source port is 0
    // (Linux picks even ports for connect(), so bit 0 would select all of them). The client's
    // request that follows carries the 22-byte MP_CAPABLE, which passes (length 22).
    const rule = `ip daddr ${VIP4} tcp dport ${PORT} tcp flags == ack tcp option mptcp subtype 0 tcp option mptcp length 20 tcp sport & 2 == 0 counter drop`;
    await lab.exec('router', ['nft', '-f', '-'], {
      input: `table inet ${NFT_TABLE} {\n  chain third_ack {\n    type filter hook forward priority 0; policy accept;\n    ${rule}\n  }\n}\n`,
    });
    try {
      const before = await counters();
      const n = 30;
      // A join that overtakes the data segment meets an unknown token and is dropped; the
      // client retransmits its SYN after ~1 s, so give the second subflow a few seconds.
      const rep = await runClient('lost-ack', { connections: n, bytes: MIB, concurrency: 10, seed: 2000, holdMs: 6000 });
      const d = delta(before, await counters());
      const { stdout } = await lab.exec('router', ['nft', 'list', 'table', 'inet', NFT_TABLE]);
      const dropped = Number(/counter packets (\d+)/.exec(stdout)?.[1] ?? -1);
      const hit = rep.perConnection.filter((c) => c.localPort !== undefined && (c.localPort & 2) === 0);
      const problems = await problemsOf(rep);
      console.log(
        `mptcp e2e, third ACK dropped: ${hit.length}/${n} connections lost it (${dropped} packets dropped by nft); ${rep.twoSubflows}/${n} with 2 subflows (${hit.filter((c) => c.subflows === 2).length}/${hit.length} of those that lost it); sluice: learned ${d.learned}, steered ${d.steered}, unknown ${d.unknown}`,
      );
      expect(rep.timedOut).toBe(false);
      expect(hit.length).toBeGreaterThan(0);
      expect(dropped).toBeGreaterThanOrEqual(hit.length);
      expect(problems, problems.slice(0, 20).join('\n')).toEqual([]);
      expect(rep.twoSubflows).toBe(n);
      expect(d.learned).toBeGreaterThanOrEqual(n);
      expect(d.steered).toBeGreaterThanOrEqual(n);
      expect(d.collisions).toBe(0);
      // Every join that met an unknown token was a SYN that the client sent again (and that got steered).
      expect(d.droppedUnknown).toBe(d.unknown);
    } finally {
      await lab.exec('router', ['nft', 'delete', 'table', 'inet', NFT_TABLE]).catch(() => undefined);
    }
  });

  it('plain TCP to the same MPTCP service works and teaches Sluice nothing', async () => {
    const before = await counters();
    const rep = await runClient('plain', { connections: 6, bytes: MIB, concurrency: 3, seed: 3000, holdMs: 0, plain: true });
    const d = delta(before, await counters());
    const servers = await serverRecords(rep.perConnection.map((c) => c.seed));
    console.log(`mptcp e2e, plain TCP: ${rep.completed}/6 completed, ${rep.bytesOk} x 1 MiB verified, backends ${JSON.stringify(rep.backends)}`);
    expect(rep.completed).toBe(6);
    expect(rep.bytesOk).toBe(6);
    expect(rep.errors).toEqual({});
    for (const c of rep.perConnection) {
      const r = servers.get(c.seed)?.[0];
      expect(r?.mptcp, `#${c.index} should be plain TCP on the server`).toBe(false);
      expect(r?.sent).toBe(MIB);
    }
    expect(d).toEqual({ learned: 0, steered: 0, unknown: 0, droppedUnknown: 0, collisions: 0 });
  });

  it('steering off ("mptcp": false, reloaded): joins are hashed, many connections stay single-path, and the steering checks catch it', async () => {
    if (!sluice) throw new Error('no sluice');
    const gen = (await admin<{ generation: number }>(sluice, 'GET', '/status')).generation;
    const next = lab.configFor(services(false), { file: 'next.json' });
    renameSync(next, configPath);
    let reloaded = false;
    for (let i = 0; i < 100 && !reloaded; i++) {
      reloaded = (await admin<{ generation: number }>(sluice, 'GET', '/status')).generation > gen;
      if (!reloaded) await sleep(100);
    }
    expect(reloaded, 'config with "mptcp": false was not applied').toBe(true);
    const before = await counters();
    const n = 60;
    const rep = await runClient('off', { connections: n, bytes: MIB, concurrency: 10, seed: 4000, holdMs: 1500 });
    const d = delta(before, await counters());
    const problems = await problemsOf(rep);
    const single = rep.perConnection.filter((c) => (c.subflows ?? 0) < 2).length;
    console.log(
      `mptcp e2e, steering off: ${rep.twoSubflows}/${n} connections with 2 subflows, ${single} lost their join (steering on: ${onTwo}/${onCount}); ${rep.bytesOk} x 1 MiB verified; sluice: learned ${d.learned}, steered ${d.steered}`,
    );
    expect(rep.timedOut).toBe(false);
    // Single-path connections still carry their data...
    expect(rep.bytesOk).toBe(n);
    // ...but joins are lost (about 2 in 3 over 3 backends), and the checks of the steering-on run see it.
    expect(single).toBeGreaterThan(0);
    expect(problems.length).toBeGreaterThan(0);
    expect(problems.some((p) => p.includes('subflow(s)'))).toBe(true);
    expect(d.learned).toBe(0);
    expect(d.steered).toBe(0);
  });
});

/**
 * The same steering through ipip: Sluice encapsulates both subflows of every connection to the
 * backend of its token (the backends' userspace decapsulator hands them to the kernel's MPTCP
 * stack). Clients keep the kernel's default offloads, as in every lab.
 */
describe.skipIf(!enabled)('MPTCP subflow steering in ipip mode (2 client paths, 3 backends)', () => {
  let lab: Lab;
  let sluice: RunningSluice | undefined;
  let dir: string;

  beforeAll(async () => {
    ensureBuilt();
    if (!existsSync('/proc/sys/net/mptcp/enabled')) throw new Error('this kernel has no MPTCP (/proc/sys/net/mptcp missing)');
    lab = await Lab.create({ backends: 3, mode: 'stick', clientPaths: 2, ipv6: false, servers: false, ipip: true });
    dir = lab.describe().runDir;
    await startPeerServers(lab, dir);
    const services: ConfigService[] = [{ name: 'mp', vip: VIP4, port: PORT, protocol: 'tcp', mptcp: true, mptcpUnknownJoin: 'drop' }];
    sluice = await startSluice(lab, lab.configFor(services, { forwarding: 'ipip' }));
  }, 120_000);

  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  it('60 connections x 1 MiB, each ends with 2 subflows on one backend; every join steered', async () => {
    const m0 = await scrape(lab);
    const report = join(dir, 'ipip.json');
    const args = ['python3', PEER, 'client', '--target', `${VIP4}:${PORT}`, '--connections', '60', '--bytes', String(MIB), '--concurrency', '10', '--seed', '5000', '--hold-ms', '3000', '--timeout', '75', '--report', report];
    await lab.exec('client', args, { timeoutMs: 90_000 });
    const rep = JSON.parse(readFileSync(report, 'utf8')) as ClientReport;
    const m1 = await scrape(lab);
    const steered = metric(m1, 'sluice_mptcp_joins_steered_total') - metric(m0, 'sluice_mptcp_joins_steered_total');
    const unknown = metric(m1, 'sluice_mptcp_joins_unknown_token_total') - metric(m0, 'sluice_mptcp_joins_unknown_token_total');
    const servers = await serverRecordsOf(lab, dir, rep.perConnection.map((c) => c.seed));
    const problems = rep.perConnection.flatMap((c) => connectionProblems(c, servers, rep.bytes));
    let decapsulated = 0;
    for (const b of lab.backends()) decapsulated += Number((await lab.decapStats(b.index)).decapsulated ?? 0);
    console.log(`mptcp e2e, ipip: ${rep.twoSubflows}/${rep.connections} connections with 2 subflows, ${rep.bytesOk} x 1 MiB verified, backends ${JSON.stringify(rep.backends)}; joins steered ${steered}, unknown ${unknown}; decapsulated ${decapsulated}`);
    expect(rep.timedOut).toBe(false);
    expect(problems, problems.slice(0, 20).join('\n')).toEqual([]);
    expect(rep.bytesOk).toBe(60);
    expect(rep.twoSubflows).toBe(60);
    expect(steered).toBeGreaterThanOrEqual(60);
    expect(unknown).toBe(0);
    expect(decapsulated).toBeGreaterThan(60 * 4);
  }, 120_000);
});
