/**
 * Config input is linear and bounded (issue 10 item 4): hostile files are reported cleanly, with
 * the issue list capped at MAX_REPORTED_ISSUES plus the count of the rest, never a stack
 * overflow. The timeouts are not speed assertions: they only stop a quadratic run (the old
 * loader took over 60 s for 100k repeated keys and crashed on ~200k issues) from hanging CI.
 * The CLI cases run dist/src/cli.js (build first), as test/unit/cli-output.test.ts does.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError, formatIssues, MAX_CONFIG_BYTES, MAX_REPORTED_ISSUES, parseConfig } from '../../src/config/load.js';
import { IssueList, type ConfigIssue } from '../../src/config/issues.js';
import { SCAN_LIMITS } from '../../src/config/json-scan.js';

const CLI = join(import.meta.dirname, '..', '..', 'dist', 'src', 'cli.js');
const dir = mkdtempSync(join(tmpdir(), 'sluice-limits-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const SERVICE = '{"name":"web","vip":"198.51.100.10","port":80,"protocol":"tcp","forwarding":"dsr-l2","backends":[{"address":"10.1.0.11"}]}';

/** A file whose top level repeats `key` `n` + 1 times ("hashSeed": otherwise valid; "a": 6 bytes each, one unknown key). */
function duplicateKeys(n: number, key = 'hashSeed'): string {
  return `{"interface":"eth0","services":[${SERVICE}]${`,"${key}":1`.repeat(n + 1)}}`;
}

function rejection(text: string): ConfigError {
  try {
    parseConfig(text, 'hostile.json');
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('the file was accepted');
}

function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 120_000, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

describe('hostile config files', () => {
  it('100k repeated keys: every one counted, the first 100 listed with line and column', { timeout: 60_000 }, () => {
    const e = rejection(duplicateKeys(100_000));
    expect(e.total).toBe(100_000);
    expect(e.issues).toHaveLength(MAX_REPORTED_ISSUES);
    expect(e.issues[0]).toEqual({
      path: '$.hashSeed',
      rule: 'duplicate-key',
      message: expect.stringMatching(/^key appears twice \(line 1 column \d+, line 1 column \d+\)/),
    });
    const lines = formatIssues(e).split('\n');
    expect(lines).toHaveLength(MAX_REPORTED_ISSUES + 1);
    expect(lines.at(-1)).toBe(`... and ${100_000 - MAX_REPORTED_ISSUES} more issues (the first ${MAX_REPORTED_ISSUES} are shown)`);
  });

  it('repeated keys on many lines report the right line numbers', () => {
    const e = rejection(`{\n"interface": "eth0",\n"services": [${SERVICE}],\n"interface": "eth1"\n}`);
    expect(e.issues.map((i) => i.message)).toEqual([expect.stringContaining('(line 2 column 1, line 4 column 1)')]);
  });

  it('a 1M-entry issue list becomes a ConfigError without overflowing the stack', () => {
    const issues: ConfigIssue[] = Array.from({ length: 1_000_000 }, (_, i) => ({ path: `$.services[${i}]`, rule: 'required', message: 'is required' }));
    const e = new ConfigError(issues, 'big.json');
    expect([e.total, e.issues.length]).toEqual([1_000_000, MAX_REPORTED_ISSUES]);
    expect(e.message.split('\n').at(-1)).toBe(`... and ${1_000_000 - MAX_REPORTED_ISSUES} more issues (the first ${MAX_REPORTED_ISSUES} are shown)`);
  });

  it('an IssueList keeps the first distinct issues and counts every one', () => {
    const list = new IssueList(3);
    for (const path of ['$.a', '$.a', '$.b', '$.c', '$.d', '$.e']) list.add({ path, rule: 'r', message: 'm' });
    list.count(10);
    expect(list.kept.map((i) => i.path)).toEqual(['$.a', '$.b', '$.c']);
    expect(list.total).toBe(15);
  });

  const shapes: { name: string; text: () => string; want: { path: string; rule: string } }[] = [
    { name: 'arrays nested 100k deep', text: () => `${'['.repeat(100_000)}${']'.repeat(100_000)}`, want: { path: `$${'[0]'.repeat(SCAN_LIMITS.maxDepth)}`, rule: 'max-depth' } },
    { name: 'objects nested 100k deep', text: () => `${'{"a":'.repeat(100_000)}1${'}'.repeat(100_000)}`, want: { path: `$${'.a'.repeat(SCAN_LIMITS.maxDepth)}`, rule: 'max-depth' } },
    { name: 'a list of 100k services', text: () => `{"interface":"eth0","services":[${Array(100_000).fill('{}').join(',')}]}`, want: { path: '$.services', rule: 'maxItems' } },
    { name: 'an object with 100k keys', text: () => `{"interface":"eth0","services":[${SERVICE}],${Array.from({ length: 100_000 }, (_, i) => `"k${i}":1`).join(',')}}`, want: { path: '$', rule: 'maxProperties' } },
    { name: 'a text over the size limit', text: () => ' '.repeat(MAX_CONFIG_BYTES + 1), want: { path: '$', rule: 'file-size' } },
  ];
  it.each(shapes)('$name: one clear issue', { timeout: 60_000 }, ({ text, want }) => {
    const e = rejection(text());
    expect(e.issues.map(({ path, rule }) => ({ path, rule }))).toEqual([want]);
  });

  it('4000 services missing every key: 24k schema issues counted, no quadratic error merging', { timeout: 60_000 }, () => {
    const services = Array.from({ length: 2 }, () => `[${Array(4000).fill('{}').join(',')}]`);
    const e = rejection(`{"interface":"eth0","services":${services[0]},"extra":${services[1]}}`);
    // 4000 services x 6 required keys, plus "extra" unknown; the second list is not a service list.
    expect(e.total).toBe(4000 * 6 + 1);
    expect(e.issues[0]).toMatchObject({ rule: 'additionalProperties', path: '$.extra' });
  });
});

describe('sluice check on hostile files (exit 2, a capped report)', () => {
  it('100k repeated keys', { timeout: 120_000 }, async () => {
    const file = join(dir, 'dup100k.json');
    writeFileSync(file, duplicateKeys(100_000));
    const r = await cli(['check', file]);
    expect(r.code, r.stderr.slice(0, 500)).toBe(2);
    expect(r.stderr.split('\n')[0]).toBe(`${file}: invalid (100000 issues)`);
    expect(r.stderr).toContain(`... and ${100_000 - MAX_REPORTED_ISSUES} more issues`);
    const j = await cli(['check', file, '--json']);
    const out = JSON.parse(j.stdout) as { ok: boolean; total: number; issues: unknown[] };
    expect([j.code, out.ok, out.total, out.issues.length]).toEqual([2, false, 100_000, MAX_REPORTED_ISSUES]);
  });

  it('1M repeated keys (a 1M-entry issue list)', { timeout: 120_000 }, async () => {
    const file = join(dir, 'dup1m.json');
    writeFileSync(file, duplicateKeys(1_000_000, 'a'));
    const r = await cli(['check', file]);
    expect(r.code, r.stderr.slice(0, 500)).toBe(2);
    expect(r.stderr).not.toContain('Maximum call stack');
    // 1M repeats and the unknown key "a" itself.
    expect(r.stderr.split('\n')[0]).toBe(`${file}: invalid (1000001 issues)`);
    expect(r.stderr).toContain(`... and ${1_000_001 - MAX_REPORTED_ISSUES} more issues`);
  });

  it('a file over the size limit is refused unread', { timeout: 60_000 }, async () => {
    const file = join(dir, 'huge.json');
    writeFileSync(file, Buffer.alloc(MAX_CONFIG_BYTES + 1, 0x20));
    const r = await cli(['check', file]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('(rule: file-size)');
  });
});
