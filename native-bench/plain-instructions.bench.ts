/**
 * Instructions per plain frame through the forwarder, before and after issue 9, counted by
 * valgrind (callgrind) instead of timed: on a shared 2-vCPU VM rounds of one variant differ by
 * up to 40% in frames per CPU second (plain-path.bench.ts), too coarse for a 5% bar, while an
 * instruction count does not depend on what else the machine runs.
 *
 * Method, per variant (the same variants and frames as plain-path.bench.ts, plain-variants.ts):
 * two child processes under `valgrind --tool=callgrind`, each configuring the forwarder and
 * running WARMUP frames through forward() (V8 optimizes the hot functions; the JIT stays on,
 * since --jitless would measure the interpreter), then BASE frames in the first and BASE +
 * FRAMES in the second, all in calls of one 1024-frame rotation (feedChunks). (total2 - total1)
 * / FRAMES is the per-frame cost of the steady, optimized path; start-up, compilation, the
 * warm-up and the first measured call cancel out. The children run node with --single-threaded
 * (compilation and GC on the main thread, not on helper threads whose share of the count
 * depends on scheduling) and fixed hash and random seeds (V8 draws its hash seed at start-up,
 * a primality search whose length varied the total by up to 10 M instructions): the same
 * TurboFan code runs, its instructions repeat to within 1000, and a child's total to ~0.04%.
 * valgrind needs --smc-check=all-non-file to see the JIT's code change. Each variant is counted
 * REPEAT times (default 2) to show the figure is stable.
 *
 * Build: npx tsc -p tsconfig.json; run from the repository root (needs git history, valgrind):
 *   node dist/native-bench/plain-instructions.bench.js
 * PLAIN_BENCH_BASES (default ea0939f,b8b6f8e,1c48dc9), PLAIN_INSN_WARMUP (default 153600),
 * PLAIN_INSN_FRAMES (default 102400; both rounded to whole 1024-frame rotations), PLAIN_INSN_REPEAT (default 2); writes
 * native-bench/results/plain-instructions.json (PLAIN_INSN_OUT overrides). No root, no network.
 * About 40 s of valgrind per child on the 2-vCPU VM: 4 variants x 2 children x 2 repeats, ~6 min.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { PLAIN_FLOWS, compileVariants, loadForwarder, parseBases, plainFrames, type AnyForwarder } from './plain-variants.js';

const bounded = (v: string | undefined, dflt: number, lo: number, hi: number): number => {
  const n = Number(v ?? dflt);
  return Number.isFinite(n) ? Math.max(lo, Math.min(hi, Math.floor(n))) : dflt;
};
/** Counts of frames, rounded to whole rotations of the PLAIN_FLOWS flows (each flow as often as any other). */
const rotations = (v: string | undefined, dflt: number, lo: number, hi: number): number => Math.round(bounded(v, dflt, lo, hi) / PLAIN_FLOWS) * PLAIN_FLOWS;
const WARMUP = rotations(process.env.PLAIN_INSN_WARMUP, 153_600, 10_240, 2_048_000);
/** Measured frames in the first child of a pair; the second measures FRAMES more. */
const BASE_FRAMES = 10_240;
const FRAMES = rotations(process.env.PLAIN_INSN_FRAMES, 102_400, 10_240, 2_048_000);
const REPEAT = bounded(process.env.PLAIN_INSN_REPEAT, 2, 1, 5);
const OUT = resolve(process.env.PLAIN_INSN_OUT ?? 'native-bench/results/plain-instructions.json');
/** A fixed clock start: the children's input, time included, is the same in every run. */
const CLOCK0_MS = 1_000_000;
const CHILD_TIMEOUT_MS = 15 * 60_000;

/** Frames [from, from + count) of the rotation through forward(); how many were forwarded. */
function feed(fwd: AnyForwarder, fs: Buffer[], tx: Buffer, from: number, count: number): number {
  let forwarded = 0;
  for (let i = from; i < from + count; i++) {
    const f = fs[i & (PLAIN_FLOWS - 1)];
    // The clock advances 1 ms per 1024 frames, deterministically.
    if (fwd.forward(f, f.length, tx, CLOCK0_MS + (i >>> 10)) > 0) forwarded++;
  }
  return forwarded;
}

/**
 * `frames` frames from `from` on, in calls of one rotation (PLAIN_FLOWS frames) each. Short
 * calls, the same in warm-up and measurement: feed() is optimized as a whole function during
 * warm-up, so a measured call neither enters a loop afresh (on-stack replacement compiles
 * again, and that compilation would be counted) nor runs code the warm-up did not.
 */
function feedChunks(fwd: AnyForwarder, fs: Buffer[], tx: Buffer, from: number, frames: number): number {
  let forwarded = 0;
  for (let done = 0; done < frames; done += PLAIN_FLOWS) forwarded += feed(fwd, fs, tx, from + done, Math.min(PLAIN_FLOWS, frames - done));
  return forwarded;
}

/** The child: configure, warm up, feed `measured` frames, report on stdout. */
async function child(forwarderJs: string, warmup: number, measured: number): Promise<void> {
  const fwd = await loadForwarder(forwarderJs);
  const fs = plainFrames();
  const tx = Buffer.alloc(2048);
  const warmForwarded = feedChunks(fwd, fs, tx, 0, warmup);
  const forwarded = feedChunks(fwd, fs, tx, warmup, measured);
  // Stdout to a pipe is written synchronously on Linux. Exit at once: timers and tasks V8 or
  // node left for the event loop (a memory-reducing GC, say) would run now or not depending on
  // how long the run took under valgrind, and be counted.
  process.stdout.write(JSON.stringify({ warmForwarded, forwarded }) + '\n');
  process.exit(0);
}

/** Total instructions (callgrind's Ir) of one child run, and whether it forwarded every frame. */
function countChild(forwarderJs: string, measured: number, outFile: string): { instructions: number; everyFrameForwarded: boolean } {
  const self = fileURLToPath(import.meta.url);
  const args = ['--tool=callgrind', '--smc-check=all-non-file', `--callgrind-out-file=${outFile}`, process.execPath, '--single-threaded', '--hash-seed=1', '--random-seed=1', self, '--child', forwarderJs, String(WARMUP), String(measured)];
  const r = spawnSync('valgrind', args, { encoding: 'utf8', timeout: CHILD_TIMEOUT_MS, maxBuffer: 16 << 20 });
  if (r.error) throw new Error(`plain-instructions: valgrind did not run: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`plain-instructions: valgrind exited ${r.status}: ${r.stderr.split('\n').slice(-8).join('\n')}`);
  const report = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { warmForwarded?: number; forwarded?: number };
  const totals = /^totals:\s+(\d+)/m.exec(readFileSync(outFile, 'utf8'));
  if (!totals) throw new Error(`plain-instructions: no totals line in ${outFile}`);
  return { instructions: Number(totals[1]), everyFrameForwarded: report.warmForwarded === WARMUP && report.forwarded === measured };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const ratio = (a: number, b: number): number => Number((a / b).toFixed(4));

async function main(): Promise<void> {
  const probe = spawnSync('valgrind', ['--version'], { encoding: 'utf8' });
  if (probe.status !== 0) throw new Error('plain-instructions: valgrind is not installed (apt-get install valgrind)');
  const tmp = mkdtempSync(join(os.tmpdir(), 'sluice-plain-insn-'));
  try {
    const variants = compileVariants(parseBases(process.env.PLAIN_BENCH_BASES), tmp).map((v) => ({ ...v, perFrame: [] as number[], startupAndWarmup: [] as number[] }));
    let everyFrameForwarded = true;
    for (let rep = 0; rep < REPEAT; rep++) {
      for (const v of variants) {
        const tag = `${v.name.replace(/\W/g, '_')}.${rep}`;
        const base = countChild(v.forwarderJs, BASE_FRAMES, join(tmp, `cg.${tag}.0`));
        const more = countChild(v.forwarderJs, BASE_FRAMES + FRAMES, join(tmp, `cg.${tag}.1`));
        everyFrameForwarded &&= base.everyFrameForwarded && more.everyFrameForwarded;
        const perFrame = Number(((more.instructions - base.instructions) / FRAMES).toFixed(1));
        v.perFrame.push(perFrame);
        v.startupAndWarmup.push(base.instructions);
        console.log(`plain instructions ${v.name.padEnd(10)} repeat ${rep + 1}: ${perFrame} per frame (totals ${base.instructions} / ${more.instructions})`);
      }
    }
    const medians = variants.map((v) => median(v.perFrame));
    const rows = variants.map((v, i) => ({
      name: v.name,
      commit: v.commit,
      instructionsPerFrame: medians[i],
      repeats: v.perFrame,
      spreadOfRepeats: ratio(Math.max(...v.perFrame) - Math.min(...v.perFrame), medians[i]),
      // Ratio to every variant before it: > 1 is more instructions per frame.
      ratioTo: Object.fromEntries(variants.slice(0, i).map((w, j) => [w.name, ratio(medians[i], medians[j])])),
      startupAndWarmupInstructions: v.startupAndWarmup,
    }));
    const tree = medians[medians.length - 1];
    const result = {
      what: 'Instructions per plain 60-byte UDP frame through Forwarder.forward() (1024 flows, dsr-l2, 3 backends), counted by valgrind --tool=callgrind: (Ir of warm-up + BASE + FRAMES frames - Ir of warm-up + BASE frames) / FRAMES, fed in calls of one 1024-frame rotation, node --single-threaded, JIT on',
      warmupFrames: WARMUP,
      baseFrames: BASE_FRAMES,
      measuredFrames: FRAMES,
      repeats: REPEAT,
      everyFrameForwarded,
      variants: rows,
      bar: {
        rule: 'this tree costs plain traffic at most 5% more instructions per frame (ratio <= 1.05)',
        against: Object.fromEntries(variants.slice(0, -1).map((v, j) => [v.name, { ratio: ratio(tree, medians[j]), met: tree / medians[j] <= 1.05 }])),
      },
      node: process.version,
      valgrind: probe.stdout.trim(),
      at: new Date().toISOString(),
    };
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
    for (const r of rows) console.log(`plain instructions ${r.name.padEnd(10)} ${r.instructionsPerFrame} per frame (repeats ${r.repeats.join(', ')})  ${Object.entries(r.ratioTo).map(([k, x]) => `x${x.toFixed(3)} vs ${k}`).join('  ')}`);
    console.log(`this tree: ${Object.entries(result.bar.against).map(([k, b]) => `x${b.ratio.toFixed(3)} vs ${k} (${b.met ? 'met' : 'NOT met'})`).join(', ')}; every frame forwarded: ${everyFrameForwarded}; ${OUT}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

if (process.argv[2] === '--child') {
  child(process.argv[3], Number(process.argv[4]), Number(process.argv[5])).catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  });
} else {
  main().catch((e: unknown) => {
    console.error(e instanceof Error ? e.message : String(e));
    process.exit(1);
  });
}
