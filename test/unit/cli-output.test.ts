/**
 * The `sluice` CLI as an operator sees it: each command run as a child process
 * (`node dist/src/cli.js ... --socket S`) against a fake admin API (node:http on a unix socket in a
 * temp dir, test/fixtures/admin-fake.ts) that answers with canned JSON of the admin API's own types
 * (src/observe/admin-api.ts), so a field the daemon renames breaks the type check. Human tables are checked for
 * their rows and columns, --json for the exact data; the error paths for exit codes and messages.
 * No root, no network.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { VERSION } from '../../src/version.js';
import { BACKENDS, FLOWS, STATUS, send, startFake, type Fake } from '../fixtures/admin-fake.js';

const REPO = join(import.meta.dirname, '..', '..');
const CLI = join(REPO, 'dist', 'src', 'cli.js');

// ---- running the CLI ----------------------------------------------------------------------
interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Asynchronous on purpose: the fake server lives in this process's event loop. */
function cli(args: readonly string[]): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 20_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** Lines of a table: header first. Cells are separated by two or more spaces. */
function tableLines(out: string, header: string): string[] {
  const lines = out.split('\n');
  const start = lines.findIndex((l) => l.startsWith(header));
  if (start < 0) throw new Error(`no table starting with ${header} in:\n${out}`);
  const end = lines.findIndex((l, i) => i > start && l.trim() === '');
  return lines.slice(start, end < 0 ? undefined : end);
}

function cells(line: string): string[] {
  return line.trim().split(/ {2,}/);
}

/** Every cell of `row` starts in the column of its header cell (a fixed-width table). */
function expectAligned(header: string, row: string): void {
  const names = cells(header);
  let from = 0;
  for (const name of names) {
    const col = header.indexOf(name, from);
    from = col + name.length;
    expect(row[col - 1] ?? ' ', `cell under ${name} starts at column ${col} in "${row}"`).toBe(' ');
    expect(row[col] ?? '', `cell under ${name} in "${row}"`).not.toBe(' ');
  }
}

describe('sluice CLI output against a fake admin API', () => {
  let dir: string;
  let fake: Fake;
  let fake404: Fake;

  beforeAll(async () => {
    if (!existsSync(CLI)) execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'inherit' });
    dir = mkdtempSync(join(tmpdir(), 'sluice-cli-'));
    fake = await startFake(join(dir, 'admin.sock'));
    fake404 = await startFake(join(dir, 'old.sock'), true);
  });
  afterAll(async () => {
    for (const f of [fake, fake404]) if (f) await new Promise<void>((r) => f.server.close(() => r()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('status', () => {
    it('human: summary lines, then one row per backend with effective weight and status', async () => {
      const r = await cli(['status', '--socket', fake.socket]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain('sluice 0.1.0  generation 7  config /etc/sluice/sluice.json');
      expect(r.stdout).toContain('data plane: up (engine batch, pid 4242, restarts 1)');
      expect(r.stdout).toContain('flows: 12 active of 1048576, 345 created, 2 evicted');
      expect(r.stdout).toContain('frames: 1000 in, 990 out, 3 tx errors, 4 capture drops');
      expect(r.stdout).toContain('drops: no_service=10 malformed=2');
      expect(r.stdout).toContain('last reload: 2026-01-02T03:10:00.000Z ok: web: +1 backend');
      const t = tableLines(r.stdout, 'SERVICE');
      expect(cells(t[0])).toEqual(['SERVICE', 'VIP', 'MODE', 'BACKEND', 'WEIGHT', 'STATUS', 'MAC', 'FLOWS', 'PACKETS']);
      expect(t.slice(1).map(cells)).toEqual([
        ['web', '198.51.100.10:80/tcp', 'dsr-l2', '10.1.0.11', '1', 'serving', '02:00:00:00:00:11', '100', '500'],
        ['web', '198.51.100.10:80/tcp', 'dsr-l2', '10.1.0.12', '1', 'down', '02:00:00:00:00:12', '9', '77'],
        ['web', '198.51.100.10:80/tcp', 'dsr-l2', '10.1.0.13', '1', 'unresolved', 'unresolved (no neighbour entry)', '0', '0'],
        ['dns', '198.51.100.10:53/udp', 'ipip', '10.1.0.21', '3', 'draining', '02:00:00:00:00:21', '20', '60'],
        ['web6', '[2001:db8:100::10]:80/tcp', 'dsr-l2', 'fd00::11', '1', 'spare-serving', '02:00:00:00:00:11', '2', '8'],
      ]);
      for (const row of t.slice(1)) expectAligned(t[0], row);
    });

    it('a daemon without per-backend status (older /status) still prints, with "-"', async () => {
      const old = structuredClone(STATUS) as { services: { backends: Record<string, unknown>[] }[] };
      for (const s of old.services) for (const b of s.backends) delete b['status'];
      const sock = join(dir, 'old-status.sock');
      const srv = createServer((_req, res) => send(res, 200, old));
      await new Promise<void>((r) => srv.listen(sock, () => r()));
      try {
        const r = await cli(['status', '--socket', sock]);
        expect(r.code, r.stderr).toBe(0);
        expect(cells(tableLines(r.stdout, 'SERVICE')[1])[5]).toBe('-');
      } finally {
        await new Promise<void>((r) => srv.close(() => r()));
      }
    });

    it('--json: the admin answer, unchanged', async () => {
      const r = await cli(['status', '--socket', fake.socket, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(STATUS);
    });

    it('--config: the socket comes from the config file', async () => {
      const cfg = join(dir, 'sluice.json');
      writeFileSync(
        cfg,
        JSON.stringify({
          interface: 'eth0',
          services: [{ name: 'web', vip: '198.51.100.10', port: 80, protocol: 'tcp', forwarding: 'dsr-l2', backends: [{ address: '10.1.0.11' }] }],
          admin: { socket: fake.socket },
        }),
      );
      const r = await cli(['status', '--config', cfg, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(STATUS);
    });
  });

  describe('backends', () => {
    it('human: role, status (operator overrides marked), health with the last error, flows', async () => {
      const r = await cli(['backends', '--socket', fake.socket]);
      expect(r.code, r.stderr).toBe(0);
      const t = tableLines(r.stdout, 'SERVICE');
      expect(cells(t[0])).toEqual(['SERVICE', 'BACKEND', 'ROLE', 'WEIGHT', 'STATUS', 'HEALTH', 'ACTIVE_FLOWS', 'CLOSING', 'FLOWS', 'PACKETS']);
      expect(t.slice(1).map(cells)).toEqual([
        ['web', '10.1.0.11', 'primary', '1', 'serving', 'http up', '5', '2', '100', '500'],
        ['web', '10.1.0.12', 'primary', '1', 'down', 'http down (connect ECONNREFUSED 10.1.0.12:80)', '0', '0', '9', '77'],
        ['web', '10.1.0.19', 'spare', '1', 'spare-standby', 'http up', '0', '0', '0', '0'],
        ['dns', '10.1.0.21', 'primary', '3', 'draining (operator)', '-', '4', '1', '20', '60'],
      ]);
      for (const row of t.slice(1)) expectAligned(t[0], row);
    });

    it('--service filters; --json is the admin answer (filtered the same way)', async () => {
      const human = await cli(['backends', '--socket', fake.socket, '--service', 'dns']);
      expect(human.code, human.stderr).toBe(0);
      expect(tableLines(human.stdout, 'SERVICE').slice(1).map((l) => cells(l)[0])).toEqual(['dns']);
      const all = await cli(['backends', '--socket', fake.socket, '--json']);
      expect(JSON.parse(all.stdout)).toEqual(BACKENDS);
      const web = await cli(['backends', '--socket', fake.socket, '--json', '--service', 'web']);
      expect(JSON.parse(web.stdout)).toEqual({ backends: BACKENDS.backends.filter((b) => b.service === 'web') });
    });
  });

  describe('flows', () => {
    it('human: one row per flow (ages in seconds), then how many of how many', async () => {
      const r = await cli(['flows', '--socket', fake.socket]);
      expect(r.code, r.stderr).toBe(0);
      const t = tableLines(r.stdout, 'PROTO');
      expect(cells(t[0])).toEqual(['PROTO', 'CLIENT', 'VIP', 'SERVICE', 'BACKEND', 'AGE_S', 'IDLE_S', 'STATE']);
      const rows = t.slice(1, -1);
      expect(rows.map(cells)).toEqual([
        ['tcp', '192.0.2.7:40001', '198.51.100.10:80', 'web', '10.1.0.11', '1.5', '0.2', 'active'],
        ['udp', '192.0.2.8:53000', '198.51.100.10:53', 'dns', '10.1.0.21', '12.3', '10.0', 'active'],
        ['tcp', '[2001:db8::7]:40002', '[2001:db8:100::10]:80', 'web6', 'fd00::11', '61.0', '9.0', 'closing'],
      ]);
      for (const row of rows) expectAligned(t[0], row);
      expect(t.at(-1)).toBe('3 of 120 matching flows shown');
      expect(fake.seen.at(-1)).toEqual({ method: 'GET', path: '/flows', query: { limit: '100' } });
    });

    it('filters and --limit go to the admin API; --json is its answer', async () => {
      const r = await cli(['flows', '--socket', fake.socket, '--vip', '198.51.100.10', '--backend', '10.1.0.11', '--client', '192.0.2.7', '--limit', '5', '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toEqual(FLOWS);
      expect(fake.seen.at(-1)).toEqual({ method: 'GET', path: '/flows', query: { limit: '5', vip: '198.51.100.10', backend: '10.1.0.11', client: '192.0.2.7' } });
    });
  });

  describe('drain, undrain, weight, reload', () => {
    it('drain and undrain: print what changed; the request names the backend (and service)', async () => {
      const d = await cli(['drain', '10.1.0.11', '--socket', fake.socket]);
      expect(d.code, d.stderr).toBe(0);
      expect(d.stdout.trim()).toBe('drain 10.1.0.11 in web: generation 8');
      expect(fake.seen.at(-1)).toEqual({ method: 'POST', path: '/backends/drain', query: { address: '10.1.0.11' } });
      const u = await cli(['undrain', '10.1.0.21', '--service', 'dns', '--socket', fake.socket]);
      expect(u.code, u.stderr).toBe(0);
      expect(u.stdout.trim()).toBe('undrain 10.1.0.21 in dns: generation 8');
      expect(fake.seen.at(-1)).toEqual({ method: 'POST', path: '/backends/undrain', query: { address: '10.1.0.21', service: 'dns' } });
    });

    it('--json: the admin answer', async () => {
      const d = await cli(['drain', '10.1.0.11', '--socket', fake.socket, '--json']);
      expect(d.code, d.stderr).toBe(0);
      expect(JSON.parse(d.stdout)).toEqual({ ok: true, message: 'drain 10.1.0.11 in web: generation 8', matched: ['web'] });
    });

    it('weight: the new weight goes in the request', async () => {
      const w = await cli(['weight', '10.1.0.12', '0', '--socket', fake.socket]);
      expect(w.code, w.stderr).toBe(0);
      expect(w.stdout.trim()).toBe('weight 10.1.0.12 = 0 in web: generation 8');
      expect(fake.seen.at(-1)).toEqual({ method: 'POST', path: '/backends/weight', query: { address: '10.1.0.12', weight: '0' } });
    });

    it('reload: the change summary; refused: exit 1 with the reason', async () => {
      const ok = await cli(['reload', '--socket', fake.socket]);
      expect(ok.code, ok.stderr).toBe(0);
      expect(ok.stdout.trim()).toBe('reloaded: web: weight 10.1.0.11 1 -> 2');
      fake.reloadOk = false;
      try {
        const no = await cli(['reload', '--socket', fake.socket]);
        expect(no.code).toBe(1);
        expect(no.stderr.trim()).toBe('reload refused: these settings change only with a restart: hashSeed');
      } finally {
        fake.reloadOk = true;
      }
    });
  });

  describe('errors: exit non-zero with a message that says what to do', () => {
    it('no admin socket: exit 1, names the path and --socket', async () => {
      const missing = join(dir, 'nothing-here.sock');
      for (const args of [['status'], ['backends', '--json'], ['flows'], ['drain', '10.1.0.11'], ['reload']]) {
        const r = await cli([...args, '--socket', missing]);
        expect(r.code, args.join(' ')).toBe(1);
        expect(r.stderr.trim(), args.join(' ')).toBe(`sluice: no Sluice is listening on ${missing} (is it running? pass --socket PATH)`);
        expect(r.stdout, args.join(' ')).toBe('');
      }
    });

    it('admin API answers 404: exit 1 with its error', async () => {
      for (const [args, path] of [
        [['status'], 'GET /status'],
        [['backends'], 'GET /backends'],
        [['flows', '--json'], 'GET /flows'],
      ] as const) {
        const r = await cli([...args, '--socket', fake404.socket]);
        expect(r.code, args.join(' ')).toBe(1);
        expect(r.stderr.trim()).toBe(`sluice: admin API answered 404: no such endpoint: ${path}`);
      }
      const d = await cli(['drain', '10.9.9.9', '--socket', fake.socket]);
      expect(d.code).toBe(1);
      expect(d.stderr.trim()).toBe('sluice drain: no backend 10.9.9.9');
      expect(d.stdout).toBe('');
    });

    it('bad weight: refused before any request (not a number) or by the API (out of range)', async () => {
      const before = fake.seen.length;
      for (const bad of ['abc', '-1', '1.5', '']) {
        const r = await cli(['weight', '10.1.0.11', bad, '--socket', fake.socket]);
        expect(r.code, bad).toBe(1);
        expect(r.stderr.trim(), bad).toBe(`sluice: weight must be an integer 0..1000, got ${JSON.stringify(bad)}`);
      }
      expect(fake.seen.length, 'requests sent for a malformed weight').toBe(before);
      const big = await cli(['weight', '10.1.0.11', '5000', '--socket', fake.socket]);
      expect(big.code).toBe(1);
      expect(big.stderr.trim()).toBe('sluice weight: weight must be an integer 0..1000');
    });

    it('bad arguments: commander says which', async () => {
      const limit = await cli(['flows', '--limit', '0', '--socket', fake.socket]);
      expect(limit.code).toBe(1);
      expect(limit.stderr).toContain("option '--limit <n>' argument '0' is invalid. must be a positive integer");
      const noBackend = await cli(['drain', '--socket', fake.socket]);
      expect(noBackend.code).toBe(1);
      expect(noBackend.stderr).toContain("missing required argument 'backend'");
      const unknown = await cli(['frobnicate']);
      expect(unknown.code).toBe(1);
      expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    });
  });

  describe('offline commands', () => {
    it('check: a valid example is ok (exit 0), an invalid file lists JSON paths and rules (exit 2), --json for scripts', async () => {
      for (const example of ['minimal.json', 'health.json']) {
        const r = await cli(['check', join(REPO, 'examples', example)]);
        expect(r.code, r.stderr).toBe(0);
        expect(r.stdout).toMatch(/: ok \(\d+ services, \d+ backends\)/);
      }
      const health = await cli(['check', join(REPO, 'examples', 'health.json'), '--json']);
      expect(JSON.parse(health.stdout)).toEqual({ ok: true, services: 3 });
      const bad = join(dir, 'bad.json');
      writeFileSync(bad, JSON.stringify({ interface: 'eth0', services: [{ name: 'web', vip: '198.51.100.10', port: 80, protocol: 'tcp', forwarding: 'dsr-l2', backends: [{ address: '10.1.0.11', role: 'hot-spare' }] }] }));
      const r = await cli(['check', bad]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`${bad}: invalid`);
      expect(r.stderr).toContain('$.services[0].backends[0].role');
      const j = await cli(['check', bad, '--json']);
      expect(j.code).toBe(2);
      const parsed = JSON.parse(j.stdout) as { ok: boolean; issues: { path: string; rule: string }[] };
      expect(parsed.ok).toBe(false);
      expect(parsed.issues.map((i) => i.path)).toContain('$.services[0].backends[0].role');
    });

    it('--version prints the package version', async () => {
      const r = await cli(['--version']);
      expect(r.code).toBe(0);
      expect(r.stdout.trim()).toBe(VERSION);
    });

    it('run with a missing config: exit 2, names the file', async () => {
      const r = await cli(['run', '--config', join(dir, 'missing.json')]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`invalid config ${join(dir, 'missing.json')}`);
      expect(r.stderr).toContain('ENOENT');
    });
  });
});
