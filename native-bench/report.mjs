// native-bench/report.mjs RUN_DIR OUT_FILE
// native-bench/report.mjs --markdown LATEST_JSON
//
// Turns the raw samples run.sh left in RUN_DIR/raw/<phase>.<case>.<repeat>.json into OUT_FILE
// (latest.json) and prints, per phase, the pps table and then every figure of issue 11 against
// its goal. A case's pps is the median over its repeats of
//   (frames the sink took during the window) / (window seconds).
// --markdown prints the goal table of an existing latest.json as markdown (for README "How fast").
import { readFileSync, readdirSync, writeFileSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import os from 'node:os';

const args = process.argv.slice(2);
if (args[0] === '--markdown') {
  if (!args[1]) {
    console.error('usage: node report.mjs --markdown LATEST_JSON');
    process.exit(2);
  }
  printMarkdown(JSON.parse(readFileSync(args[1], 'utf8')));
  process.exit(0);
}
const [runDir, outFile] = args;
if (!runDir || !outFile) {
  console.error('usage: node report.mjs RUN_DIR OUT_FILE | --markdown LATEST_JSON');
  process.exit(2);
}

const PHASE_ORDER = ['pps1', 'pps10k', 'cpu100k', 'lat10k', 'mem1m', 'custom'];
const PHASE_LABEL = {
  pps1: 'saturation, 1 flow',
  pps10k: 'saturation, 10,000 flows',
  cpu100k: 'offered load limited (CPU per packet), 10,000 flows',
  lat10k: 'offered load limited, stamped frames (one-way latency)',
  mem1m: 'memory for 1M live flows, then spoofed SYNs into the full table',
  custom: 'custom settings',
};
const CASE_ORDER = ['kernel', 'cref', 'sluice', 'sluiceRing', 'sluiceRing2', 'sluiceCap', 'sluiceNoMptcp', 'sluiceMem', 'sluiceTxRing', 'sluiceBypass', 'sluiceTxRingBypass'];
const CASE_LABEL = {
  kernel: 'kernel IP forwarding (ip_forward=1)',
  cref: 'C libpcap reference forwarder',
  sluice: 'Sluice, capture engine "batch"',
  sluiceRing: 'Sluice, capture engine "ring"',
  sluiceRing2: 'Sluice, "ring", 2 workers',
  sluiceCap: 'Sluice, capture engine "cap"',
  sluiceNoMptcp: 'Sluice, "batch", MPTCP steering off',
  sluiceMem: 'Sluice, "ring", full table (SYNs)',
  sluiceTxRing: 'Sluice, "ring", TX ring (SLUICE_TX=ring)',
  sluiceBypass: 'Sluice, "ring", sendmmsg + QDISC_BYPASS',
  sluiceTxRingBypass: 'Sluice, "ring", TX ring + QDISC_BYPASS',
};
// The default engine is what "Sluice" means in the goal table.
const SLUICE = 'sluiceRing';
const BAR = { sluiceVsCref: 0.75 };
const DISTURBED = 0.05;
const SATURATED_FORWARDED = 0.97;
const SATURATED_CPU = 0.95;
const MIB = 1024 * 1024;

const settings = JSON.parse(readFileSync(join(runDir, 'settings.json'), 'utf8'));
const userHz = settings.userHz || 100;
const rawDir = join(runDir, 'raw');
const raws = readdirSync(rawDir)
  .filter((f) => f.endsWith('.json'))
  .map((f) => JSON.parse(readFileSync(join(rawDir, f), 'utf8')))
  .sort((a, b) => a.repeat - b.repeat);

const median = (xs) => {
  const v = xs.filter((x) => x != null && Number.isFinite(x));
  if (v.length === 0) return null;
  const s = [...v].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
const round = (x) => (x == null ? null : Math.round(x));
const r3 = (x) => (x == null ? null : Math.round(x * 1000) / 1000);
const r2 = (x) => (x == null ? null : Math.round(x * 100) / 100);
const ratio = (a, b) => (a != null && b ? Math.round((a / b) * 1000) / 1000 : null);

/** Per-thread CPU over the window, busiest first: [{ tid, name, cpu (fraction of one CPU) }]. */
function threadShares(a, b, seconds) {
  const parse = (snap) =>
    new Map(
      (snap.fwdThreads ?? '')
        .split(' ')
        .filter(Boolean)
        .map((e) => e.split(':'))
        .map(([tid, cpuNs, waitNs, name]) => [Number(tid), { cpuNs: Number(cpuNs), waitNs: Number(waitNs), name: name ?? '' }]),
    );
  const t0 = parse(a);
  const out = [];
  for (const [tid, e] of parse(b)) {
    const s0 = t0.get(tid);
    if (!s0) continue;
    out.push({ tid, name: e.name, cpuNs: e.cpuNs - s0.cpuNs, waitNs: e.waitNs - s0.waitNs, cpu: r3((e.cpuNs - s0.cpuNs) / seconds / 1e9) });
  }
  return out.sort((x, y) => y.cpuNs - x.cpuNs);
}

/** One repeat of one case: rates over the window between the two snapshots. */
function runFigures(raw) {
  if (raw.skipped) return { skipped: raw.skipped };
  if (raw.error) return { error: raw.error, memory: raw.memory ?? null };
  const { start: a, end: b } = raw;
  // Each snapshot read its counters between t and tEnd; use the midpoints.
  const seconds = (b.t + b.tEnd) / 2 - (a.t + a.tEnd) / 2;
  const rate = (k) => (b[k] - a[k]) / seconds;
  const share = (k) => r3(rate(k) / 1e9); // ns per s -> fraction of a CPU
  const frac = (ns) => r3(ns / seconds / 1e9);
  const threads = threadShares(a, b, seconds);
  // The forwarder's busiest thread (Sluice: the data-plane loop) and what the rest of its
  // process group used: those other threads share its CPU and are part of its cost.
  const hot = threads[0] ?? null;
  const groupNs = threads.reduce((n, t) => n + t.cpuNs, 0);
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
  const genOutside = cpu.generatorWait - cpu.ksoftirqdGeneratorCpu;
  const fwdOutside = fwd ? cpu.forwarderHotThreadWait - frac(groupNs - hot.cpuNs) - cpu.ksoftirqdForwarderCpu : 0;
  cpu.outsideLoad = r3(Math.max(0, genOutside, fwdOutside));
  // Whole-core busy shares from /proc/stat: unlike task times they include softirq work (the
  // forwarder's core also runs the sink side of every frame it sends).
  const core = (busy, total) => {
    const t = b[total] - a[total];
    return t > 0 ? r3((b[busy] - a[busy]) / t) : null;
  };
  cpu.generatorCore = core('genCoreBusyTicks', 'genCoreTotalTicks');
  cpu.forwarderCore = core('fwdCoreBusyTicks', 'fwdCoreTotalTicks');
  // Share of the window the hypervisor gave the forwarder's vCPU to someone else (older raw files: null).
  cpu.forwarderCoreSteal = b.fwdCoreStealTicks != null && a.fwdCoreStealTicks != null ? core('fwdCoreStealTicks', 'fwdCoreTotalTicks') : null;
  const pps = rate('sinkUdp');
  const packets = b.sinkUdp - a.sinkUdp;
  const forwarderIngressPps = rate('fwdInRx');
  // CPU per forwarded packet. cpuUsPerPacket: every thread of the forwarder's processes (for
  // Sluice: control and data plane), user + system, as the scheduler accounts it.
  // systemUsPerPacket: both cores' busy time (softirq included) less the generator's own
  // task time: what forwarding cost the machine, the only figure the kernel case has; it
  // includes anything else the machine ran meanwhile.
  const busyS = (b.genCoreBusyTicks - a.genCoreBusyTicks + b.fwdCoreBusyTicks - a.fwdCoreBusyTicks) / userHz;
  const genS = (b.genCpuNs - a.genCpuNs) / 1e9;
  const out = {
    pps: round(pps),
    generatorPps: round(rate('genTx')),
    generatorDropPps: round(rate('genTxDrop')),
    forwarderIngressPps: round(forwarderIngressPps),
    forwarderIngressDropPps: round(rate('fwdInRxDrop')),
    sinkRxPps: round(rate('sinkRx')),
    windowSeconds: r3(seconds),
    // A forwarder is saturated when it loses frames or its busiest thread has no idle time;
    // an unsaturated one forwarded all the generator managed to offer.
    saturated: fwd ? pps < SATURATED_FORWARDED * forwarderIngressPps || cpu.forwarderHotThread >= SATURATED_CPU : null,
    ppsPerForwarderCore: fwd && cpu.forwarderCore ? round(pps / cpu.forwarderCore) : null,
    cpuUsPerPacket: fwd && packets > 0 ? r3((b.fwdCpuNs - a.fwdCpuNs) / 1000 / packets) : null,
    systemUsPerPacket: packets > 0 ? r3(((busyS - genS) * 1e6) / packets) : null,
    cpu,
    threads: fwd ? threads.slice(0, 8).map(({ tid, name, cpu: c }) => ({ tid, name, cpu: c })) : null,
    disturbed: cpu.outsideLoad > DISTURBED,
    attempts: raw.attempts ?? 1,
    generator: raw.generator ?? null,
  };
  for (const k of ['forwarder', 'sluiceMetrics', 'isolation', 'warning', 'latency', 'memory', 'workers', 'fill', 'syn']) {
    if (raw[k] != null) out[k] = raw[k];
  }
  return out;
}

function aggregate(runs) {
  const ok = runs.filter((r) => r.error === undefined && r.skipped === undefined);
  if (ok.length === 0) {
    const first = runs[0];
    return first.skipped !== undefined ? { skipped: first.skipped, runs } : { error: first.error, runs };
  }
  // Disturbed runs are low by an unknown amount: the medians use the undisturbed runs when
  // there are any.
  const clean = ok.filter((r) => !r.disturbed);
  const used = clean.length > 0 ? clean : ok;
  const med = (f) => median(used.map(f));
  const c = {
    pps: round(med((r) => r.pps)),
    generatorPps: round(med((r) => r.generatorPps)),
    forwarderIngressPps: round(med((r) => r.forwarderIngressPps)),
    ppsPerForwarderCore: round(med((r) => r.ppsPerForwarderCore)),
    forwarderCore: median(used.filter((r) => r.saturated != null).map((r) => r.cpu.forwarderCore)),
    generatorCpu: med((r) => r.cpu.generator),
    cpuUsPerPacket: r3(med((r) => r.cpuUsPerPacket)),
    systemUsPerPacket: r3(med((r) => r.systemUsPerPacket)),
    medianOf: clean.length > 0 ? `${clean.length} undisturbed run(s)` : `${ok.length} run(s), all disturbed`,
  };
  const lat = used.map((r) => r.latency).filter((l) => l && l.samples > 0);
  if (lat.length) {
    c.latency = {
      samples: lat.reduce((n, l) => n + l.samples, 0),
      p50Us: r2(median(lat.map((l) => l.p50Us))),
      p99Us: r2(median(lat.map((l) => l.p99Us))),
      p999Us: r2(median(lat.map((l) => l.p999Us))),
      maxUs: r2(Math.max(...lat.map((l) => l.maxUs))),
      // Each run's own p99, in run order: the spread between runs of one forwarder.
      runsP99Us: lat.map((l) => r2(l.p99Us)),
      // The same runs' steal share of the forwarder's vCPU: a tail that follows it is the VM's.
      runsForwarderSteal: used.filter((r) => r.latency && r.latency.samples > 0).map((r) => r.cpu?.forwarderCoreSteal ?? null),
    };
  }
  const idle = used.map((r) => r.memory?.idle?.rssKiB).filter((x) => x != null);
  if (idle.length) c.idleRssKiB = median(idle);
  if (used.some((r) => r.saturated != null)) c.saturatedRuns = used.filter((r) => r.saturated).length;
  c.usedRuns = used.length;
  if (clean.length === 0) c.allDisturbed = true;
  if (ok.length < runs.length) c.failedRuns = runs.length - ok.length;
  const disturbed = ok.filter((r) => r.disturbed).length;
  if (disturbed) c.disturbedRuns = disturbed;
  c.runs = runs;
  return c;
}

const phases = {};
for (const ph of PHASE_ORDER) {
  const mine = raws.filter((r) => (r.phase ?? 'custom') === ph);
  if (mine.length === 0) continue;
  const cases = {};
  for (const name of CASE_ORDER) {
    const runs = mine.filter((r) => r.case === name).map(runFigures);
    if (runs.length) cases[name] = aggregate(runs);
  }
  phases[ph] = { label: PHASE_LABEL[ph], settings: mine[0].phaseSettings ?? null, cases };
}

const caseOf = (ph, name) => {
  const c = phases[ph]?.cases?.[name];
  return c && c.error === undefined && c.skipped === undefined ? c : null;
};
const ppsOf = (ph, name) => caseOf(ph, name)?.pps ?? null;

// ---- the figures of issue 11 ----
function saturation(ph) {
  if (!phases[ph]) return null;
  const out = {};
  for (const [name, c] of Object.entries(phases[ph].cases)) {
    if (c.skipped !== undefined) { out[name] = { skipped: c.skipped }; continue; }
    if (c.error !== undefined) { out[name] = { error: c.error }; continue; }
    out[name] = {
      pps: c.pps,
      vsCref: ratio(c.pps, ppsOf(ph, 'cref')),
      vsKernel: ratio(c.pps, ppsOf(ph, 'kernel')),
      generatorPps: c.generatorPps,
      generatorCpu: c.generatorCpu,
      saturated: c.saturatedRuns == null ? null : `${c.saturatedRuns}/${c.usedRuns}`,
      cpuUsPerPacket: c.cpuUsPerPacket,
      systemUsPerPacket: c.systemUsPerPacket,
    };
  }
  return out;
}

function cpuPerPacket(ph) {
  if (!phases[ph]) return null;
  const out = {};
  const cref = caseOf(ph, 'cref');
  const kernel = caseOf(ph, 'kernel');
  for (const [name, c] of Object.entries(phases[ph].cases)) {
    if (c.skipped !== undefined || c.error !== undefined) continue;
    out[name] = {
      us: c.cpuUsPerPacket,
      systemUs: c.systemUsPerPacket,
      vsCref: ratio(c.cpuUsPerPacket, cref?.cpuUsPerPacket),
      systemVsKernel: ratio(c.systemUsPerPacket, kernel?.systemUsPerPacket),
      pps: c.pps,
      generatorCpu: c.generatorCpu,
      saturated: c.saturatedRuns == null ? null : `${c.saturatedRuns}/${c.usedRuns}`,
    };
  }
  return out;
}

function latency() {
  if (!phases.lat10k) return null;
  const k = caseOf('lat10k', 'kernel')?.latency;
  const cref = caseOf('lat10k', 'cref')?.latency;
  const added = (l, p) => (l && k ? r2(l[p] - k[p]) : null);
  const out = {};
  for (const [name, c] of Object.entries(phases.lat10k.cases)) {
    if (!c.latency) { out[name] = c.skipped ? { skipped: c.skipped } : { error: c.error ?? 'no latency samples' }; continue; }
    const l = c.latency;
    const a = { p50: added(l, 'p50Us'), p99: added(l, 'p99Us'), p999: added(l, 'p999Us') };
    out[name] = {
      ...l,
      addedP50Us: a.p50,
      addedP99Us: a.p99,
      addedP999Us: a.p999,
      addedVsCref: name === 'kernel' ? null : {
        p50: ratio(a.p50, added(cref, 'p50Us')),
        p99: ratio(a.p99, added(cref, 'p99Us')),
        p999: ratio(a.p999, added(cref, 'p999Us')),
      },
      vsKernel: { p50: ratio(l.p50Us, k?.p50Us), p99: ratio(l.p99Us, k?.p99Us), p999: ratio(l.p999Us, k?.p999Us) },
    };
  }
  return out;
}

const delta = (after, before, key) => (after && before ? (after[key] ?? 0) - (before[key] ?? 0) : null);

function memoryAndNewFlows() {
  const c = phases.mem1m?.cases?.sluiceMem;
  if (!c) return { memory: null, newFlows: null };
  if (c.error !== undefined) return { memory: { error: c.error }, newFlows: { error: c.error } };
  const run = c.runs.find((r) => r.error === undefined) ?? c.runs[0];
  const { fill, syn, memory: m } = run;
  const live = fill.metricsAfter?.sluice_flows_active ?? 0;
  const overIdleKiB = m.full.rssKiB - m.idle.rssKiB;
  const evictions = delta(fill.metricsAfter, fill.metricsBefore, 'sluice_flow_table_evictions_total');
  const memory = {
    flows: fill.flows,
    addresses: fill.addresses,
    cycles: fill.cycles,
    capacity: fill.metricsAfter?.sluice_flow_table_capacity ?? fill.capacity,
    fillRate: fill.rate,
    topUps: fill.topUps ?? 0,
    fillGeneratorPps: fill.generator?.pps ?? null,
    liveFlows: live,
    evictions,
    evictedShare: fill.flows ? r3(evictions / fill.flows) : null,
    captureDroppedDuringFill: delta(fill.metricsAfter, fill.metricsBefore, 'sluice_capture_dropped_total'),
    idleRssMiB: r2(m.idle.rssKiB / 1024),
    idleSettledSeconds: m.idle.settledSeconds ?? 0,
    fullRssMiB: r2(m.full.rssKiB / 1024),
    overIdleMiB: r2(overIdleKiB / 1024),
    overIdlePssMiB: r2((m.full.pssKiB - m.idle.pssKiB) / 1024),
    bytesPerFlow: live > 0 ? r2((overIdleKiB * 1024) / live) : null,
    processes: m.full.processes,
  };
  const seconds = run.generator?.seconds ?? null;
  const per = (k) => (seconds ? round(delta(syn.metricsAfter, syn.metricsBefore, k) / seconds) : null);
  const sent = run.generator?.sent ?? null;
  const dropped = delta(syn.metricsAfter, syn.metricsBefore, 'sluice_capture_dropped_total');
  const newFlows = {
    offeredPps: syn.rate,
    rateFrom: syn.rateFrom,
    generatorPps: run.generator?.pps ?? null,
    generatorCpu: run.cpu?.generator ?? null,
    synsSent: sent,
    seconds,
    captureDropped: dropped,
    captureDroppedShare: sent ? r3(dropped / sent) : null,
    captureIfDropped: delta(syn.metricsAfter, syn.metricsBefore, 'sluice_capture_if_dropped_total'),
    forwarderIngressDropPps: run.forwarderIngressDropPps,
    flowsCreatedPerS: per('sluice_flows_created_total'),
    untrackedPerS: per('sluice_flows_untracked_total'),
    evictionsPerS: per('sluice_flow_table_evictions_total'),
    forwardedPps: run.pps,
    cpuUsPerPacket: run.cpuUsPerPacket,
    forwarderCpu: run.cpu?.forwarder ?? null,
    saturated: run.saturated,
    halfOpenAfter: syn.metricsAfter?.sluice_flow_table_half_open ?? 0,
  };
  return { memory, newFlows };
}

function idleMemory() {
  // Every sluiceRing run records its memory before its first frame, 1 s after start; mem1m also
  // after idling BENCH_IDLE_SETTLE s (start-up work done). The settled figure is the idle memory.
  const rss = [];
  const pss = [];
  let procs = null;
  let threads = null;
  for (const ph of Object.values(phases)) {
    for (const r of ph.cases[SLUICE]?.runs ?? []) {
      const idle = r.memory?.idle;
      if (!idle) continue;
      rss.push(idle.rssKiB);
      pss.push(idle.pssKiB);
      procs = idle.processes;
      threads = idle.threads;
    }
  }
  const atStart = rss.length ? { rssMiB: r2(median(rss) / 1024), pssMiB: r2(median(pss) / 1024), runs: rss.length } : null;
  const mem = phases.mem1m?.cases?.sluiceMem?.runs?.find((r) => r.memory?.idle?.settledSeconds != null)?.memory?.idle;
  if (mem) {
    return { rssMiB: r2(mem.rssKiB / 1024), pssMiB: r2(mem.pssKiB / 1024), processes: mem.processes, threads: mem.threads, settledSeconds: mem.settledSeconds, atStart };
  }
  if (!atStart) return null;
  return { ...atStart, processes: procs, threads, settledSeconds: 1, atStart };
}

// The data-plane workers among a run's threads: by name where the data plane names them
// (anything with "worker", "dataplane" or "sl-w", but not libuv's or V8's pool threads), else
// the `count` busiest threads.
function workerSplit(run, count) {
  const ts = run?.threads ?? [];
  const named = ts.filter((t) => /worker|dataplane|sl-?w|dp-?\d/i.test(t.name) && !/^(libuv|V8)/i.test(t.name));
  const workers = named.length >= count ? named.slice(0, count) : ts.slice(0, count);
  const total = workers.reduce((n, t) => n + t.cpu, 0);
  return {
    matchedBy: named.length >= count ? 'thread name' : 'CPU use (busiest threads)',
    threads: workers.map((t) => ({ name: t.name, tid: t.tid, cpu: t.cpu, share: total > 0 ? r3(t.cpu / total) : null })),
  };
}

function workers() {
  const one = {};
  const two = {};
  let skipped = null;
  for (const ph of ['pps1', 'pps10k', 'cpu100k', 'lat10k']) {
    const c1 = caseOf(ph, SLUICE);
    if (c1) one[ph] = { pps: c1.pps, cpuUsPerPacket: c1.cpuUsPerPacket, systemUsPerPacket: c1.systemUsPerPacket, ...(c1.latency ? { p99Us: c1.latency.p99Us } : {}) };
    const raw2 = phases[ph]?.cases?.sluiceRing2;
    if (raw2?.skipped !== undefined) skipped = raw2.skipped;
    const c2 = caseOf(ph, 'sluiceRing2');
    if (c2) {
      const run = c2.runs.find((r) => r.error === undefined && !r.disturbed) ?? c2.runs.find((r) => r.error === undefined);
      two[ph] = {
        pps: c2.pps,
        cpuUsPerPacket: c2.cpuUsPerPacket,
        systemUsPerPacket: c2.systemUsPerPacket,
        vsOneWorker: { pps: ratio(c2.pps, c1?.pps), cpuUsPerPacket: ratio(c2.cpuUsPerPacket, c1?.cpuUsPerPacket) },
        split: workerSplit(run, 2),
        ...(c2.latency ? { p99Us: c2.latency.p99Us } : {}),
      };
    }
  }
  if (Object.keys(two).length === 0 && skipped == null && Object.keys(one).length === 0) return null;
  return { oneWorker: one, twoWorkers: Object.keys(two).length ? two : null, ...(skipped != null && Object.keys(two).length === 0 ? { skipped } : {}) };
}

const { memory: memory1M, newFlows } = memoryAndNewFlows();
const figures = {
  saturation: { flows1: saturation('pps1'), flows10k: saturation('pps10k') },
  cpuPerPacket: { at100kpps: cpuPerPacket('cpu100k'), atSaturation10kFlows: cpuPerPacket('pps10k'), atSaturation1Flow: cpuPerPacket('pps1') },
  latency: latency(),
  memory1M,
  idleMemory: idleMemory(),
  newFlows,
  workers: workers(),
};

// ---- goals (the table at the top of issue 11) ----
const fmtN = (x) => (x == null ? '-' : Math.round(x).toLocaleString('en-US'));
const fmtX = (x) => (x == null ? '-' : `${x.toFixed(2)}x`);
const fmtUs = (x) => (x == null ? '-' : `${x.toFixed(2)} us`);
const goals = [];
function goal(figure, sluice, cref, kernel, goalText, met, note) {
  // met: true / false, null = not measured, undefined = the figure has no goal.
  goals.push({ figure, sluice, cref, kernel, goal: goalText, met: met === undefined ? 'no goal' : met, ...(note ? { note } : {}) });
}
for (const [ph, label] of [['pps1', '1 flow'], ['pps10k', '10k flows']]) {
  const s = figures.saturation[ph === 'pps1' ? 'flows1' : 'flows10k'];
  if (!s) continue;
  const v = s[SLUICE]?.vsCref ?? null;
  goal(
    `saturation pps, ${label}`,
    s[SLUICE]?.pps != null ? `${fmtN(s[SLUICE].pps)} (${fmtX(v)} of C, ${fmtX(s[SLUICE].vsKernel)} of kernel)` : '-',
    fmtN(s.cref?.pps),
    fmtN(s.kernel?.pps),
    '>= 1.3x of C',
    v == null ? null : v >= 1.3,
    `generator CPU ${s[SLUICE]?.generatorCpu ?? '-'}, forwarder saturated ${s[SLUICE]?.saturated ?? '-'}; C saturated ${s.cref?.saturated ?? '-'}`,
  );
}
if (figures.cpuPerPacket.at100kpps) {
  const c = figures.cpuPerPacket.at100kpps;
  const v = c[SLUICE]?.vsCref ?? null;
  goal(
    'CPU per forwarded packet at 100 kpps offered (all threads of the forwarder)',
    c[SLUICE] ? `${fmtUs(c[SLUICE].us)} (${fmtX(v)} of C)` : '-',
    fmtUs(c.cref?.us),
    c.kernel ? `${fmtUs(c.kernel.systemUs)} (both cores, less the generator)` : '-',
    '<= 0.8x of C',
    v == null ? null : v <= 0.8,
    c[SLUICE]
      ? `both cores less the generator: Sluice ${fmtUs(c[SLUICE].systemUs)}, C ${fmtUs(c.cref?.systemUs)}` +
          (phases.cpu100k.settings?.rateLimit && c[SLUICE].pps < 0.97 * phases.cpu100k.settings.rateLimit
            ? `; Sluice forwarded only ${fmtN(c[SLUICE].pps)} pps of the ${fmtN(phases.cpu100k.settings.rateLimit)} offered (saturated ${c[SLUICE].saturated}): its figure is at saturation, not at 100 kpps`
            : '') +
          (c.cref && phases.cpu100k.settings?.rateLimit && c.cref.pps < 0.97 * phases.cpu100k.settings.rateLimit
            ? `; C forwarded only ${fmtN(c.cref.pps)} pps`
            : '')
      : undefined,
  );
}
if (figures.cpuPerPacket.atSaturation10kFlows) {
  const c = figures.cpuPerPacket.atSaturation10kFlows;
  goal(
    'CPU per forwarded packet at saturation, 10k flows',
    c[SLUICE] ? `${fmtUs(c[SLUICE].us)} (${fmtX(c[SLUICE].vsCref)} of C)` : '-',
    fmtUs(c.cref?.us),
    c.kernel ? `${fmtUs(c.kernel.systemUs)} (both cores, less the generator)` : '-',
    '- (no goal; compare with 100 kpps)',
    undefined,
  );
}
if (figures.latency) {
  const l = figures.latency;
  const s = l[SLUICE];
  const v = s?.addedVsCref?.p99 ?? null;
  const trio = (x) => (x && x.addedP50Us != null ? `${x.addedP50Us} / ${x.addedP99Us} / ${x.addedP999Us} us` : '-');
  goal(
    'one-way latency added at 10 kpps (over kernel forwarding), p50 / p99 / p99.9',
    trio(s),
    trio(l.cref),
    l.kernel?.p50Us != null ? `${l.kernel.p50Us} / ${l.kernel.p99Us} / ${l.kernel.p999Us} us (absolute)` : '-',
    'p99 <= 1.2x of C',
    v == null ? null : v <= 1.2,
  );
}
if (figures.memory1M && figures.memory1M.error === undefined) {
  const m = figures.memory1M;
  goal(
    `memory for ${fmtN(m.flows)} live flows (all Sluice processes, RSS over idle)`,
    `+${m.overIdleMiB} MiB, ${fmtN(m.liveFlows)} live, ${fmtN(m.evictions)} evicted (${((m.evictedShare ?? 0) * 100).toFixed(1)}%), ${m.bytesPerFlow} B/flow, capacity ${fmtN(m.capacity)}` +
      (m.topUps > 0 ? `; the set sent ${m.topUps} more time(s) at ${fmtN(m.fillRate / 2)}/s after ${fmtN(m.captureDroppedDuringFill)} frames were dropped at capture` : ''),
    '-',
    '-',
    '<= 64 MiB, 0 evicted',
    // Only a table that holds (nearly) every flow measures the figure: fewer live flows (capture
    // drops while filling, a busy machine) leave it unmeasured; the note projects it.
    m.liveFlows >= 0.99 * m.flows ? m.overIdleMiB <= 64 && m.evictions === 0 : null,
    m.liveFlows >= 0.99 * m.flows
      ? undefined
      : `only ${fmtN(m.liveFlows)} of ${fmtN(m.flows)} flows live (${fmtN(m.captureDroppedDuringFill)} frames dropped at capture while filling): ` +
          `${m.bytesPerFlow} B/flow would make ${m.bytesPerFlow == null ? '-' : r2((m.bytesPerFlow * m.flows) / MIB)} MiB for all`,
  );
} else if (figures.memory1M) {
  goal('memory for 1M live flows', `error: ${figures.memory1M.error}`, '-', '-', '<= 64 MiB, 0 evicted', null);
}
if (figures.idleMemory) {
  const i = figures.idleMemory;
  // PSS: the processes share node's code pages, which a sum of RSS counts once per process.
  goal(`idle memory, all Sluice processes (PSS, after ${i.settledSeconds} s idle)`, `${i.pssMiB} MiB PSS (${i.processes} process(es), RSS sum ${i.rssMiB} MiB)`, '-', '-', '<= 100 MiB', i.pssMiB <= 100);
}
if (figures.newFlows && figures.newFlows.error === undefined) {
  const n = figures.newFlows;
  goal(
    'new flows per second, every packet a new flow, table full (spoofed SYNs)',
    `${fmtN(n.captureDropped)} of ${fmtN(n.synsSent)} SYNs dropped at capture offered at ${fmtN(n.generatorPps)}/s; ${fmtN(n.flowsCreatedPerS)} flows created/s`,
    '-',
    '-',
    'no capture drop below 2/3 of the saturation pps',
    n.captureDropped == null || !n.synsSent ? null : n.captureDropped === 0,
    `offered: ${n.rateFrom}`,
  );
}
if (figures.workers) {
  const w = figures.workers;
  const two = w.twoWorkers?.pps10k ?? (w.twoWorkers ? Object.values(w.twoWorkers)[0] : null);
  const shares = two?.split?.threads?.map((t) => t.share) ?? [];
  goal(
    'cores used for forwarding (2 workers configured)',
    w.skipped ? `not measured: ${w.skipped.replace(/\S+\.json: /, '').slice(0, 100)}` : two ? `worker split ${shares.map((x) => x?.toFixed(2)).join(' / ')} (${two.split.matchedBy}); CPU/packet ${fmtX(two.vsOneWorker.cpuUsPerPacket)} of 1 worker` : '-',
    '1',
    '-',
    'all that are configured',
    w.skipped || !two ? null : shares.length === 2 && shares.every((x) => x >= 0.25),
  );
}

// ---- result file ----
let libpcap = null;
for (const ph of Object.values(phases)) {
  for (const c of Object.values(ph.cases)) for (const r of c.runs ?? []) if (r.forwarder?.libpcap) libpcap = r.forwarder.libpcap;
}
let cc = null;
try {
  cc = execFileSync('cc', ['--version'], { encoding: 'utf8' }).split('\n')[0];
} catch {
  cc = null;
}
// The pps table of earlier versions (cases, ratios, bar) stays, from the 10k-flow phase (or the
// only one there is).
const mainPhase = phases.pps10k ? 'pps10k' : phases.custom ? 'custom' : Object.keys(phases)[0];
const pps = (name) => (mainPhase ? ppsOf(mainPhase, name) : null);
const cases = mainPhase ? phases[mainPhase].cases : {};
const ratios = {
  phase: mainPhase ?? null,
  sluiceVsCref: ratio(pps('sluice'), pps('cref')),
  sluiceCapVsCref: ratio(pps('sluiceCap'), pps('cref')),
  sluiceRingVsCref: ratio(pps('sluiceRing'), pps('cref')),
  sluiceRing2VsCref: ratio(pps('sluiceRing2'), pps('cref')),
  mptcpOnVsOff: ratio(pps('sluice'), pps('sluiceNoMptcp')),
  crefVsKernel: ratio(pps('cref'), pps('kernel')),
  sluiceVsKernel: ratio(pps('sluice'), pps('kernel')),
  sluiceRingVsKernel: ratio(pps('sluiceRing'), pps('kernel')),
  // Forwarded pps per busy forwarder core: comparable even when a forwarder was not
  // saturated (then its pps is what the generator could offer, not what it could forward).
  perCore: {
    sluiceVsCref: ratio(cases.sluice?.ppsPerForwarderCore, cases.cref?.ppsPerForwarderCore),
    sluiceCapVsCref: ratio(cases.sluiceCap?.ppsPerForwarderCore, cases.cref?.ppsPerForwarderCore),
    sluiceRingVsCref: ratio(cases.sluiceRing?.ppsPerForwarderCore, cases.cref?.ppsPerForwarderCore),
  },
};
const barRatio = ratios.sluiceRingVsCref ?? ratios.sluiceVsCref;
const result = {
  date: new Date().toISOString(),
  machine: {
    nproc: os.availableParallelism?.() ?? os.cpus().length,
    cpuModel: os.cpus()[0]?.model ?? null,
    kernel: os.release(),
    node: process.version,
    cc,
    libpcap,
  },
  settings,
  figures,
  goals,
  phases,
  cases,
  ratios,
  bar: { sluiceVsCref: BAR.sluiceVsCref, met: barRatio == null ? null : barRatio >= BAR.sluiceVsCref },
};

const tmp = `${outFile}.${process.pid}.tmp`;
writeFileSync(tmp, JSON.stringify(result, null, 2) + '\n');
renameSync(tmp, outFile);

// ---- tables ----
const fmt = (x) => (x == null ? '-' : x.toLocaleString('en-US'));
function printTable(rows, firstLeft = true) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => String(r[i]).length)));
  const line = (r) => r.map((cell, i) => (i === 0 && firstLeft ? String(cell).padEnd(widths[i]) : String(cell).padStart(widths[i]))).join('  ');
  console.log(line(rows[0]));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows.slice(1)) console.log(line(r));
}
console.log('');
console.log(
  `native-bench: ${settings.protocol === 'tcp' ? '66-byte TCP ACKs (timestamps)' : '64-byte UDP'}, ${settings.warmupSeconds} s warm-up + ${settings.windowSeconds} s window, ` +
    `generator on CPU${settings.generatorCpu}, forwarder on CPU${settings.forwarderCpu}, median of ${settings.repeat}, ${settings.wallSeconds ?? '-'} s of measuring`,
);
for (const [ph, p] of Object.entries(phases)) {
  const s = p.settings;
  console.log('');
  console.log(`phase ${ph}: ${p.label}${s ? ` (${fmt(s.flows)} flows, ${s.rateLimit ? `${fmt(s.rateLimit)} pps offered` : 'generator unlimited'}, batch ${s.generatorBatch})` : ''}`);
  const rows = [['case', 'forwarded pps', 'x C ref', 'generator pps', 'gen CPU', 'fwd core', 'us CPU/pkt', 'saturated', 'runs used']];
  for (const name of CASE_ORDER) {
    const c = p.cases[name];
    if (!c) continue;
    if (c.skipped !== undefined) { rows.push([CASE_LABEL[name], 'skipped', '-', '-', '-', '-', '-', '-', '-']); continue; }
    if (c.error !== undefined) { rows.push([CASE_LABEL[name], 'error', '-', '-', '-', '-', '-', '-', String(c.runs.length)]); continue; }
    rows.push([
      CASE_LABEL[name],
      fmt(c.pps),
      ratio(c.pps, ppsOf(ph, 'cref'))?.toFixed(3) ?? '-',
      fmt(c.generatorPps),
      c.generatorCpu == null ? '-' : c.generatorCpu.toFixed(2),
      c.forwarderCore == null ? '-' : c.forwarderCore.toFixed(2),
      c.cpuUsPerPacket == null ? '-' : c.cpuUsPerPacket.toFixed(2),
      c.saturatedRuns == null ? '-' : `${c.saturatedRuns}/${c.usedRuns}`,
      `${c.usedRuns}/${c.runs.length}` +
        (c.failedRuns ? ` (${c.failedRuns} failed)` : '') +
        (c.disturbedRuns ? ` (${c.disturbedRuns} disturbed${c.allDisturbed ? ', used' : ''})` : ''),
    ]);
  }
  printTable(rows);
  for (const name of CASE_ORDER) {
    const c = p.cases[name];
    if (c?.error !== undefined) console.log(`  ${name}: ${c.error}`);
    if (c?.skipped !== undefined) console.log(`  ${name}: ${c.skipped}`);
  }
}
console.log('');
if (goals.length === 0) {
  console.log('no figure of issue 11 in this run (its phases: pps1 pps10k cpu100k lat10k mem1m)');
  if (ratios.mptcpOnVsOff != null) console.log(`MPTCP steering on / off: ${ratios.mptcpOnVsOff}`);
} else {
  console.log('issue 11 figures against their goals (Sluice = capture engine "ring", one worker unless said):');
  printTable([['figure', 'Sluice', 'C reference', 'kernel', 'goal', 'met'], ...goals.map((g) => [g.figure, g.sluice, g.cref, g.kernel, g.goal, metText(g.met)])]);
  for (const g of goals) if (g.note) console.log(`  ${g.figure}: ${g.note}`);
}
if (Object.values(phases).some((p) => Object.values(p.cases).some((c) => c.disturbedRuns))) {
  console.log(
    `warning: in runs marked "disturbed" the generator or forwarder waited > ${DISTURBED * 100}% of the ` +
      'window for a CPU taken by other processes; medians leave them out unless every run of a case was ' +
      'disturbed. Repeat (BENCH_REPEAT) on a quiet machine',
  );
}
console.log(`written: ${outFile}`);

function metText(met) {
  if (met === undefined || met === 'no goal') return '-';
  return met == null ? 'not measured' : met ? 'met' : 'missed';
}

function printMarkdown(result) {
  const gs = result.goals ?? [];
  const esc = (s) => String(s).replaceAll('|', '\\|');
  console.log('| figure | Sluice (ring engine) | C libpcap reference | kernel forwarding | goal | met |');
  console.log('|---|---|---|---|---|---|');
  for (const g of gs) console.log(`| ${esc(g.figure)} | ${esc(g.sluice)} | ${esc(g.cref)} | ${esc(g.kernel)} | ${esc(g.goal)} | ${metText(g.met)} |`);
  const s = result.settings ?? {};
  console.log('');
  console.log(
    `Measured ${result.date?.slice(0, 10) ?? ''} by \`sudo npm run bench\` (${result.machine?.nproc ?? '?'} CPUs, ` +
      `${s.warmupSeconds} s warm-up + ${s.windowSeconds} s windows, median of ${s.repeat}); \`native-bench/results/latest.json\`.`,
  );
}
