/**
 * e2e: Sluice stays up. Needs root (namespaces, raw sockets, setpriv).
 *
 * Topology (scripts/lab/topology.ts, mode "stick"): client ns -> router ns -> a bridge segment
 * with Sluice one-armed on it (sl-lb0) and 3 backends holding the VIP, answering directly (L2
 * DSR). One Sluice at a time, except where a second one is meant to be refused.
 *   - hostile HTTP: the named corpus of test/fixtures/hostile-http.ts, then 10,000 seeded
 *     mutations, sent to the metrics port (TCP, from inside the balancer's namespace) and to the
 *     admin socket; afterwards Sluice is up, the data-plane pid unchanged, 100 of 100 HTTP
 *     connections through the VIP succeed;
 *   - one instance: a second `sluice run` on the same interface (same or another admin socket)
 *     exits 2 naming the first's pid, and the first's socket keeps working; after the first is
 *     SIGKILLed, a new one starts (no stale lock blocks it);
 *   - authorization: the CLI run as user nobody, from a copy of the build in a temp dir (the
 *     checkout may be private), outside and inside the admin group; socket mode under umask
 *     000 and 077.
 */
import { execFile, type ChildProcess } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Lab, VIP4, type ConfigService } from '../../scripts/lab/topology.js';
import type { HttpReport } from '../../scripts/lib/reports.js';
import { adminRequest } from '../../src/observe/admin-client.js';
import type { CorpusReport } from '../fixtures/hostile-http.js';
import { REPO, admin, e2eEnabled, ensureBuilt, metric, scrape, sleep, stopSluice, type RunningSluice } from './sluice-harness.js';

const enabled = e2eEnabled('e2e hardening (hostile HTTP, one instance, admin authorization)');

const CLI = join(REPO, 'dist', 'src', 'cli.js');
const HOSTILE = join(REPO, 'dist', 'test', 'fixtures', 'hostile-http.js');
const MUTATIONS = 10_000;
const SEED = 20261130;
/** A gid for the admin group that no account has: membership comes only from setpriv --groups. */
const ADMIN_GID = 47113;
const NOBODY = 65534;

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

function execCli(file: string, args: readonly string[], timeoutMs = 30_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe.skipIf(!enabled)('Sluice stays up', () => {
  let lab: Lab;
  let sluice: RunningSluice | null = null;
  const figures: string[] = [];

  const services = (): ConfigService[] => [
    { name: 'web', vip: VIP4, port: 80, protocol: 'tcp' },
    { name: 'echo', vip: VIP4, port: 7, protocol: 'tcp' },
  ];

  /** A config for lb1, with `admin` and `safety` merged in. */
  function config(file: string, adminExtra: Record<string, unknown> = {}): string {
    const path = lab.configFor(services(), { file });
    const cfg = JSON.parse(readFileSync(path, 'utf8')) as { admin: Record<string, unknown> };
    cfg.admin = { ...cfg.admin, ...adminExtra };
    writeFileSync(path, JSON.stringify(cfg, null, 2) + '\n');
    return path;
  }

  /** `sluice run` in lb1 through `sh -c` (so a umask can be set), waiting for its admin socket. */
  async function start(cfg: string, socket: string, umask?: string): Promise<RunningSluice> {
    const logName = `sluice-${Date.now()}.log`;
    const argv = umask === undefined ? [process.execPath, CLI, 'run', '--config', cfg] : ['sh', '-c', `umask ${umask} && exec "$0" "$@"`, process.execPath, CLI, 'run', '--config', cfg];
    const child: ChildProcess = lab.spawn('lb1', argv, { logName });
    const log = join(lab.describe().runDir, logName);
    for (let i = 0; i < 200; i++) {
      if (child.exitCode !== null) throw new Error(`sluice exited with ${child.exitCode} during start; log ${log}:\n${readFileSync(log, 'utf8').slice(-2000)}`);
      const r = await adminRequest(socket, 'GET', '/status', 1000).catch(() => null);
      if (r?.status === 200) return { child, socket, balancer: 1, log };
      await sleep(100);
    }
    throw new Error(`sluice did not answer on ${socket} within 20 s; log ${log}`);
  }

  async function stop(): Promise<void> {
    if (sluice) await stopSluice(sluice);
    sluice = null;
  }

  async function vipHttp(count: number): Promise<HttpReport> {
    return (await lab.runLoad(['--mode', 'http', '--target', `${VIP4}:80`, '--count', String(count), '--concurrency', '8', '--duration', '60'])) as HttpReport;
  }

  beforeAll(async () => {
    ensureBuilt();
    lab = await Lab.create({ backends: 3, mode: 'stick' });
  });
  afterAll(async () => {
    await stop();
    await lab?.destroy();
    if (figures.length > 0) console.log(`hardening figures:\n  ${figures.join('\n  ')}`);
  });

  it(`hostile HTTP: the corpus and ${MUTATIONS} mutations to the metrics port and the admin socket; Sluice stays up, the data plane untouched, 100 of 100 connections through the VIP`, async () => {
    const socket = lab.adminSocket(1);
    sluice = await start(config('config.json'), socket);
    const before = await admin<{ dataplane: { pid: number } }>(sluice, 'GET', '/status');
    const t0 = Date.now();
    const { stdout } = await lab.exec('lb1', [process.execPath, HOSTILE, '--tcp', '127.0.0.1:9180', '--unix', socket, '--mutations', String(MUTATIONS), '--seed', String(SEED), '--wait-ms', '3000', '--hold-wait-ms', '20000'], { timeoutMs: 400_000 });
    const out = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as { corpusSize: number; reports: { corpus: CorpusReport; mutated: CorpusReport }[] };
    const seconds = ((Date.now() - t0) / 1000).toFixed(1);
    for (const r of out.reports) {
      for (const part of [r.corpus, r.mutated]) {
        figures.push(`${part.target}: ${part.sent} sent, ${part.answered} answered ${JSON.stringify(part.statuses)}, ${part.closedWithoutAnswer} closed, ${part.problems.length} problems`);
      }
    }
    figures.push(`hostile run: ${out.corpusSize} named + ${MUTATIONS} mutated per listener in ${seconds} s`);
    expect(out.corpusSize).toBeGreaterThanOrEqual(50);
    expect(out.reports).toHaveLength(2);
    for (const r of out.reports) {
      expect(r.corpus.sent).toBe(out.corpusSize);
      expect(r.mutated.sent).toBe(MUTATIONS);
      expect(r.corpus.problems, JSON.stringify(r.corpus.problems.slice(0, 5))).toEqual([]);
      expect(r.mutated.problems, JSON.stringify(r.mutated.problems.slice(0, 5))).toEqual([]);
    }

    expect(sluice.child.exitCode).toBeNull();
    const after = await admin<{ dataplane: { pid: number; up: boolean } }>(sluice, 'GET', '/status');
    expect(after.dataplane.up).toBe(true);
    expect(after.dataplane.pid).toBe(before.dataplane.pid);
    const m = await scrape(lab);
    const rejectedMetrics = metric(m, 'sluice_http_rejected_total', { listener: 'metrics' });
    const rejectedAdmin = metric(m, 'sluice_http_rejected_total', { listener: 'admin' });
    figures.push(`rejected and counted: metrics ${rejectedMetrics}, admin ${rejectedAdmin}; unexpected errors ${metric(m, 'sluice_control_unexpected_errors_total')}`);
    expect(rejectedMetrics).toBeGreaterThan(1000);
    expect(rejectedAdmin).toBeGreaterThan(1000);
    expect(metric(m, 'sluice_control_unexpected_errors_total')).toBe(0);
    const http = await vipHttp(100);
    figures.push(`after the hostile run: ${http.ok} of 100 HTTP connections through the VIP, data-plane pid ${after.dataplane.pid} unchanged`);
    expect(http.ok).toBe(100);
  }, 420_000);

  it('one instance: a second `sluice run` on the same interface is refused with exit 2 and the first pid; the first socket keeps working; a SIGKILLed holder blocks nothing', async () => {
    if (!sluice) sluice = await start(config('config.json'), lab.adminSocket(1));
    const first = sluice;
    const pid = first.child.pid;
    const sameConfig = config('config.json');
    const otherSocket = join(lab.describe().runDir, 'other', 'admin.sock');
    const otherConfig = config('other-socket.json', { socket: otherSocket });
    for (const [what, cfg] of [
      ['same config', sameConfig],
      ['same interface, other admin socket', otherConfig],
    ] as const) {
      const r = await lab.exec('lb1', [process.execPath, CLI, 'run', '--config', cfg], { timeoutMs: 30_000 }).then(
        () => ({ code: 0, stderr: '' }),
        (e: { code: unknown; stderr: string }) => ({ code: e.code, stderr: e.stderr }),
      );
      figures.push(`second instance (${what}): exit ${String(r.code)}: ${r.stderr.trim().split('\n').pop()}`);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`pid ${pid}`);
      expect(r.stderr).toMatch(/already captures on interface sl-lb0/);
      // The refused instance touched neither socket; the first still answers on its own.
      expect(existsSync(first.socket)).toBe(true);
      expect((await adminRequest(first.socket, 'GET', '/status')).status).toBe(200);
    }
    expect(existsSync(otherSocket)).toBe(false);

    // Kill the holder without any cleanup: its socket file stays behind, its locks die with it.
    const dp = (await admin<{ dataplane: { pid: number } }>(first, 'GET', '/status')).dataplane.pid;
    const exited = new Promise<void>((r) => first.child.once('exit', () => r()));
    first.child.kill('SIGKILL');
    await exited;
    sluice = null;
    for (let i = 0; i < 50 && existsSync(`/proc/${dp}`); i++) await sleep(100);
    expect(existsSync(first.socket), 'a SIGKILLed instance leaves its socket file').toBe(true);
    sluice = await start(sameConfig, first.socket);
    const lockPid = readFileSync(`${first.socket}.lock`, 'utf8').trim();
    expect(lockPid).toBe(String(sluice.child.pid));
    figures.push(`after SIGKILL of pid ${pid}: a new instance (pid ${sluice.child.pid}) started on the same interface and socket`);
    expect((await vipHttp(20)).ok).toBe(20);
    await stop();
    // A clean stop removes the socket it owns.
    expect(existsSync(first.socket)).toBe(false);
  });

  describe('admin authorization', () => {
    let app: string;
    /** setpriv as nobody, outside the admin group or inside it (supplementary). */
    const as = (member: boolean): string[] => ['--reuid', String(NOBODY), '--regid', String(NOBODY), member ? `--groups=${ADMIN_GID}` : '--clear-groups'];
    const cli = (member: boolean, args: readonly string[]): Promise<CliResult> => execCli('setpriv', [...as(member), '/usr/bin/node', join(app, 'dist', 'src', 'cli.js'), ...args]);

    beforeAll(() => {
      // What the CLI needs, copied where nobody can read it (the checkout may be private).
      app = join(lab.describe().runDir, 'app');
      mkdirSync(app, { recursive: true });
      for (const part of ['dist', 'schema', 'node_modules', 'package.json']) cpSync(join(REPO, part), join(app, part), { recursive: true, dereference: true });
      chmodSync(app, 0o755);
      return execCli('chmod', ['-R', 'a+rX', app]).then(() => undefined);
    });

    it('readers "anyone", socket 0666: an outsider may read but not drain (peer credentials, not the file mode); a group member may do both', async () => {
      const socket = join(lab.describe().runDir, 'auth', 'admin.sock');
      sluice = await start(config('auth.json', { socket, socketMode: '0666', group: String(ADMIN_GID), readers: 'anyone' }), socket);
      const st = statSync(socket);
      expect(st.mode & 0o777).toBe(0o666);
      expect(st.gid).toBe(ADMIN_GID);
      const b1 = lab.backend(1).ipv4;

      const outsiderStatus = await cli(false, ['status', '--socket', socket]);
      expect(outsiderStatus.code, outsiderStatus.stderr).toBe(0);
      const outsiderDrain = await cli(false, ['drain', b1, '--socket', socket]);
      figures.push(`outsider (uid ${NOBODY}): status exit ${outsiderStatus.code}; drain exit ${outsiderDrain.code}: ${outsiderDrain.stderr.trim()}`);
      expect(outsiderDrain.code).toBe(1);
      expect(outsiderDrain.stderr).toMatch(/permission denied: POST \/backends\/drain changes state; allowed to root and members of group 47113/);
      const outsiderReload = await cli(false, ['reload', '--socket', socket]);
      expect(outsiderReload.code).toBe(1);
      expect(outsiderReload.stderr).toMatch(/reload refused: permission denied/);
      const rows = (await admin<{ backends: { address: string; status: string; overridden: boolean }[] }>(sluice, 'GET', '/backends')).backends;
      expect(rows.filter((r) => r.address === b1).every((r) => !r.overridden)).toBe(true);

      const memberStatus = await cli(true, ['status', '--socket', socket]);
      expect(memberStatus.code, memberStatus.stderr).toBe(0);
      const memberDrain = await cli(true, ['drain', b1, '--socket', socket]);
      expect(memberDrain.code, memberDrain.stderr).toBe(0);
      const memberUndrain = await cli(true, ['undrain', b1, '--socket', socket]);
      expect(memberUndrain.code, memberUndrain.stderr).toBe(0);
      figures.push(`member (uid ${NOBODY}, group ${ADMIN_GID}): status ${memberStatus.code}, drain ${memberDrain.code}, undrain ${memberUndrain.code}`);
      const m = await scrape(lab);
      expect(metric(m, 'sluice_admin_denied_total', { access: 'write' })).toBe(2);
      await stop();
    });

    it('readers "group": an outsider may not even read; a member may', async () => {
      const socket = join(lab.describe().runDir, 'auth2', 'admin.sock');
      sluice = await start(config('auth2.json', { socket, socketMode: '0666', group: String(ADMIN_GID), readers: 'group' }), socket);
      const outsider = await cli(false, ['status', '--socket', socket]);
      expect(outsider.code).toBe(1);
      expect(outsider.stderr).toMatch(/403: permission denied: GET \/status is limited by admin.readers "group"/);
      const member = await cli(true, ['status', '--socket', socket]);
      expect(member.code, member.stderr).toBe(0);
      figures.push(`readers "group": outsider status exit ${outsider.code} (${outsider.stderr.trim()}), member status exit ${member.code}`);
      await stop();
    });

    for (const umask of ['000', '077']) {
      it(`umask ${umask}: the socket is created 0660 with the admin group (the default mode)`, async () => {
        const socket = join(lab.describe().runDir, `umask${umask}`, 'admin.sock');
        sluice = await start(config(`umask${umask}.json`, { socket, group: String(ADMIN_GID) }), socket, umask);
        const st = statSync(socket);
        figures.push(`umask ${umask}: socket mode ${(st.mode & 0o777).toString(8).padStart(4, '0')} gid ${st.gid}`);
        expect(st.mode & 0o777).toBe(0o660);
        expect(st.gid).toBe(ADMIN_GID);
        // The mode is the first gate: an outsider cannot connect at all; a member can.
        const outsider = await cli(false, ['status', '--socket', socket]);
        expect(outsider.code).toBe(1);
        expect(outsider.stderr).toMatch(/EACCES|permission denied/i);
        const member = await cli(true, ['status', '--socket', socket]);
        const dirMode = (statSync(join(lab.describe().runDir, `umask${umask}`)).mode & 0o777).toString(8);
        expect(member.code, `${member.stderr} (directory mode ${dirMode})`).toBe(0);
        await stop();
      });
    }
  });
});
