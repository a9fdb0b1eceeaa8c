/**
 * e2e (needs root: network namespaces, raw sockets): `sluice explain` names the backend a real
 * packet reaches. One-armed lab (scripts/lab/topology.ts, mode "stick"), 3 backends whose HTTP
 * servers answer with their name (x-backend); the client connects from a chosen source port with
 * curl, and explain is asked through the CLI (`sluice explain ... --json`) in the balancer's
 * namespace. Covered: a tracked flow, an untracked one (the table pick for a new port, asked
 * before the connection exists). An MPTCP join is in explain-mptcp.test.ts, a flow whose owner
 * is another instance in explain-cluster.test.ts.
 */
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4 } from '../../scripts/lab/topology.js';
import type { ExplainReport } from '../../src/observe/admin-api.js';
import { CommandError } from '../../scripts/lab/netns.js';
import { REPO, e2eEnabled, ensureBuilt, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';

const enabled = e2eEnabled('e2e explain');

describe.skipIf(!enabled)('sluice explain names the backend the packet reached', () => {
  let lab: Lab;
  let sluice: RunningSluice;
  let client: string;
  let byName: Map<string, string>;

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick' });
    sluice = await startSluice(lab, lab.configFor());
    const d = lab.describe();
    client = d.client.interfaces.find((i) => i.ipv4 !== null)?.ipv4?.split('/')[0] ?? '';
    byName = new Map(d.backends.map((b) => [b.name, b.ipv4.split('/')[0]]));
  }, 120_000);
  afterAll(async () => {
    if (sluice) await stopSluice(sluice);
    await lab?.destroy();
  });

  /** One HTTP request from the client's source port `port`: the backend address that answered. */
  async function reached(port: number): Promise<string> {
    const { stdout } = await lab.exec('client', ['curl', '-s', '-o', '/dev/null', '-D', '-', '--max-time', '5', '--local-port', String(port), `http://${VIP4}/`]);
    const name = /x-backend: *(\S+)/i.exec(stdout)?.[1] ?? '';
    return byName.get(name) ?? `unknown backend ${JSON.stringify(name)}`;
  }

  async function explain(port: number): Promise<ExplainReport> {
    const { stdout } = await lab.exec(`lb${sluice.balancer}`, [process.execPath, join(REPO, 'dist', 'src', 'cli.js'), 'explain', `tcp:${client}:${port}-${VIP4}:80`, '--socket', sluice.socket, '--json']);
    return JSON.parse(stdout) as ExplainReport;
  }

  it('untracked: the table pick for a new port is where its connection then goes', async () => {
    const seen = new Set<string>();
    for (const port of [42001, 42002, 42003, 42004, 42005, 42006]) {
      const before = (await explain(port)).flows[0];
      expect(before.tracked).toBeNull();
      expect(before.service).not.toBeNull();
      const to = await reached(port);
      expect(before.newFlowBackend, `port ${port}`).toBe(to);
      seen.add(to);
    }
    // Several backends among the picks, so a constant answer could not pass.
    console.log(`explain's table picks matched the answering backend for 6 ports over ${seen.size} backends: ${[...seen].join(', ')}`);
    expect(seen.size).toBeGreaterThan(1);
  });

  it('tracked: the flow entry and its backend, which answered the connection', async () => {
    for (const port of [42101, 42102, 42103]) {
      const to = await reached(port);
      const f = (await explain(port)).flows[0];
      // The connection just ended (FIN): its entry is closing, still tracked for tcpClosingTimeoutS.
      expect(f.tracked, `port ${port}`).not.toBeNull();
      expect(f.trackedBackend).toBe(to);
      expect(f.next.by).toBe('flow-entry');
      expect(f.nextBackend).toBe(to);
      expect(Date.parse(f.tracked!.since)).toBeLessThanOrEqual(Date.now());
    }
  });

  it('an unknown VIP: exit 2 with the configured VIPs', async () => {
    const r = await lab
      .exec(`lb${sluice.balancer}`, [process.execPath, join(REPO, 'dist', 'src', 'cli.js'), 'explain', `tcp:${client}:1-203.0.113.77:80`, '--socket', sluice.socket])
      .then(() => ({ code: 0 as number | string | null, stderr: '' }))
      .catch((e: unknown) => (e instanceof CommandError ? { code: e.code, stderr: e.stderr } : { code: -1, stderr: String(e) }));
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`no service has VIP 203.0.113.77 (configured VIPs: ${VIP4}`);
  });
});
