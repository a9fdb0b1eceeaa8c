// The malloc settings both processes take at start-up (src/runtime/malloc-tuning.ts). Their effect
// on idle memory is measured by the benchmark (native-bench, mem1m: idle PSS after 60 s); here:
// the addon call takes them, refuses nonsense, and SLUICE_MALLOC=default leaves glibc alone.
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { hostAddon } from '../../src/observe/host-addon.js';
import { addonPath } from '../../src/dataplane/capture-batch.js';
import { MALLOC_ARENA_MAX, MALLOC_MMAP_THRESHOLD, tuneMalloc } from '../../src/runtime/malloc-tuning.js';

describe('malloc tuning', () => {
  it('glibc takes the mmap threshold and arena limit', () => {
    expect(hostAddon().tuneMalloc(MALLOC_MMAP_THRESHOLD, MALLOC_ARENA_MAX)).toBe(true);
  });

  const bad: { name: string; args: [number, number] }[] = [
    { name: 'threshold below a page', args: [1024, 2] },
    { name: 'no arena', args: [16384, 0] },
    { name: 'negative threshold', args: [-1, 2] },
  ];
  it.each(bad)('refuses $name', ({ args }) => {
    expect(() => hostAddon().tuneMalloc(args[0], args[1])).toThrow(/tuneMalloc/);
  });

  it('SLUICE_MALLOC=default leaves the defaults', () => {
    const saved = process.env.SLUICE_MALLOC;
    process.env.SLUICE_MALLOC = 'default';
    try {
      expect(tuneMalloc()).toBe(false);
    } finally {
      if (saved === undefined) delete process.env.SLUICE_MALLOC;
      else process.env.SLUICE_MALLOC = saved;
    }
    expect(tuneMalloc()).toBe(true);
  });

  // Allocations at or over the threshold get a mapping of their own, given back on free, so they
  // never grow (and fragment) the brk heap. A child node process allocates 64 blocks of 64 KiB
  // and reports how much its [heap] grew: with the setting nothing, with glibc's 128 KiB default
  // nearly all of the 4 MiB.
  const child = (tune: boolean): number => {
    const script = `
      const a = require(${JSON.stringify(addonPath())});
      if (${tune}) a.tuneMalloc(${MALLOC_MMAP_THRESHOLD}, ${MALLOC_ARENA_MAX});
      const heap = () => {
        const m = require('node:fs').readFileSync('/proc/self/smaps', 'utf8').split('\\n');
        const i = m.findIndex((l) => l.endsWith('[heap]'));
        const size = m.slice(i + 1).find((l) => l.startsWith('Size:'));
        return i < 0 ? 0 : Number(size.split(/ +/)[1]);
      };
      const before = heap();
      const held = [];
      for (let i = 0; i < 64; i++) held.push(Buffer.allocUnsafeSlow(64 * 1024).fill(1));
      console.log(heap() - before, held.length);
    `;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(0);
    return Number(r.stdout.trim().split(' ')[0]);
  };

  it('keeps blocks of 64 KiB out of the brk heap', () => {
    const tuned = child(true);
    const untuned = child(false);
    console.log(`[heap] growth for 64 x 64 KiB: tuned ${tuned} KiB, glibc defaults ${untuned} KiB`);
    expect(untuned).toBeGreaterThanOrEqual(3072);
    expect(tuned).toBeLessThan(1024);
  });
});
