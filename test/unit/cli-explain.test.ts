/**
 * The CLI details operators asked for (issue 13 items 5, 6): `sluice explain`, filters that match
 * nothing configured (exit 2), `reload --config` of another file (exit 2), `status --rate`, the
 * closing split and table widths. Each command runs as a child process against the fake admin API
 * (test/fixtures/admin-fake.ts), human and --json. No root, no network.
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EXPLAIN_REPRESENTATIVE, EXPLAIN_TRACKED, STATUS, startFake, type Fake } from '../fixtures/admin-fake.js';
import type { StatusReport } from '../../src/observe/admin-api.js';

const REPO = join(import.meta.dirname, '..', '..');
const CLI = join(REPO, 'dist', 'src', 'cli.js');

interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Asynchronous on purpose: the fake server lives in this process's event loop. */
function cli(args: readonly string[]): Promise<CliResult> {
  return new Promise((done) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 20_000, encoding: 'utf8' }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      done({ code, stdout, stderr });
    });
  });
}

/** A status answer with some fields changed (the fake's canned one otherwise). */
function status(change: (s: StatusReport) => void): StatusReport {
  const s = structuredClone(STATUS) as StatusReport;
  change(s);
  return s;
}

describe('sluice CLI: explain and the operator details', () => {
  let dir: string;
  let fake: Fake;

  beforeAll(async () => {
    if (!existsSync(CLI)) execFileSync('npx', ['tsc', '-p', 'tsconfig.json'], { cwd: REPO, stdio: 'inherit' });
    dir = mkdtempSync(join(tmpdir(), 'sluice-cli-explain-'));
    fake = await startFake(join(dir, 'admin.sock'));
  });
  afterAll(async () => {
    if (fake) await new Promise<void>((r) => fake.server.close(() => r()));
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  describe('explain', () => {
    it('human: service, hash and slot, tracked entry, token, owners, verdict; one line each', async () => {
      const r = await cli(['explain', '--socket', fake.socket, '--vip', '198.51.100.10', '--port', '80', '--client', '192.0.2.7', '--client-port', '40001']);
      expect(r.code, r.stderr).toBe(0);
      const lines = r.stdout.trimEnd().split('\n');
      expect(lines).toEqual([
        'flow tcp 192.0.2.7:40001 -> 198.51.100.10:80',
        '  service:     web (generation 7)',
        `  hash:        0x9e3779b9 -> Maglev slot ${0x9e3779b9 % 251} of 251 -> 10.1.0.12`,
        '  new flow:    10.1.0.12',
        '  tracked:     yes, since 2026-01-02T03:04:05.000Z (age 1.5 s, idle 0.2 s), active, on 10.1.0.11, recorded in generation 6',
        '  mptcp token: 464b4775 (token table: 10.1.0.11)',
        '  owner:       lb-b, replica lb-a (this instance)',
        '  held:        here web/10.1.0.11; owner/replica not asked (this instance is one of them)',
        '  verdict:     next packet to 10.1.0.11 by its tracked flow entry',
      ]);
      expect(fake.seen.at(-1)).toEqual({ method: 'GET', path: '/explain', query: { protocol: 'tcp', vip: '198.51.100.10', port: '80', client: '192.0.2.7', clientPort: '40001' } });
    });

    it.each([
      { name: 'IPv4 tuple', tuple: 'tcp:192.0.2.7:40001-198.51.100.10:80', query: { protocol: 'tcp', vip: '198.51.100.10', port: '80', client: '192.0.2.7', clientPort: '40001' } },
      { name: 'IPv6 tuple in brackets', tuple: 'udp:[2001:db8::7]:5353-[2001:db8:100::10]:53', query: { protocol: 'udp', vip: '2001:db8:100::10', port: '53', client: '2001:db8::7', clientPort: '5353' } },
    ])('the 5-tuple form asks the same question: $name', async ({ tuple, query }) => {
      const r = await cli(['explain', tuple, '--socket', fake.socket, '--json']);
      expect(r.code, r.stderr).toBe(0);
      expect(fake.seen.at(-1)).toEqual({ method: 'GET', path: '/explain', query });
    });

    it('--json is the admin answer; --token goes along', async () => {
      const r = await cli(['explain', '--socket', fake.socket, '--vip', '198.51.100.10', '--port', '80', '--client', '192.0.2.7', '--client-port', '40001', '--token', '464b4775', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as { flows: unknown[] };
      expect(out.flows).toEqual([EXPLAIN_TRACKED]);
      expect(fake.seen.at(-1)?.query.token).toBe('464b4775');
    });

    it('no client port: says which port it explained, and the drop reason', async () => {
      const r = await cli(['explain', '--socket', fake.socket, '--vip', '198.51.100.10', '--port', '53', '--protocol', 'udp', '--client', '192.0.2.8']);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout).toContain(`(no client port given and no tracked flow of this client: the table pick for representative client port ${EXPLAIN_REPRESENTATIVE.clientPort}`);
      expect(r.stdout).toContain('  tracked:     no');
      expect(r.stdout).toContain('  verdict:     DROP no_neighbor (backend 10.1.0.21 by the Maglev table)');
      expect(fake.seen.at(-1)?.query).not.toHaveProperty('clientPort');
    });

    it.each([
      { name: 'an unknown VIP (the API says so)', args: ['--vip', '203.0.113.99', '--port', '80', '--client', '192.0.2.7'], stderr: 'sluice: no service has VIP 203.0.113.99 (configured VIPs: 198.51.100.10, 2001:db8:100::10)', asks: true },
      { name: 'no client', args: ['--vip', '198.51.100.10', '--port', '80'], stderr: 'sluice: explain needs a VIP, a port and a client: --vip VIP --port P --client IP [--client-port N], or a tuple PROTO:CLIENT:CPORT-VIP:PORT', asks: false },
      { name: 'a malformed tuple', args: ['tcp:192.0.2.7-198.51.100.10:80'], stderr: 'sluice: tuple "tcp:192.0.2.7-198.51.100.10:80" is not PROTO:CLIENT:CPORT-VIP:PORT (e.g. tcp:192.0.2.7:40001-198.51.100.10:80, IPv6 in brackets)', asks: false },
      { name: 'a protocol other than tcp/udp', args: ['--vip', '198.51.100.10', '--port', '80', '--client', '192.0.2.7', '--protocol', 'sctp'], stderr: 'sluice: --protocol must be tcp or udp, got "sctp"', asks: false },
      { name: 'a token that is not hex', args: ['--vip', '198.51.100.10', '--port', '80', '--client', '192.0.2.7', '--token', 'xyz'], stderr: 'sluice: --token must be up to 8 hex digits, got "xyz"', asks: false },
    ])('exit 2 for $name', async ({ args, stderr, asks }) => {
      const before = fake.seen.length;
      for (const json of [[], ['--json']]) {
        const r = await cli(['explain', ...args, ...json, '--socket', fake.socket]);
        expect(r.code, r.stderr).toBe(2);
        expect(r.stderr.trim()).toBe(stderr);
        expect(r.stdout).toBe('');
      }
      expect(fake.seen.length - before, 'requests sent').toBe(asks ? 2 : 0);
    });
  });

  describe('filters that match nothing configured: exit 2 with a clear message', () => {
    it.each([
      { name: 'flows --vip bogus', args: ['flows', '--vip', '203.0.113.5'], stderr: 'sluice: no service has VIP 203.0.113.5 (configured VIPs: 198.51.100.10, 2001:db8:100::10)' },
      { name: 'flows --backend unknown', args: ['flows', '--backend', '10.9.9.9'], stderr: 'sluice: no service has backend 10.9.9.9' },
      { name: 'backends --service nope', args: ['backends', '--service', 'nope'], stderr: 'sluice: no service named "nope" (services: web, dns)' },
    ])('$name', async ({ args, stderr }) => {
      for (const json of [[], ['--json']]) {
        const r = await cli([...args, ...json, '--socket', fake.socket]);
        expect(r.code, `${args.join(' ')} ${json.join(' ')}: ${r.stderr}`).toBe(2);
        expect(r.stderr.trim()).toBe(stderr);
        expect(r.stdout).toBe('');
      }
    });

    it('a filter that matches something still answers (exit 0)', async () => {
      for (const args of [['flows', '--vip', '198.51.100.10'], ['backends', '--service', 'dns']]) {
        const r = await cli([...args, '--socket', fake.socket]);
        expect(r.code, r.stderr).toBe(0);
      }
    });
  });

  describe('reload --config', () => {
    it('refuses a file other than the running one: exit 2, both paths, nothing reloaded', async () => {
      const before = fake.seen.filter((s) => s.path === '/reload').length;
      const r = await cli(['reload', '--socket', fake.socket, '--config', 'other.json']);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toContain(`--config ${resolve('other.json')} is not the running instance's config file ${STATUS.config}`);
      expect(fake.seen.filter((s) => s.path === '/reload').length).toBe(before);
    });

    it('the running file itself is reloaded', async () => {
      const r = await cli(['reload', '--socket', fake.socket, '--config', STATUS.config]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stdout.trim()).toBe('reloaded: web: weight 10.1.0.11 1 -> 2');
    });
  });

  describe('status', () => {
    const second = status((s) => {
      s.traffic = { ...s.traffic, rxFrames: s.traffic.rxFrames + 5000, rxBytes: 1_000_000, txFrames: s.traffic.txFrames + 4000, txBytes: 800_000 };
      s.flows = { ...s.flows, created: s.flows.created + 300 };
      s.services[0].backends[0] = { ...s.services[0].backends[0], packets: s.services[0].backends[0].packets + 2000, bytes: s.services[0].backends[0].bytes + 250_000, flowsCreated: s.services[0].backends[0].flowsCreated + 100 };
    });
    const first = status((s) => (s.traffic = { ...s.traffic, rxBytes: 0, txBytes: 0 }));

    it('--rate: pps, bps and new flows/s from two snapshots, and says so', async () => {
      fake.statusQueue.push(first, second);
      const r = await cli(['status', '--rate', '--interval', '0.5', '--socket', fake.socket]);
      expect(r.code, r.stderr).toBe(0);
      // Rates depend on the measured interval (>= 0.5 s): check the form, then the figures in --json.
      expect(r.stdout).toMatch(/rates over \d+\.\d\d s \(two \/status snapshots\): in \S+ pps \S+bit\/s, out \S+ pps \S+bit\/s, \S+ new flows\/s/);
      expect(r.stdout).toMatch(/SERVICE\s+BACKEND\s+PPS\s+BPS\s+NEW_FLOWS\/S/);
    });

    it('--rate --json: the second snapshot plus rates', async () => {
      fake.statusQueue.push(first, second);
      const r = await cli(['status', '--rate', '--interval', '0.5', '--json', '--socket', fake.socket]);
      expect(r.code, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout) as StatusReport & { rates: { method: string; intervalS: number; total: { pps: number; bps: number; newFlowsPerS: number }; backends: { address: string; pps: number }[] } };
      const s = out.rates.intervalS;
      expect(out.rates.method).toBe('two /status snapshots');
      expect(s).toBeGreaterThanOrEqual(0.5);
      expect(out.rates.total.pps * s).toBeCloseTo(5000, 3);
      expect(out.rates.total.bps * s).toBeCloseTo(8_000_000, 0);
      expect(out.rates.total.newFlowsPerS * s).toBeCloseTo(300, 3);
      expect(out.rates.backends.find((b) => b.address === '10.1.0.11')!.pps * s).toBeCloseTo(2000, 3);
      expect(out.rates.backends.find((b) => b.address === '10.1.0.12')!.pps).toBe(0);
      expect(out.traffic.rxFrames).toBe(second.traffic.rxFrames);
    });

    it('flows split into open and closing when the daemon reports it', async () => {
      fake.statusQueue.push(status((s) => (s.flows = { ...s.flows, active: 12, closing: 5 })));
      const r = await cli(['status', '--socket', fake.socket]);
      expect(r.stdout).toContain('flows: 12 active (7 open, 5 closing) of 1048576, 345 created, 2 evicted');
    });

    it('a long unresolved-backend problem is cut to the column width; --json keeps it whole', async () => {
      const problem = `no route to 10.1.0.13: ${'the neighbour table has no entry and the ARP probe timed out '.repeat(3)}`;
      const long = status((s) => (s.services[0].backends[2] = { ...s.services[0].backends[2], problem }));
      fake.statusQueue.push(long, long);
      const human = await cli(['status', '--socket', fake.socket]);
      const widest = Math.max(...human.stdout.split('\n').map((l) => l.length));
      console.log(`status table width with a ${problem.length}-char problem: ${widest} columns`);
      expect(widest).toBeLessThanOrEqual(160);
      expect(human.stdout).toContain(`${`unresolved (${problem}`.slice(0, 47)}…`);
      const json = await cli(['status', '--json', '--socket', fake.socket]);
      expect((JSON.parse(json.stdout) as StatusReport).services[0].backends[2].problem).toBe(problem);
    });
  });
});
