/**
 * Plain traffic through the forwarder before and after issue 9's per-frame work (partial
 * checksums, ICMP, fragments, IP options and extension headers, VLAN egress), in one run: the
 * forwarders of the main-line commits in PLAIN_BENCH_BASES and of this tree, each compiled from
 * its own sources with the same tsc flags into a temporary directory, fed the same prebuilt
 * 60-byte UDP frames (the pps harness's: 1024 flows to one 3-backend dsr-l2 service), in
 * rotating rounds. The figure is forward() calls per second of CPU time (process.cpuUsage),
 * median of the rounds, and each variant's ratio to the first (the oldest); also the best round
 * of each (other load on the machine only ever slows a round down, so on a shared machine the
 * best rounds are the steadier comparison). The issue's bar:
 * plain traffic loses no more than 5% to the issue's work (ratio >= 0.95).
 *
 * Default bases, oldest first (other work landed between them, so each step is named):
 *   ea0939f  the main line just before the issue's first merge
 *   b8b6f8e  + the parser's walk of IPv4 options and IPv6 extension headers, fragments and ICMP
 *            described (issue 9; the ring engine merged just before changes no forwarder code)
 *   1c48dc9  + the bucketized-cuckoo flow table (not issue 9)
 *   this tree: + the ICMP and fragment branches, VLAN egress, the forwarder split into steps,
 *            ipip splitting, fragment ownership (issue 9)
 *
 * Timed rounds on a shared machine spread wider than the 5% bar; plain-instructions.bench.ts
 * counts instructions per frame of the same variants under valgrind, which resolves it.
 *
 * What it does not cover: the capture engine. The ring engine's own per-frame check is one
 * test of the kernel's status flags (engine-ring.ts); whole-path pps of the engines is what
 * `npm run bench` measures in its namespace lab (sluice, sluiceRing rows).
 *
 * Build: npx tsc -p tsconfig.json; run from the repository root (needs git and the history):
 *   node dist/native-bench/plain-path.bench.js
 * PLAIN_BENCH_ROUNDS (default 6), PLAIN_BENCH_ROUND_MS (default 1000) bound the run; writes
 * native-bench/results/plain-path.json (PLAIN_BENCH_OUT overrides). No root, no network.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { PLAIN_FLOWS, compileVariants, loadForwarder, parseBases, plainFrames, type AnyForwarder } from './plain-variants.js';

const BASES = parseBases(process.env.PLAIN_BENCH_BASES);
const ROUNDS = Math.max(2, Math.min(20, Number(process.env.PLAIN_BENCH_ROUNDS ?? 6)));
const ROUND_MS = Math.max(200, Math.min(5000, Number(process.env.PLAIN_BENCH_ROUND_MS ?? 1000)));
const OUT = resolve(process.env.PLAIN_BENCH_OUT ?? 'native-bench/results/plain-path.json');

/** One round: forward() over the frames for ROUND_MS of wall time; frames per CPU second, and how many were forwarded. */
function round(fwd: AnyForwarder, fs: Buffer[], tx: Buffer): { pps: number; forwarded: number; calls: number } {
  let calls = 0;
  let forwarded = 0;
  const cpu0 = process.cpuUsage();
  const end = Date.now() + ROUND_MS;
  let now = Date.now();
  while (now < end) {
    for (let i = 0; i < 4096; i++) {
      const f = fs[i & (PLAIN_FLOWS - 1)];
      if (fwd.forward(f, f.length, tx, now) > 0) forwarded++;
    }
    calls += 4096;
    now = Date.now();
  }
  const cpu = process.cpuUsage(cpu0);
  const cpuS = (cpu.user + cpu.system) / 1e6;
  return { pps: calls / cpuS, forwarded, calls };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(os.tmpdir(), 'sluice-plain-bench-'));
  try {
    const variants: { name: string; commit: string; fwd: AnyForwarder; pps: number[] }[] = [];
    for (const v of compileVariants(BASES, tmp)) variants.push({ name: v.name, commit: v.commit, fwd: await loadForwarder(v.forwarderJs), pps: [] });
    const fs = plainFrames();
    const tx = Buffer.alloc(2048);
    // Warm-up (JIT, flow entries), not counted.
    for (const v of variants) round(v.fwd, fs, tx);
    let forwardedAll = true;
    for (let r = 0; r < ROUNDS; r++) {
      // Rotate which goes first, so drift of the machine's load hits every variant alike.
      for (let k = 0; k < variants.length; k++) {
        const v = variants[(r + k) % variants.length];
        const res = round(v.fwd, fs, tx);
        if (res.forwarded !== res.calls) forwardedAll = false;
        v.pps.push(Math.round(res.pps));
      }
    }
    const first = median(variants[0].pps);
    const last = median(variants[variants.length - 1].pps);
    const best0 = Math.max(...variants[0].pps);
    const rows = variants.map((v) => ({
      name: v.name,
      commit: v.commit,
      ppsPerCpuSecond: median(v.pps),
      ratioToFirst: Number((median(v.pps) / first).toFixed(3)),
      bestPpsPerCpuSecond: Math.max(...v.pps),
      bestRatioToFirst: Number((Math.max(...v.pps) / best0).toFixed(3)),
      rounds: v.pps,
    }));
    const result = {
      what: 'Forwarder.forward() of plain 60-byte UDP frames (1024 flows, dsr-l2, 3 backends), frames per CPU second (median of the rounds), per main-line commit and this tree, in one run',
      rounds: ROUNDS,
      roundMs: ROUND_MS,
      everyFrameForwarded: forwardedAll,
      variants: rows,
      ratioThisTreeVsFirst: Number((last / first).toFixed(3)),
      bestRatioThisTreeVsFirst: rows[rows.length - 1].bestRatioToFirst,
      bar: { ratioAtLeast: 0.95, met: last / first >= 0.95 },
      node: process.version,
      cpus: os.cpus().length,
      loadAverage: os.loadavg().map((x) => Number(x.toFixed(2))),
      at: new Date().toISOString(),
    };
    mkdirSync(dirname(OUT), { recursive: true });
    writeFileSync(OUT, JSON.stringify(result, null, 2) + '\n');
    for (const r of rows) console.log(`plain path ${r.name.padEnd(10)} ${Math.round(r.ppsPerCpuSecond).toLocaleString('en').padStart(10)} frames/CPU-s  x${r.ratioToFirst.toFixed(3)}  best ${Math.round(r.bestPpsPerCpuSecond).toLocaleString('en')} x${r.bestRatioToFirst.toFixed(3)}  rounds ${r.rounds.join(' ')}`);
    console.log(`this tree vs ${variants[0].name}: x${result.ratioThisTreeVsFirst} median, x${result.bestRatioThisTreeVsFirst} best round (bar >= 0.95: ${result.bar.met ? 'met' : 'NOT met'}); every frame forwarded: ${forwardedAll}; load average ${result.loadAverage.join(' ')}; ${OUT}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : String(e));
  process.exit(1);
});
