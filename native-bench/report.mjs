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

const CASE_ORDER = ['kernel', 'cref', 'sluice', 'sluiceCap'];
const CASE_LABEL = {
  kernel: 'kernel IP forwarding (ip_forward=1)',
  cref: 'C libpcap reference forwarder',
  sluice: 'Sluice, capture engine "batch"',
  sluiceCap: 'Sluice, capture engine "cap"',
};
const BAR = { sluiceVsCref: 0.75 };

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
  const out = {
    pps: round(rate('sinkUdp')),
    generatorPps: round(rate('genTx')),
    generatorDropPps: round(rate('genTxDrop')),
    forwarderIngressPps: round(rate('fwdInRx')),
    sinkRxPps: round(rate('sinkRx')),
    windowSeconds: Math.round(seconds * 1000) / 1000,
    generator: raw.generator ?? null,
  };
  if (raw.forwarder) out.forwarder = raw.forwarder;
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
  cases[name] = {
    pps: round(median(ok.map((r) => r.pps))),
    generatorPps: round(median(ok.map((r) => r.generatorPps))),
    forwarderIngressPps: round(median(ok.map((r) => r.forwarderIngressPps))),
    runs,
  };
  if (ok.length < runs.length) cases[name].failedRuns = runs.length - ok.length;
}

const pps = (name) => cases[name]?.pps ?? null;
const ratios = {
  sluiceVsCref: ratio(pps('sluice'), pps('cref')),
  sluiceCapVsCref: ratio(pps('sluiceCap'), pps('cref')),
  crefVsKernel: ratio(pps('cref'), pps('kernel')),
  sluiceVsKernel: ratio(pps('sluice'), pps('kernel')),
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
const rows = [['case', 'forwarded pps', 'x C ref', 'generator pps', 'runs']];
for (const name of CASE_ORDER) {
  const c = cases[name];
  if (!c) continue;
  if (c.error !== undefined) {
    rows.push([CASE_LABEL[name], 'error', '-', '-', String(c.runs.length)]);
    continue;
  }
  rows.push([
    CASE_LABEL[name],
    fmt(c.pps),
    ratio(c.pps, pps('cref'))?.toFixed(3) ?? '-',
    fmt(c.generatorPps),
    String(c.runs.length) + (c.failedRuns ? ` (${c.failedRuns} failed)` : ''),
  ]);
}
const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
const line = (r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]) : cell.padStart(widths[i]))).join('  ');
console.log('');
console.log(
  `native-bench: 64-byte UDP, ${settings.warmupSeconds} s warm-up + ${settings.windowSeconds} s window, ` +
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
    `sluiceCap/cref ${ratios.sluiceCapVsCref ?? '-'}, cref/kernel ${ratios.crefVsKernel ?? '-'}`,
);
console.log(`written: ${outFile}`);
