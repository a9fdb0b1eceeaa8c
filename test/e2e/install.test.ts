/**
 * e2e: a fresh install from the packed tarball, as an operator does it on another machine:
 * `npm pack` (prepack compiles dist/ and records the build), then `npm install -g` of that
 * tarball into an empty temporary prefix, which builds the capture addon there from the sources
 * the tarball carries. From that prefix, `sluice --version` and `sluice check` work.
 *
 * Needs: the build toolchain and libpcap headers (scripts/setup.sh), and the npm registry for the
 * tarball's runtime dependencies (--prefer-offline takes them from the local npm cache when it
 * holds them). No root needed; nothing listens on a network. Bounded: every command has a timeout.
 */
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { REPO } from './sluice-harness.js';

const PACK_MS = 180_000;
const INSTALL_MS = 300_000;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: readonly string[], opts: { cwd?: string; timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: opts.cwd, timeout: opts.timeoutMs, encoding: 'utf8', env: opts.env ?? process.env, maxBuffer: 16 * 2 ** 20 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

describe('install from the packed tarball', () => {
  let dir = '';
  let prefix = '';
  let tarball = '';
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8')) as { version: string };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sl-install-'));
    prefix = join(dir, 'prefix');
    const packed = await run('npm', ['pack', '--pack-destination', dir], { cwd: REPO, timeoutMs: PACK_MS });
    expect(packed.code, `npm pack failed:\n${packed.stderr.slice(-3000)}`).toBe(0);
    const files = readdirSync(dir).filter((f) => f.endsWith('.tgz'));
    expect(files).toHaveLength(1);
    tarball = join(dir, files[0] ?? '');
    const installed = await run(
      'npm',
      ['install', '-g', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', '--allow-scripts=sluice,cap,raw-socket', tarball],
      // A clean environment for npm: no npm_* variables inherited from a `npm test` around us.
      { cwd: dir, timeoutMs: INSTALL_MS, env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.toLowerCase().startsWith('npm_'))) },
    );
    expect(installed.code, `npm install -g failed:\n${installed.stderr.slice(-4000)}`).toBe(0);
  }, PACK_MS + INSTALL_MS);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the tarball carries the compiled CLI, the build record and the addon sources, not a prebuilt addon or tests', async () => {
    const listed = await run('tar', ['-tzf', tarball], { timeoutMs: 30_000 });
    const names = listed.stdout.split('\n').filter(Boolean);
    for (const want of ['package/dist/src/cli.js', 'package/dist/build-info.json', 'package/src/dataplane/native/binding.gyp', 'package/src/dataplane/native/sluice_pcap.c', 'package/examples/minimal.json']) {
      expect(names, want).toContain(want);
    }
    expect(names.filter((n) => n.includes('/build/') || n.endsWith('.node') || n.startsWith('package/test/') || n.startsWith('package/dist/scripts/'))).toEqual([]);
  });

  it('the install built the capture addon in place and pulled no devDependencies', () => {
    const root = join(prefix, 'lib', 'node_modules', 'sluice');
    expect(existsSync(join(root, 'src', 'dataplane', 'native', 'build', 'Release', 'sluice_pcap.node'))).toBe(true);
    for (const dev of ['typescript', 'vitest', 'node-gyp', 'vega']) expect(existsSync(join(root, 'node_modules', dev)), dev).toBe(false);
  });

  it('sluice --version from the prefix prints the version and the build', async () => {
    const r = await run(join(prefix, 'bin', 'sluice'), ['--version'], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    const info = JSON.parse(readFileSync(join(REPO, 'dist', 'build-info.json'), 'utf8')) as { commit: string };
    expect(r.stdout.trim()).toBe(`${pkg.version}+${info.commit}`);
    expect(info.commit).toMatch(/^([0-9a-f]{7,40}(-dirty)?|unknown)$/);
    console.log(`install e2e: sluice --version from the installed prefix: ${r.stdout.trim()}`);
  });

  it('sluice check examples/minimal.json from the prefix passes', async () => {
    const r = await run(join(prefix, 'bin', 'sluice'), ['check', join(prefix, 'lib', 'node_modules', 'sluice', 'examples', 'minimal.json')], { timeoutMs: 20_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/ok/);
  });
});
