/**
 * e2e (root: network namespaces, raw sockets, BIRD): the two demos the README opens with run to
 * a PASS verdict. `npm run demo` builds the single-instance lab; `npm run demo -- --cluster`
 * builds a BIRD 2 router over three announcing instances, kills one and brings it back. Both
 * tear their labs down themselves; each is bounded by a timeout here.
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO, e2eEnabled, ensureBuilt } from './sluice-harness.js';

const run = promisify(execFile);
const enabled = e2eEnabled('e2e demos (npm run demo, npm run demo -- --cluster)');

async function demo(args: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(process.execPath, [join(REPO, 'dist', 'scripts', 'demo.js'), ...args], { timeout: 180_000, maxBuffer: 16 << 20 });
    return { code: 0, stdout };
  } catch (e) {
    const err = e as { code?: number; stdout?: string };
    return { code: typeof err.code === 'number' ? err.code : 1, stdout: err.stdout ?? '' };
  }
}

describe.skipIf(!enabled)('demos', () => {
  it.each([
    { name: 'single instance: HTTP, UDP, IPv6 and long-lived traffic with fair shares', args: [] },
    { name: 'cluster: 3 instances announce over BGP, one killed is withdrawn, comes back', args: ['--cluster'] },
  ])('$name', async ({ args }) => {
    ensureBuilt();
    const r = await demo(args);
    process.stderr.write(r.stdout.split('\n').filter((l) => /PASS|FAIL|Verdict/.test(l)).join('\n') + '\n');
    expect(r.stdout).toMatch(/^Verdict: PASS/m);
    expect(r.code).toBe(0);
  }, 200_000);
});
