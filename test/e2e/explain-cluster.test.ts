/**
 * e2e (needs root: network namespaces, raw sockets): `sluice explain` on an instance that has no
 * entry for a flow names the flow's owner instance and the backend the owner holds, and that is
 * the backend the connection's packets reach when they come through that instance.
 *
 * Lab: client -> router (ECMP over lb1..lb3, L4 hash) -> 3 Sluice instances with owner sync
 * (dsr-l2, one-armed; cluster settings as test/e2e/cluster-helpers.ts) -> 5 backends, each running
 * scripts/mptcp-peer.py's server on :8080 (it names itself in its greeting and in every answer).
 *
 *  1. 30 plain TCP connections from fixed client ports, with b1..b3 configured; each one's
 *     greeting names its backend.
 *  2. Backend change: b4 and b5 added on every instance (about 2 in 5 table picks move; the
 *     connections keep their backends). The instances publish their flows to the flows' owners.
 *  3. For each connection, explain on every instance (admin API): the instance ECMP gave it holds
 *     it; the one instance that is neither its owner nor its replica has no entry and asks them.
 *     Its report must name the owner (another instance) and, where that instance's table now
 *     picks another backend, the owner's entry: the connection's backend. Where the pick did not
 *     move the owners may hold nothing (instances publish only what the table would misplace) and
 *     the table's pick is the answer. Either way the report's next backend is the connection's.
 *     `sluice explain` (the CLI, human and --json) says the same for a moved one.
 *  4. The router then sends everything through one instance at a time; each connection sends a
 *     line and the backend that answers is recorded: for every flow that instance explained, the
 *     answer comes from the backend its report named.
 *  5. MPTCP (the service has "mptcp": true; the client has a second path with a `subflow`
 *     endpoint): 6 connections held open with 2 subflows, located on the backends with `ss -tni`.
 *     A further join SYN of each, explained with `--token` on every instance: where the data
 *     plane does not know the token, the report names the token's owner and the backend the
 *     owners hold, which is the backend the connection's real join reached.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, type ConfigService } from '../../scripts/lab/topology.js';
import type { ExplainFlowReport, ExplainReport } from '../../src/observe/admin-api.js';
import { REPO, admin, e2eEnabled, ensureBuilt, sleep, startSluice, stopSluice, type RunningSluice } from './sluice-harness.js';
import { backendSubflows } from './explain-helpers.js';
import { MPTCP_PORT, configPath, lbAddress, ecmpHops, setEcmp, startMptcpServer, status, waitConverged, waitFor, writeClusterKey, writeInstanceConfig } from './cluster-helpers.js';

const enabled = e2eEnabled('e2e explain (owner is another instance)');

const PEER = join(REPO, 'scripts', 'mptcp-peer.py');
const N = 3;
const ALL = ['lb1', 'lb2', 'lb3'];
const CONNECTIONS = 30;
const HELD = 6;
const PATH2 = '10.99.9.2';
const FIRST_PORT = 43100;
const SERVICE = 'named';

/**
 * python3 client: CONNECTIONS plain TCP connections to HOST:PORT from fixed local ports, each
 * greeted with "NAME bX ..." (mptcp-peer.py's server). Writes READY (JSON: port -> name), then
 * for every file DIR/ask.N that appears sends "INFO" on each connection and writes DIR/answers.N
 * (port -> the answering server's name, or an error); closes all at DIR/stop or after 80 s.
 */
const CLIENT_PY = String.raw`
import json, os, socket, sys, time
host, port, n, first, d, src = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
def write(name, obj):
    with open(os.path.join(d, name + ".tmp"), "w") as f:
        json.dump(obj, f)
    os.rename(os.path.join(d, name + ".tmp"), os.path.join(d, name))
def readline(s):
    buf = b""
    while not buf.endswith(b"\n"):
        c = s.recv(1)
        if not c:
            raise ConnectionError("closed by peer")
        buf += c
    return buf.decode("ascii", "replace").strip()
conns, names = {}, {}
for i in range(n):
    p = first + i
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(5)
        s.bind((src, p))
        s.connect((host, port))
        s.sendall(b"GET 0 %d\n" % p)
        names[p] = readline(s).split()[1]
        conns[p] = s
    except Exception as e:
        names[p] = "error: %s" % e
write("ready", names)
end = time.monotonic() + 80
k = 1
while time.monotonic() < end and not os.path.exists(os.path.join(d, "stop")):
    if not os.path.exists(os.path.join(d, "ask.%d" % k)):
        time.sleep(0.02)
        continue
    out = {}
    for p, s in conns.items():
        try:
            s.sendall(b"INFO\n")
            out[p] = json.loads(readline(s))["name"]
        except Exception as e:
            out[p] = "error: %s" % e
    write("answers.%d" % k, out)
    k += 1
for s in conns.values():
    s.close()
`;

describe.skipIf(!enabled)('sluice explain names the owner instance and the backend it holds', () => {
  let lab: Lab;
  let dir: string;
  let client: string;
  const sluice: RunningSluice[] = [];
  let address: Map<string, string>;
  let keyFile: string;

  const services = (backends: string[]): ConfigService[] => [{ name: SERVICE, vip: VIP4, port: MPTCP_PORT, protocol: 'tcp', mptcp: true, mptcpUnknownJoin: 'drop', backends: backends.map((a) => ({ address: a })) }];

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 5, mode: 'stick', balancers: N, clientPaths: 2, ipv6: false });
    dir = lab.describe().runDir;
    client = lab.describe().client.interfaces.find((i) => i.ipv4 !== null)?.ipv4?.split('/')[0] ?? '';
    await Promise.all(lab.backends().map((b) => startMptcpServer(lab, b.index, PEER)));
    address = new Map(lab.backends().map((b) => [b.name, b.ipv4.split('/')[0]]));
    keyFile = writeClusterKey(lab);
    const first = lab.backends().slice(0, 3).map((b) => b.ipv4);
    for (let k = 1; k <= N; k++) writeInstanceConfig(lab, k, N, services(first), keyFile, true);
    sluice.push(...(await Promise.all(Array.from({ length: N }, (_, i) => startSluice(lab, configPath(lab, i + 1), i + 1)))));
    await waitConverged(sluice, ALL, 'the 3 instances to see each other');
    writeFileSync(join(dir, 'explain-client.py'), CLIENT_PY);
  }, 120_000);
  afterAll(async () => {
    if (dir) writeFileSync(join(dir, 'stop'), '1\n');
    await Promise.all(sluice.map((s) => stopSluice(s)));
    await lab?.destroy();
  });

  const readJson = <T,>(name: string): T => JSON.parse(readFileSync(join(dir, name), 'utf8')) as T;
  async function waitFile(name: string, ms: number): Promise<void> {
    for (let i = 0; i * 50 < ms && !existsSync(join(dir, name)); i++) await sleep(50);
    if (!existsSync(join(dir, name))) throw new Error(`client wrote no ${name} within ${ms} ms (log: ${readFileSync(join(dir, 'explain-client.log'), 'utf8').slice(-2000)})`);
  }

  const tuple = (port: number): string => `tcp:${client}:${port}-${VIP4}:${MPTCP_PORT}`;
  async function explainVia(s: RunningSluice, port: number): Promise<ExplainFlowReport> {
    const q = new URLSearchParams({ protocol: 'tcp', vip: VIP4, port: String(MPTCP_PORT), client, clientPort: String(port) });
    return (await admin<ExplainReport>(s, 'GET', `/explain?${q}`)).flows[0];
  }

  it(`${CONNECTIONS} connections, then b4 and b5 added: the instance without an entry names the owner and its backend, which answers when packets come through it`, async () => {
    const run = lab.spawn('client', ['python3', '-u', join(dir, 'explain-client.py'), VIP4, String(MPTCP_PORT), String(CONNECTIONS), String(FIRST_PORT), dir, client], { logName: 'explain-client.log' });
    try {
      // 1. Connections up, each greeted by its backend.
      await waitFile('ready', 20_000);
      const greeted = readJson<Record<string, string>>('ready');
      const backendOf = new Map(Object.entries(greeted).map(([p, name]) => [Number(p), address.get(name) ?? name]));
      expect([...backendOf.values()].filter((b) => !b.startsWith('10.')), JSON.stringify(greeted)).toEqual([]);

      // 2. b4 and b5 join on every instance; wait until all run the new generation and agree.
      const gens = await Promise.all(sluice.map(async (s) => (await status(s)).generation));
      const all = lab.backends().map((b) => b.ipv4);
      for (let k = 1; k <= N; k++) writeInstanceConfig(lab, k, N, services(all), keyFile, true);
      await waitFor('every instance on the new generation', () => Promise.all(sluice.map((s) => status(s))), (st) => st.every((x, i) => x.generation > gens[i] && x.dataplane.generation === x.generation), 150);
      await waitConverged(sluice, ALL, 'the same backend set everywhere after the change');

      // 3. Explain every connection on every instance, until the owners hold what was published.
      interface Case {
        port: number;
        backend: string;
        holder: number;
        asked: number;
        report: ExplainFlowReport;
      }
      let cases: Case[] = [];
      let problems: string[] = [];
      await waitFor(
        'explain on the instance without an entry to name the owner-held backend of every connection',
        async () => {
          cases = [];
          problems = [];
          for (const [port, backend] of backendOf) {
            const reports = await Promise.all(sluice.map((s) => explainVia(s, port)));
            const holders = reports.flatMap((r, i) => (r.tracked !== null ? [i + 1] : []));
            if (holders.length !== 1) problems.push(`port ${port}: tracked on ${holders.length} instances`);
            else if (reports[holders[0] - 1].trackedBackend !== backend) problems.push(`port ${port}: tracked on ${reports[holders[0] - 1].trackedBackend ?? '-'}, greeted by ${backend}`);
            const c = reports[0].cluster;
            if (!c || c.owner === null || c.replica === null) {
              problems.push(`port ${port}: no owner/replica in ${JSON.stringify(c)}`);
              continue;
            }
            const other = ALL.findIndex((id) => id !== c.owner && id !== c.replica) + 1;
            if (holders.length !== 1 || holders[0] === other) continue; // its holder is the uninvolved instance: nothing to ask
            const r = reports[other - 1];
            if (r.tracked !== null || r.cluster?.asked !== true || r.cluster.owner === `lb${other}`) problems.push(`port ${port} on lb${other}: ${JSON.stringify({ tracked: r.tracked, cluster: r.cluster })}`);
            // Instances publish only the flows their table would now misplace: where the pick did not
            // move, the owner may hold nothing and the table's pick is the answer.
            else if (r.tableBackend !== backend && r.cluster.heldByOwners !== `${SERVICE}/${backend}`) problems.push(`port ${port} on lb${other}: table picks ${r.tableBackend ?? '-'}, owner ${r.cluster.owner ?? '-'} holds ${r.cluster.heldByOwners ?? 'nothing'}, greeted by ${backend}`);
            else if (r.cluster.heldByOwners !== null && r.cluster.heldByOwners !== `${SERVICE}/${backend}`) problems.push(`port ${port} on lb${other}: owner ${r.cluster.owner ?? '-'} holds ${r.cluster.heldByOwners}, greeted by ${backend}`);
            else if (r.next.by !== 'owner-query' || r.nextBackend !== backend) problems.push(`port ${port} on lb${other}: next ${JSON.stringify(r.next)} -> ${r.nextBackend ?? '-'}`);
            cases.push({ port, backend, holder: holders[0], asked: other, report: r });
          }
          return problems;
        },
        (p) => p.length === 0,
        50,
        200,
      ).catch((e: Error) => {
        throw new Error(`${e.message}\n${problems.join('\n')}`);
      });
      const moved = cases.filter((c) => c.report.tableBackend !== c.backend);
      const perAsked = ALL.map((id, i) => `${id} ${cases.filter((c) => c.asked === i + 1).length}`).join(', ');
      console.log(`explain e2e, cluster: ${cases.length}/${CONNECTIONS} connections explained on an instance without an entry (per instance: ${perAsked}); every report named the owner and, as where the next packet goes, the greeting backend: ${moved.length} by the owner's entry where that instance's table now picks another backend, ${cases.length - moved.length} by the table (owner entry: ${cases.filter((c) => c.report.tableBackend === c.backend && c.report.cluster?.heldByOwners !== null).length} of them)`);
      expect(cases.length).toBeGreaterThan(0);
      // Else the owner's answer is indistinguishable from the table's pick.
      expect(moved.length).toBeGreaterThan(0);

      // The CLI says it too, human and --json, for a flow whose table pick moved.
      const m = moved[0];
      const cli = (json: boolean): Promise<{ stdout: string }> =>
        lab.exec(`lb${m.asked}`, [process.execPath, join(REPO, 'dist', 'src', 'cli.js'), 'explain', tuple(m.port), '--socket', sluice[m.asked - 1].socket, ...(json ? ['--json'] : [])]);
      const asJson = (JSON.parse((await cli(true)).stdout) as ExplainReport).flows[0];
      expect(asJson.cluster?.heldByOwners).toBe(`${SERVICE}/${m.backend}`);
      expect(asJson.nextBackend).toBe(m.backend);
      const text = (await cli(false)).stdout;
      console.log(text);
      expect(text).toContain(`owner:       ${m.report.cluster?.owner ?? '?'}, replica ${m.report.cluster?.replica ?? '?'}`);
      expect(text).toContain(`owner/replica answer ${SERVICE}/${m.backend}`);
      expect(text).toContain(`a mid-flow packet goes to ${m.backend} by its owner's answer`);

      // 4. All traffic through one instance at a time: the backend answering is the one its reports named.
      const wrong: string[] = [];
      const lost: string[] = [];
      let checked = 0;
      for (let k = 1; k <= N; k++) {
        await setEcmp(lab, [k]);
        expect(await ecmpHops(lab)).toEqual([lbAddress(k)]);
        writeFileSync(join(dir, `ask.${k}`), '1\n');
        await waitFile(`answers.${k}`, 20_000);
        const answers = readJson<Record<string, string>>(`answers.${k}`);
        for (const [port, backend] of backendOf) {
          const got = address.get(answers[String(port)] ?? '') ?? answers[String(port)];
          if (got !== backend) lost.push(`port ${port} through lb${k}: answered by ${got ?? '-'}, greeted by ${backend}`);
        }
        for (const c of cases.filter((x) => x.asked === k)) {
          checked++;
          const got = address.get(answers[String(c.port)] ?? '') ?? answers[String(c.port)];
          if (got !== c.report.nextBackend) wrong.push(`port ${c.port} through lb${k}: answered by ${got ?? '-'}, explain named ${c.report.nextBackend ?? '-'} (table pick ${c.report.tableBackend ?? '-'})`);
        }
      }
      await setEcmp(lab, [1, 2, 3]);
      console.log(`explain e2e, cluster: ${checked - wrong.length}/${checked} connections answered, through the instance that explained them, by the backend its report named; ${N * CONNECTIONS - lost.length}/${N * CONNECTIONS} answers (every connection through each instance) from the greeting backend`);
      expect(wrong, wrong.join('\n')).toEqual([]);
      expect(checked).toBe(cases.length);
      expect(lost, lost.join('\n')).toEqual([]);
    } finally {
      writeFileSync(join(dir, 'stop'), '1\n');
      for (let i = 0; i < 100 && run.exitCode === null; i++) await sleep(50);
      if (run.exitCode === null) run.kill('SIGKILL');
    }
  }, 90_000);

  it(`${HELD} held MPTCP connections: a join SYN explained with its token on an instance that does not know the token names the token's owner and the backend the connection's join reached`, async () => {
    const ready = join(dir, 'mp.ready');
    const release = join(dir, 'mp.release');
    const run = lab.exec(
      'client',
      ['python3', PEER, 'client', '--target', `${VIP4}:${MPTCP_PORT}`, '--connections', String(HELD), '--bytes', '4096', '--concurrency', String(HELD), '--seed', '9300', '--hold-ms', '5000', '--timeout', '60', '--report', join(dir, 'mp.json'), '--hold-until', release, '--ready', ready],
      { timeoutMs: 75_000 },
    );
    run.catch(() => undefined);
    try {
      for (let i = 0; i < 300 && !existsSync(ready); i++) await sleep(50);
      expect(existsSync(ready), 'the held MPTCP connections never all got ready').toBe(true);
      // Where each connection's subflows are, on the backends themselves.
      // The backend counts a join once its handshake's last ACK is in, a moment after the client does.
      let seen = await backendSubflows(lab, MPTCP_PORT);
      for (let i = 0; i < 50 && seen.filter((x) => x.join).length < HELD; i++) {
        await sleep(100);
        seen = await backendSubflows(lab, MPTCP_PORT);
      }
      const joins = seen.filter((x) => x.join && x.peer === PATH2);
      expect(joins.length, JSON.stringify(seen)).toBe(HELD);
      let viaOwner = 0;
      let viaToken = 0;
      const problems: string[] = [];
      let shown: { k: number; port: number; token: string; backend: string; owner: string } | null = null;
      for (const [i, j] of joins.entries()) {
        const backend = address.get(j.backend) ?? j.backend;
        expect(seen.find((x) => !x.join && x.token === j.token)?.backend, `token ${j.token}: both subflows on one backend`).toBe(j.backend);
        // A further join SYN of this connection, from a port not seen yet, explained on each instance.
        const port = 48000 + i;
        for (const s of sluice) {
          const q = new URLSearchParams({ protocol: 'tcp', vip: VIP4, port: String(MPTCP_PORT), client: PATH2, clientPort: String(port), token: j.token });
          const r = (await admin<ExplainReport>(s, 'GET', `/explain?${q}`)).flows[0];
          const id = `token ${j.token} (join on ${backend}) on lb${s.balancer}`;
          if (r.next.by === 'mptcp-token') {
            // This instance's data plane knows the token (it learned it, or a join came through it).
            viaToken++;
            if (r.nextBackend !== backend) problems.push(`${id}: token table says ${r.nextBackend ?? '-'}`);
          } else if (r.next.by === 'owner-query') {
            viaOwner++;
            const c = r.cluster;
            if (r.next.asks !== 'token' || c?.kind !== 'token') problems.push(`${id}: asks ${r.next.asks ?? '-'}, cluster ${JSON.stringify(c)}`);
            else if ((c.asked ? c.heldByOwners : c.heldHere) !== `${SERVICE}/${backend}`) problems.push(`${id}: the token's owner ${c.owner ?? '-'} holds ${c.heldByOwners ?? c.heldHere ?? 'nothing'}`);
            else if (r.nextBackend !== backend) problems.push(`${id}: next backend ${r.nextBackend ?? '-'}`);
            else if (shown === null && c.owner !== null && c.owner !== `lb${s.balancer}`) shown = { k: s.balancer, port, token: j.token, backend, owner: c.owner };
          } else problems.push(`${id}: next ${JSON.stringify(r.next)}`);
        }
      }
      console.log(`explain e2e, cluster MPTCP: ${HELD} connections x 3 instances: a new join SYN with the token explained by the data plane's token table ${viaToken} times, through the token's owner ${viaOwner} times; problems ${problems.length}`);
      expect(problems, problems.join('\n')).toEqual([]);
      expect(viaOwner, 'no instance without the token: the owner path was not exercised').toBeGreaterThan(0);
      expect(shown, 'an instance without the token whose owner is another instance').not.toBeNull();
      if (shown) {
        const { stdout: text } = await lab.exec(`lb${shown.k}`, [process.execPath, join(REPO, 'dist', 'src', 'cli.js'), 'explain', `tcp:${PATH2}:${shown.port}-${VIP4}:${MPTCP_PORT}`, '--token', shown.token, '--socket', sluice[shown.k - 1].socket]);
        console.log(text);
        expect(text).toContain(`mptcp token: ${shown.token} (token table: no live entry)`);
        expect(text).toMatch(new RegExp(`token owner: ${shown.owner}, replica lb\\d`));
        expect(text).toContain(`the join SYN goes to ${shown.backend} by its owner's answer (${shown.owner})`);
      }
    } finally {
      writeFileSync(release, '1\n');
      await run.catch(() => undefined);
    }
  }, 60_000);
});
