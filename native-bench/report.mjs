// native-bench/report.mjs RUN_DIR OUT_FILE
// Turns the raw samples run.sh left in RUN_DIR/raw/*.json into OUT_FILE (latest.json) and a
// table on stdout. A case's pps is the median over its repeats of
//   (frames the sink's UDP stack took during the window) / (window seconds).
import { readFileSync, readdirSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import os from 'node:os';

const [runDir, outFile] = process.argv.slice(2);
if (!runDir || !outFile) {
  console.error('usage: node report.mjs RUN_DIR OUT_FILE');
  process.exit(2);
}

const CASE_ORDER = ['kernel', 'cref', 'sluice', 'sluiceRing', 'sluiceCap', 'sluiceNoMptcp'];
const CASE_LABEL = {
  kernel: 'kernel IP forwarding (ip_forward=1)',
  cref: 'C libpcap reference forwarder',
  sluice: 'Sluice, capture engine "batch"',
  sluiceRing: 'Sluice, capture engine "ring"',
  sluiceCap: 'Sluice, capture engine "cap"',
  sluiceNoMptcp: 'Sluice, "batch", MPTCP steering off',
};
const BAR = { sluiceVsCref: 0.75 };
const DISTURBED = 0.05;
const SATURATED_FORWARDED = 0.97;
const SATURATED_CPU = 0.95;

const settings = JSON.parse(readFileSync(join(runDir, 'settings.json'), 'utf8'));
const rawDir = join(runDir, 'raw');
const raws = readdirSync(rawDir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(rawDir, f), 'utf8')))
  .sort((a, b) => a.repeat - b.repeat);

const median = (xs) => {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (x) => (x == null ? null : Math.round(x));
const ratio = (a, b) => (a != null && b ? Math.round((a / b) * 1000) / 1000 : null);

/** One repeat of one case: rates over the window between the two snapshots. */
function runFigures(raw) {
  if (raw.error) return { error: raw.error };
  const { start: a, end: b } = raw;
  // Each snapshot read its counters between t and tEnd; use the midpoints.
  const seconds = (b.t + b.tEnd) / 2 - (a.t + a.tEnd) / 2;
  const rate = (k) => (b[k] - a[k]) / seconds;
  const share = (k) => Math.round((rate(k) / 1e9) * 1000) / 1000; // ns per s -> fraction of a CPU
  const frac = (ns) => Math.round((ns / seconds / 1e9) * 1000) / 1000;
  const threads = (snap) =>
    new Map(
      (snap.fwdThreads ?? '')
        .split(' ')
        .filter(Boolean)
        .map((e) => e.split(':').map(Number))
        .map(([tid, cpuNs, waitNs]) => [tid, { cpuNs, waitNs }]),
    );
  // The forwarder's busiest thread (Sluice: the data-plane loop) and what the rest of its
  // process group used: those other threads share its CPU and are part of its cost.
  const t0 = threads(a);
  let hot = null;
  let groupNs = 0;
  for (const [tid, e] of threads(b)) {
    const s0 = t0.get(tid);
    if (!s0) continue;
    const d = { cpuNs: e.cpuNs - s0.cpuNs, waitNs: e.waitNs - s0.waitNs };
    groupNs += d.cpuNs;
    if (!hot || d.cpuNs > hot.cpuNs) hot = d;
  }
  const fwd = a.fwdProcesses > 0 && hot != null;
  const cpu = {
    generator: share('genCpuNs'),
    generatorWait: share('genWaitNs'),
    forwarder: fwd ? share('fwdCpuNs') : null,
    forwarderHotThread: fwd ? frac(hot.cpuNs) : null,
    forwarderHotThreadWait: fwd ? frac(hot.waitNs) : null,
    ksoftirqdGeneratorCpu: share('ksoftirqdGenCpuNs'),
    ksoftirqdForwarderCpu: share('ksoftirqdFwdCpuNs'),
  };
  // Time the generator, or the forwarder's busiest thread, was runnable while something
  // outside the benchmark held its CPU (a lower bound; the same formula as run.sh's).
  // Above DISTURBED the figure is suspect.
  const genOutside = cpu.generatorWait - cpu.ksoftirqdGeneratorCpu;
  const fwdOutside = fwd
    ? cpu.forwarderHotThreadWait - frac(groupNs - hot.cpuNs) - cpu.ksoftirqdForwarderCpu
    : 0;
  cpu.outsideLoad = Math.round(Math.max(0, genOutside, fwdOutside) * 1000) / 1000;
  // Whole-core busy shares from /proc/stat: unlike task times they include softirq work (the
  // forwarder's core also runs the sink side of every frame it sends).
  const core = (busy, total) => {
    const t = b[total] - a[total];
    return t > 0 ? Math.round(((b[busy] - a[busy]) / t) * 1000) / 1000 : null;
  };
  cpu.generatorCore = core('genCoreBusyTicks', 'genCoreTotalTicks');
  cpu.forwarderCore = core('fwdCoreBusyTicks', 'fwdCoreTotalTicks');
  const pps = rate('sinkUdp');
  const forwarderIngressPps = rate('fwdInRx');
  const out = {
    pps: round(pps),
    generatorPps: round(rate('genTx')),
    generatorDropPps: round(rate('genTxDrop')),
    forwarderIngressPps: round(forwarderIngressPps),
    sinkRxPps: round(rate('sinkRx')),
    windowSeconds: Math.round(seconds * 1000) / 1000,
    // A forwarder is saturated when it loses frames or its busiest thread has no idle time;
    // an unsaturated one forwarded all the generator managed to offer.
    saturated: fwd
      ? pps < SATURATED_FORWARDED * forwarderIngressPps || cpu.forwarderHotThread >= SATURATED_CPU
      : null,
    ppsPerForwarderCore: fwd && cpu.forwarderCore ? round(pps / cpu.forwarderCore) : null,
    cpu,
    disturbed: cpu.outsideLoad > DISTURBED,
    attempts: raw.attempts ?? 1,
    generator: raw.generator ?? null,
  };
  if (raw.forwarder) out.forwarder = raw.forwarder;
  if (raw.sluiceMetrics) out.sluiceMetrics = raw.sluiceMetrics;
  if (raw.isolation) out.isolation = raw.isolation;
  if (raw.warning) out.warning = raw.warning;
  return out;
}

const cases = {};
for (const name of CASE_ORDER) {
  const runs = raws.filter((r) => r.case === name).map(runFigures);
  if (runs.length === 0) continue;
  const ok = runs.filter((r) => r.error === undefined);
  if (ok.length === 0) {
    cases[name] = { error: runs[0].error, runs };
    continue;
  }
  // Disturbed runs are low by an unknown amount: the medians use the undisturbed runs when
  // there are any.
  const clean = ok.filter((r) => !r.disturbed);
  const used = clean.length > 0 ? clean : ok;
  cases[name] = {
    pps: round(median(used.map((r) => r.pps))),
    generatorPps: round(median(used.map((r) => r.generatorPps))),
    forwarderIngressPps: round(median(used.map((r) => r.forwarderIngressPps))),
    ppsPerForwarderCore: round(median(used.filter((r) => r.ppsPerForwarderCore != null).map((r) => r.ppsPerForwarderCore))),
    forwarderCore: median(used.filter((r) => r.saturated != null && r.cpu.forwarderCore != null).map((r) => r.cpu.forwarderCore)),
    medianOf: clean.length > 0 ? `${clean.length} undisturbed run(s)` : `${ok.length} run(s), all disturbed`,
    runs,
  };
  if (used.some((r) => r.saturated != null)) cases[name].saturatedRuns = used.filter((r) => r.saturated).length;
  cases[name].usedRuns = used.length;
  if (clean.length === 0) cases[name].allDisturbed = true;
  if (ok.length < runs.length) cases[name].failedRuns = runs.length - ok.length;
  const disturbed = ok.filter((r) => r.disturbed).length;
  if (disturbed) cases[name].disturbedRuns = disturbed;
}

const pps = (name) => cases[name]?.pps ?? null;
const ratios = {
  sluiceVsCref: ratio(pps('sluice'), pps('cref')),
  sluiceCapVsCref: ratio(pps('sluiceCap'), pps('cref')),
  sluiceRingVsCref: ratio(pps('sluiceRing'), pps('cref')),
  mptcpOnVsOff: ratio(pps('sluice'), pps('sluiceNoMptcp')),
  crefVsKernel: ratio(pps('cref'), pps('kernel')),
  sluiceVsKernel: ratio(pps('sluice'), pps('kernel')),
  // Forwarded pps per busy forwarder core: comparable even when a forwarder was not
  // saturated (then its pps is what the generator could offer, not what it could forward).
  perCore: {
    sluiceVsCref: ratio(cases.sluice?.ppsPerForwarderCore, cases.cref?.ppsPerForwarderCore),
    sluiceCapVsCref: ratio(cases.sluiceCap?.ppsPerForwarderCore, cases.cref?.ppsPerForwarderCore),
    sluiceRingVsCref: ratio(cases.sluiceRing?.ppsPerForwarderCore, cases.cref?.ppsPerForwarderCore),
  },
};

let kernel = os.release();
let libpcap = null;
for (const c of Object.values(cases)) {
  for (const r of c.runs ?? []) if (r.forwarder?.libpcap) libpcap = r.forwarder.libpcap;
}
let cc = null;
try {
  cc = execFileSync('cc', ['--version'], { encoding: 'utf8' }).split('\n')[0];
} catch {
  cc = null;
}

const result = {
  date: new Date().toISOString(),
  machine: {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? null,
    kernel,
    node: process.version,
    cc,
    libpcap,
  },
  settings,
  cases,
  ratios,
  bar: {
    sluiceVsCref: BAR.sluiceVsCref,
    met: ratios.sluiceVsCref == null ? null : ratios.sluiceVsCref >= BAR.sluiceVsCref,
  },
};

const tmp = `${outFile}.${process.pid}.tmp`;
writeFileSync(tmp, JSON.stringify(result, null, 2) + '\n');
renameSync(tmp, outFile);

// ---- table ----
const fmt = (x) => (x == null ? '-' : x.toLocaleString('en-US'));
const rows = [['case', 'forwarded pps', 'x C ref', 'generator pps', 'fwd core', 'pps/fwd core', 'saturated', 'runs used']];
for (const name of CASE_ORDER) {
  const c = cases[name];
  if (!c) continue;
  if (c.error !== undefined) {
    rows.push([CASE_LABEL[name], 'error', '-', '-', '-', '-', '-', String(c.runs.length)]);
    continue;
  }
  rows.push([
    CASE_LABEL[name],
    fmt(c.pps),
    ratio(c.pps, pps('cref'))?.toFixed(3) ?? '-',
    fmt(c.generatorPps),
    c.forwarderCore == null ? '-' : c.forwarderCore.toFixed(2),
    fmt(c.ppsPerForwarderCore),
    c.saturatedRuns == null ? '-' : `${c.saturatedRuns}/${c.usedRuns}`,
    `${c.usedRuns}/${c.runs.length}` +
      (c.failedRuns ? ` (${c.failedRuns} failed)` : '') +
      (c.disturbedRuns ? ` (${c.disturbedRuns} disturbed${c.allDisturbed ? ', used' : ''})` : ''),
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
const line = (r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
console.log('');
console.log(
  `native-bench: ${settings.protocol === "tcp" ? "66-byte TCP ACKs (timestamps)" : "64-byte UDP"}, ${settings.warmupSeconds} s warm-up + ${settings.windowSeconds} s window, ` +
    `generator on CPU${settings.generatorCpu}, forwarder on CPU${settings.forwarderCpu}, median of ${settings.repeat}`,
);
console.log(line(rows[0]));
console.log(widths.map((w) => '-'.repeat(w)).join('  '));
for (const r of rows.slice(1)) console.log(line(r));
console.log('');
for (const name of CASE_ORDER) {
  if (cases[name]?.error !== undefined) console.log(`${name}: ${cases[name].error}`);
}
console.log(
  `ratios: sluice/cref ${ratios.sluiceVsCref ?? '-'} (bar >= ${BAR.sluiceVsCref}: ` +
    `${result.bar.met == null ? 'not measured' : result.bar.met ? 'met' : 'NOT met'}), ` +
    `sluiceRing/cref ${ratios.sluiceRingVsCref ?? '-'}, sluiceCap/cref ${ratios.sluiceCapVsCref ?? '-'}, cref/kernel ${ratios.crefVsKernel ?? '-'}`,
);
console.log(
  `per busy forwarder core: sluice/cref ${ratios.perCore.sluiceVsCref ?? '-'}, ` +
    `sluiceRing/cref ${ratios.perCore.sluiceRingVsCref ?? '-'}, sluiceCap/cref ${ratios.perCore.sluiceCapVsCref ?? '-'}`,
);
const unsaturated = ['cref', 'sluice', 'sluiceRing', 'sluiceCap'].filter(
  (n) => cases[n]?.saturatedRuns != null && cases[n].saturatedRuns < cases[n].usedRuns,
);
if (unsaturated.length) {
  console.log(
    `note: ${unsaturated.join(', ')} kept up with the generator in some runs: there its pps is the ` +
      'offered load, not its capacity; compare the per-core figures too',
  );
}
if (Object.values(cases).some((c) => c.disturbedRuns)) {
  console.log(
    `warning: in runs marked "disturbed" the generator or forwarder waited > ${DISTURBED * 100}% of the ` +
      'window for a CPU taken by other processes; medians leave them out unless every run of a case was ' +
      'disturbed. Repeat (BENCH_REPEAT) on a quiet machine',
  );
}
console.log(`written: ${outFile}`);
