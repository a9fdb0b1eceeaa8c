/**
 * e2e (needs root: network namespaces, raw sockets, kernel MPTCP): `sluice explain` for the
 * MP_JOIN subflow of a real kernel MPTCP connection names the connection's token and the backend
 * the join actually reached.
 *
 * Lab: as test/e2e/mptcp.test.ts: a client with two paths (10.99.1.2, and 10.99.9.2 with an
 * MPTCP `subflow` endpoint), the router, one Sluice (dsr-l2, one-armed), 3 backends running
 * scripts/mptcp-peer.py's MPTCP server; the client keeps the kernel's default settings. Eight
 * connections are held open, each with 2 subflows. Where each subflow is, is read on the backends
 * themselves (`ss -tni`: flag J, peer = the client's second path and port, and the connection's
 * token). For each join's 5-tuple, `sluice explain --json` must say: tracked on that backend,
 * the same token, next packet by its flow entry to that backend; and `sluice explain --token`
 * for a join SYN not yet seen must say it follows the token to that backend.
 *
 * A join's own 5-tuple hashes to a Maglev slot that has nothing to do with its connection, so
 * the join's table pick differs from where it went for most joins: the test requires at least
 * one such join (else a plain table lookup could pass it) and prints the count.
 */
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4 } from '../../scripts/lab/topology.js';
import type { ExplainFlowReport, ExplainReport } from '../../src/observe/admin-api.js';
import { REPO, e2eEnabled, ensureBuilt, sleep, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';
import { MPTCP_PORT, startMptcpServer } from './cluster-helpers.js';
import { backendSubflows } from './explain-helpers.js';

const enabled = e2eEnabled('e2e explain (MPTCP join)');

const PEER = join(REPO, 'scripts', 'mptcp-peer.py');
const PATH1 = '10.99.1.2';
const PATH2 = '10.99.9.2';
const HELD = 8;

describe.skipIf(!enabled)('sluice explain names the token and the backend an MPTCP join reached', () => {
  let lab: Lab;
  let sluice: RunningSluice;
  let dir: string;
  let byName: Map<string, string>;

  beforeAll(async () => {
    ensureBuilt();
    if (!existsSync('/proc/sys/net/mptcp/enabled')) throw new Error('this kernel has no MPTCP (/proc/sys/net/mptcp missing)');
    lab = await Lab.create({ backends: 3, mode: 'stick', clientPaths: 2, ipv6: false, servers: false });
    dir = lab.describe().runDir;
    await Promise.all(lab.backends().map((b) => startMptcpServer(lab, b.index, PEER)));
    byName = new Map(lab.backends().map((b) => [b.name, b.ipv4.split('/')[0]]));
    sluice = await startSluice(lab, lab.configFor([{ name: 'mp', vip: VIP4, port: MPTCP_PORT, protocol: 'tcp', mptcp: true, mptcpUnknownJoin: 'drop' }]));
  }, 120_000);
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  async function explain(tuple: string, extra: string[] = []): Promise<ExplainFlowReport> {
    const { stdout } = await lab.exec(`lb${sluice.balancer}`, [process.execPath, join(REPO, 'dist', 'src', 'cli.js'), 'explain', tuple, ...extra, '--socket', sluice.socket, '--json']);
    const r = JSON.parse(stdout) as ExplainReport;
    expect(r.flows.length).toBe(1);
    return r.flows[0];
  }

  it(`${HELD} held connections: explain of each join's 5-tuple names its token and the backend ss shows it on, which is not the join's own table pick`, async () => {
    const ready = join(dir, 'held.ready');
    const release = join(dir, 'held.release');
    rmSync(ready, { force: true });
    rmSync(release, { force: true });
    const client = lab.exec(
      'client',
      ['python3', PEER, 'client', '--target', `${VIP4}:${MPTCP_PORT}`, '--connections', String(HELD), '--bytes', '4096', '--concurrency', String(HELD), '--seed', '9100', '--hold-ms', '5000', '--timeout', '60', '--report', join(dir, 'held.json'), '--hold-until', release, '--ready', ready],
      { timeoutMs: 75_000 },
    );
    client.catch(() => undefined);
    try {
      for (let i = 0; i < 300 && !existsSync(ready); i++) await sleep(50);
      expect(existsSync(ready), 'the held connections never all got ready').toBe(true);
      // The backend counts a join once its handshake's last ACK is in, a moment after the client does.
      let seen = await backendSubflows(lab, MPTCP_PORT);
      for (let i = 0; i < 50 && seen.filter((x) => x.join).length < HELD; i++) {
        await sleep(100);
        seen = await backendSubflows(lab, MPTCP_PORT);
      }
      const joins = seen.filter((s) => s.join && s.peer === PATH2);
      const firsts = seen.filter((s) => !s.join && s.peer === PATH1);
      // Both subflows of every connection on one backend, as the backends see them.
      expect(firsts.length, JSON.stringify(seen)).toBe(HELD);
      expect(joins.length, JSON.stringify(seen)).toBe(HELD);
      for (const j of joins) expect(firsts.find((f) => f.token === j.token)?.backend, `token ${j.token}`).toBe(j.backend);

      let notTablePick = 0;
      const problems: string[] = [];
      const wrong = new Set<string>();
      for (const [i, j] of joins.entries()) {
        const at = byName.get(j.backend);
        const f = await explain(`tcp:${j.peer}:${j.peerPort}-${VIP4}:${MPTCP_PORT}`);
        const token = f.mptcpToken === null ? null : f.mptcpToken.toString(16).padStart(8, '0');
        const id = `join ${j.peer}:${j.peerPort} (token ${j.token}, on ${j.backend} ${at ?? '?'})`;
        if (f.service !== 'mp') problems.push(`${id}: service ${f.service ?? 'none'}`);
        if (f.tracked === null) problems.push(`${id}: not tracked`);
        if (f.trackedBackend !== at) problems.push(`${id}: tracked on ${f.trackedBackend ?? '-'}`);
        if (token !== j.token) problems.push(`${id}: explain names token ${token ?? 'none'}`);
        if (f.tokenBackend !== at) problems.push(`${id}: token table says ${f.tokenBackend ?? '-'}`);
        if (f.next.by !== 'flow-entry' || f.nextBackend !== at || f.next.drop !== null) problems.push(`${id}: next ${JSON.stringify(f.next)} ${f.nextBackend ?? '-'}`);
        if (f.tableBackend !== at) notTablePick++;
        // A further join SYN of that connection, from a port not seen yet: it follows the token.
        const syn = await explain(`tcp:${PATH2}:${47000 + i}-${VIP4}:${MPTCP_PORT}`, ['--token', j.token]);
        if (syn.tracked !== null || syn.next.by !== 'mptcp-token' || syn.nextBackend !== at) problems.push(`${id}: a new join SYN with its token: ${syn.next.by} -> ${syn.nextBackend ?? '-'} (tracked ${syn.tracked !== null})`);
        if (problems.some((p) => p.startsWith(id))) wrong.add(id);
      }
      // The human form says the same for the first join.
      const first = joins[0];
      const { stdout: text } = await lab.exec(`lb${sluice.balancer}`, [process.execPath, join(REPO, 'dist', 'src', 'cli.js'), 'explain', `tcp:${first.peer}:${first.peerPort}-${VIP4}:${MPTCP_PORT}`, '--socket', sluice.socket]);
      console.log(text);
      expect(text).toContain(`mptcp token: ${first.token}`);
      expect(text).toContain(`next packet to ${byName.get(first.backend) ?? '?'} by its tracked flow entry`);
      const per: Record<string, number> = {};
      for (const j of joins) per[j.backend] = (per[j.backend] ?? 0) + 1;
      console.log(`explain e2e, MPTCP: ${HELD - wrong.size}/${HELD} joins explained with the token and backend ss shows (joins per backend ${JSON.stringify(per)}); ${notTablePick}/${HELD} joins reached another backend than their own 5-tuple's table pick`);
      expect(problems, problems.join('\n')).toEqual([]);
      expect(notTablePick).toBeGreaterThan(0);
    } finally {
      writeFileSync(release, '1\n');
      await client.catch(() => undefined);
    }
  }, 80_000);
});
