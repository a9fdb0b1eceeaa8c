/**
 * glibc malloc settings for both Sluice processes, set once at start-up through the addon
 * (mallopt), so they hold however node was started (`sluice run`, `node dist/src/cli.js run`,
 * a unit file).
 *
 * Why: measured at idle (no traffic), the processes' glibc heaps grew from about 10 MiB to 30-40
 * MiB each within a minute, and most of it was free: malloc_stats() showed 38.8 MB taken from the
 * system and 14.2 MB in use in the main arena of the data plane. The churn is V8's optimizing
 * compiler, whose 8-32 KiB zone segments come and go on a background thread, and the 64 KiB reads
 * of the control channel; freed chunks in the middle of the brk heap cannot go back to the system.
 * With allocations of 16 KiB and more served by their own mmap (given back on free) and two
 * arenas instead of one per thread, the same idle pair held 70-77 MiB PSS instead of 126-145 MiB
 * (README "How fast"). Nothing on the packet path allocates, so the extra mmap calls are
 * start-up, compile and control-channel work only.
 *
 * SLUICE_MALLOC=default leaves glibc's own settings (for comparison).
 */
import { setFlagsFromString } from 'node:v8';
import { hostAddon } from '../observe/host-addon.js';

export const MALLOC_MMAP_THRESHOLD = 16 * 1024;
export const MALLOC_ARENA_MAX = 2;

/**
 * The control process only (never the data plane: its packet path is what the JIT is for): V8's
 * --optimize-for-size, which collects more often and grows the heap less. The control process
 * receives a counters snapshot every 100 ms, and the ArrayBuffers of those messages stayed
 * allocated (malloc_stats: 46 MB in use) until a major collection came. SLUICE_MALLOC=default
 * leaves it too.
 */
export function controlHeapForSize(): void {
  if (process.env.SLUICE_MALLOC === 'default') return;
  setFlagsFromString('--optimize-for-size');
}

/** Applies the settings to this process; false when they were left (SLUICE_MALLOC=default, no addon, not glibc). */
export function tuneMalloc(): boolean {
  if (process.env.SLUICE_MALLOC === 'default') return false;
  try {
    return hostAddon().tuneMalloc(MALLOC_MMAP_THRESHOLD, MALLOC_ARENA_MAX);
  } catch {
    // No addon (a unit test, a tree not yet built): glibc's defaults are still correct, only bigger.
    return false;
  }
}
