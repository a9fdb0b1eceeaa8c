/**
 * InstanceLock (src/runtime/instance-lock.ts): one instance per interface, per network
 * namespace unless allowed, and per admin socket; the holder's pid in every refusal; a dead
 * holder never blocks. Abstract names use a per-run prefix, so a real Sluice on this host is
 * never involved. Needs `npm run build` first (the addon's flock and SO_PEERCRED; the dead-holder
 * case runs dist/src/runtime/instance-lock.js in a child process).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { InstanceConflictError, InstanceLock, type InstanceClaimOptions } from '../../src/runtime/instance-lock.js';

const dir = mkdtempSync(join(tmpdir(), 'sl-lock-'));
const prefix = `sl-test-${process.pid}-${Date.now() % 100000}/`;
const held: InstanceLock[] = [];
afterEach(() => {
  for (const l of held.splice(0)) l.release();
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const opts = (o: Partial<InstanceClaimOptions>): InstanceClaimOptions => ({
  interface: 'eth0',
  adminSocket: join(dir, 'a.sock'),
  allowOthers: false,
  abstractPrefix: prefix,
  ...o,
});

async function claim(o: Partial<InstanceClaimOptions>): Promise<InstanceLock> {
  const l = await InstanceLock.claim(opts(o));
  held.push(l);
  return l;
}

async function refusal(o: Partial<InstanceClaimOptions>): Promise<InstanceConflictError> {
  try {
    held.push(await InstanceLock.claim(opts(o)));
  } catch (e) {
    if (e instanceof InstanceConflictError) return e;
    throw e;
  }
  throw new Error('the second claim was not refused');
}

describe('InstanceLock: who may start beside whom', () => {
  const cases: { name: string; first: Partial<InstanceClaimOptions>; second: Partial<InstanceClaimOptions>; refused: RegExp | null }[] = [
    { name: 'same interface, same socket: refused (interface)', first: {}, second: {}, refused: /captures on interface eth0/ },
    { name: 'same interface, other socket: refused', first: {}, second: { adminSocket: join(dir, 'b.sock') }, refused: /captures on interface eth0/ },
    { name: 'same interface even when both allow others: refused', first: { allowOthers: true }, second: { allowOthers: true, adminSocket: join(dir, 'b.sock') }, refused: /captures on interface eth0/ },
    { name: 'other interface and socket, neither allows others: refused (namespace)', first: {}, second: { interface: 'eth1', adminSocket: join(dir, 'b.sock') }, refused: /runs in this network namespace.*allowOtherInstances: true/ },
    { name: 'other interface, the second allows others but the first does not: refused', first: {}, second: { interface: 'eth1', adminSocket: join(dir, 'b.sock'), allowOthers: true }, refused: /as the only one/ },
    { name: 'other interface, the first allows others but the second does not: refused', first: { allowOthers: true }, second: { interface: 'eth1', adminSocket: join(dir, 'b.sock') }, refused: /captures on interface eth0 in this network namespace/ },
    { name: 'other interface, same socket, both allow others: refused (socket)', first: { allowOthers: true }, second: { interface: 'eth1', allowOthers: true }, refused: /serves the admin socket/ },
    { name: 'other interface and socket, both allow others: both run', first: { allowOthers: true }, second: { interface: 'eth1', adminSocket: join(dir, 'b.sock'), allowOthers: true }, refused: null },
  ];
  it.each(cases)('$name', async ({ first, second, refused }) => {
    await claim(first);
    if (refused === null) {
      await claim(second);
      return;
    }
    const e = await refusal(second);
    expect(e.message).toMatch(refused);
    // The holder is this test process: the kernel (or the lock file) says so.
    expect(e.holderPid).toBe(process.pid);
    expect(e.message).toContain(`pid ${process.pid}`);
  });

  it('release() frees everything: the same claim succeeds again', async () => {
    const l = await InstanceLock.claim(opts({}));
    l.release();
    await claim({});
  });

  it('the lock file names the holder and stays after release (removing it would race a newcomer)', async () => {
    const l = await claim({});
    expect(readFileSync(l.lockPath, 'utf8').trim()).toBe(String(process.pid));
    l.release();
    held.length = 0;
    expect(existsSync(l.lockPath)).toBe(true);
  });
});

describe('InstanceLock: a dead holder never blocks', () => {
  it('a SIGKILLed holder of interface, namespace and socket locks is no obstacle', async () => {
    // A child process takes the same claims, then dies without releasing anything.
    const script = `
      const { InstanceLock } = await import(${JSON.stringify(new URL('../../dist/src/runtime/instance-lock.js', import.meta.url).href)});
      await InstanceLock.claim(${JSON.stringify(opts({}))});
      console.log('held');
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.once('data', () => resolve());
      child.once('exit', (code) => reject(new Error(`holder exited early with ${code}`)));
      setTimeout(() => reject(new Error('holder did not start')), 10_000);
    });
    const whileAlive = await refusal({});
    expect(whileAlive.holderPid).toBe(child.pid);
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGKILL');
    await exited;
    const l = await claim({});
    expect(readFileSync(l.lockPath, 'utf8').trim()).toBe(String(process.pid));
  });
});
