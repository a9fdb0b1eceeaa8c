/**
 * `sluice check` beyond parsing (issue 12 item 5, issue 8 item 4): it reads the cluster key file
 * the config names, and prints the advice (configWarnings) that does not make a file invalid.
 * Runs dist/src/cli.js (build first) on files in a temp dir; no root, no network.
 */
import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const REPO = join(import.meta.dirname, '..', '..');
const CLI = join(REPO, 'dist', 'src', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'sluice-check-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function cli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 30_000, encoding: 'utf8', env: { PATH: process.env.PATH, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** examples/cluster.json with its key source replaced. */
function clusterConfig(name: string, key: { keyFile?: string; keyEnv?: string }): string {
  const doc = JSON.parse(readFileSync(join(REPO, 'examples', 'cluster.json'), 'utf8')) as { cluster: Record<string, unknown> };
  delete doc.cluster.keyFile;
  Object.assign(doc.cluster, key);
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(doc));
  return file;
}

function keyFile(name: string, content: string | Buffer, mode = 0o600): string {
  const file = join(dir, name);
  writeFileSync(file, content);
  chmodSync(file, mode);
  return file;
}

describe('sluice check and the cluster key', () => {
  const cases: { name: string; key: () => { keyFile?: string; keyEnv?: string }; env?: NodeJS.ProcessEnv; code: number; says: RegExp }[] = [
    { name: 'a base64 key from `head -c 32 /dev/urandom | base64`', key: () => ({ keyFile: keyFile('b64.key', `${Buffer.alloc(32, 5).toString('base64')}\n`) }), code: 0, says: /: ok \(1 services, 3 backends\)/ },
    { name: 'a hex key from `openssl rand -hex 32`', key: () => ({ keyFile: keyFile('hex.key', `${'5a'.repeat(32)}\n`) }), code: 0, says: /: ok/ },
    { name: 'a missing key file (the old check said ok)', key: () => ({ keyFile: join(dir, 'none.key') }), code: 2, says: /\$\.cluster\.keyFile: cannot read cluster\.keyFile .*none\.key \(ENOENT\).*\(rule: cluster-key\)/ },
    { name: 'a key of 16 bytes', key: () => ({ keyFile: keyFile('short.key', Buffer.alloc(16, 7).toString('base64')) }), code: 2, says: /holds 16 bytes after base64 decoding; at least 32/ },
    { name: 'a key file readable by others: ok, with a warning', key: () => ({ keyFile: keyFile('open.key', 'ab'.repeat(32), 0o644) }), code: 0, says: /warning: \$\.cluster\.keyFile: .*readable by group or others \(mode 0644\); restrict it with: chmod 600/ },
    { name: 'a key variable set to a key', key: () => ({ keyEnv: 'SLUICE_TEST_KEY' }), env: { SLUICE_TEST_KEY: 'cd'.repeat(32) }, code: 0, says: /: ok/ },
    { name: 'a key variable unset here: ok, with a warning', key: () => ({ keyEnv: 'SLUICE_TEST_KEY' }), code: 0, says: /warning: \$\.cluster\.keyEnv: environment variable SLUICE_TEST_KEY is not set here/ },
  ];
  it.each(cases)('$name', async ({ name, key, env, code, says }) => {
    const r = await cli(['check', clusterConfig(`${name.replace(/\W+/g, '-')}.json`, key())], env);
    expect(r.code, r.stderr).toBe(code);
    expect(`${r.stdout}${r.stderr}`).toMatch(says);
  });
});

describe('sluice check shows warnings', () => {
  it('a small Maglev table: exit 0, the warning on stderr, and in --json', async () => {
    const file = join(dir, 'small-table.json');
    writeFileSync(file, JSON.stringify({ interface: 'eth0', services: [{ name: 'web', vip: '198.51.100.10', port: 80, protocol: 'tcp', forwarding: 'dsr-l2', tableSize: 7, backends: [{ address: '10.1.0.11' }, { address: '10.1.0.12' }] }] }));
    const r = await cli(['check', file]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/: ok \(1 services, 2 backends\)/);
    expect(r.stderr).toBe(`${file}: warning: $.services[0].tableSize: 7 slots for 2 backends is under 10 per backend; use a prime near 200 or more (rule: table-size-small)\n`);
    const j = await cli(['check', file, '--json']);
    expect(JSON.parse(j.stdout)).toEqual({ ok: true, services: 1, warnings: [{ path: '$.services[0].tableSize', rule: 'table-size-small', message: expect.stringContaining('under 10 per backend') }] });
  });
});
