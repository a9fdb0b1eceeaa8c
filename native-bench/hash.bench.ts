/**
 * Per-key cost of the hash and flow-tracking path:
 *   - murmurhash3js-revisited x86.hash32 on a 13-byte key copied out of the frame (what a
 *     straightforward implementation would do) vs Sluice's flowHash straight from the frame
 *   - Maglev lookup (table[hash mod M]) and hash + lookup together
 *   - FlowTable lookup, hit and miss, in a table at ~38% load
 *   - building a Maglev table, M = 65537, N = 1000 (per build, not per key)
 * Each per-key case runs over KEYS distinct frames per call; a baseline loop touching the same
 * frames is measured too. Figures vary run to run: compare the ratios from one run.
 *
 * Build: npx tsc -p tsconfig.json; run from the repository root: node dist/native-bench/hash.bench.js
 * Writes native-bench/results/hash.json (HASH_BENCH_OUT overrides; HASH_BENCH_MAX_TIME seconds per case).
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import Benchmark from 'benchmark';
import { FlowTable } from '../src/dataplane/flow-table.js';
import { MAGLEV_DEFAULT_SIZE, buildMaglevTable, type MaglevBackend } from '../src/hash/maglev.js';
import { copyFlowKey, flowHash } from '../src/hash/murmur3.js';
import { ParsedPacket } from '../src/packet/parsed-packet.js';

interface MurmurReference {
  x86: { hash32(bytes: Uint8Array | number[], seed?: number): number };
}
const reference = createRequire(import.meta.url)('murmurhash3js-revisited') as MurmurReference;

const KEYS = 1024; // keys per benchmark call; figures are per key
const OUT = resolve(process.env.HASH_BENCH_OUT ?? 'native-bench/results/hash.json');
const MAX_TIME = Number(process.env.HASH_BENCH_MAX_TIME ?? 3);
const SEED = 0x5eed1234;
const NOW = 1_000_000;

let rngState = 0x9e3779b9;
function rand(): number {
  rngState ^= rngState << 13;
  rngState ^= rngState >>> 17;
  rngState ^= rngState << 5;
  return (rngState >>>= 0);
}

interface KeySet {
  frames: Uint8Array[];
  parsed: ParsedPacket[];
}

/** KEYS distinct TCP/UDP frames of one family, addresses where the IP header holds them. */
function makeKeys(family: 4 | 6): KeySet {
  const frames: Uint8Array[] = [];
  const parsed: ParsedPacket[] = [];
  for (let i = 0; i < KEYS; i++) {
    const frame = new Uint8Array(128);
    for (let j = 0; j < frame.length; j++) frame[j] = rand() & 0xff;
    const p = new ParsedPacket();
    p.ipVersion = family;
    p.addrLen = family === 4 ? 4 : 16;
    p.l3Offset = 14;
    p.srcAddrOffset = 14 + (family === 4 ? 12 : 8);
    p.dstAddrOffset = p.srcAddrOffset + p.addrLen;
    p.protocol = (i & 1) === 0 ? 6 : 17;
    p.srcPort = rand() & 0xffff;
    p.dstPort = (i & 3) === 0 ? 443 : 80;
    frames.push(frame);
    parsed.push(p);
  }
  return { frames, parsed };
}

const v4 = makeKeys(4);
const v6 = makeKeys(6);
const absent = makeKeys(4);
const keyBuf13 = new Uint8Array(13);
const keyBuf37 = new Uint8Array(37);
const hashes = new Uint32Array(KEYS);
const absentHashes = new Uint32Array(KEYS);
let sink = 0;

// Sanity before timing: the inline hash equals the library's on every key.
for (let i = 0; i < KEYS; i++) {
  for (const set of [v4, v6]) {
    const n = copyFlowKey(set.frames[i], set.parsed[i], keyBuf37);
    if (reference.x86.hash32(keyBuf37.subarray(0, n), SEED) !== flowHash(set.frames[i], set.parsed[i], SEED)) {
      throw new Error(`flowHash differs from murmurhash3js-revisited on key ${i}`);
    }
  }
  hashes[i] = flowHash(v4.frames[i], v4.parsed[i], SEED);
  absentHashes[i] = flowHash(absent.frames[i], absent.parsed[i], SEED);
}

const backends1000: MaglevBackend[] = Array.from({ length: 1000 }, (_, i) => ({
  key: `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}:80`,
  weight: 1,
}));
const maglev = buildMaglevTable(backends1000, MAGLEV_DEFAULT_SIZE);

// Flow table at ~38% load: 100k random flows plus the KEYS benchmark flows.
const flowCapacity = 1 << 18;
const flows = new FlowTable(flowCapacity, { tcpIdleMs: 3_600_000, tcpClosingMs: 10_000, udpIdleMs: 3_600_000 });
{
  const filler = makeKeys(4);
  for (let round = 0; round < 100_000 / KEYS; round++) {
    for (let i = 0; i < KEYS; i++) {
      const p = filler.parsed[i];
      p.srcPort = rand() & 0xffff;
      filler.frames[i][p.srcAddrOffset] = rand() & 0xff;
      flows.insert(filler.frames[i], p, flowHash(filler.frames[i], p, SEED), NOW, i & 1023, 0, 1);
    }
  }
  for (let i = 0; i < KEYS; i++) flows.insert(v4.frames[i], v4.parsed[i], hashes[i], NOW, i, 0, 1);
  for (let i = 0; i < KEYS; i++) {
    if (flows.lookup(v4.frames[i], v4.parsed[i], hashes[i], NOW) < 0) throw new Error('flow table lost a benchmark flow');
    if (flows.lookup(absent.frames[i], absent.parsed[i], absentHashes[i], NOW) >= 0) throw new Error('flow table false hit');
  }
}

interface Case {
  name: string;
  /** Keys per call (1 for whole-table builds). */
  perCall: number;
  fn: () => void;
}

const cases: Case[] = [
  {
    name: 'baseline: touch one byte of each frame',
    perCall: KEYS,
    fn: () => {
      let acc = 0;
      for (let i = 0; i < KEYS; i++) acc ^= v4.frames[i][v4.parsed[i].srcAddrOffset];
      sink ^= acc;
    },
  },
  {
    name: 'murmurhash3js-revisited hash32, 13-byte IPv4 key copied from the frame',
    perCall: KEYS,
    fn: () => {
      let acc = 0;
      for (let i = 0; i < KEYS; i++) {
        copyFlowKey(v4.frames[i], v4.parsed[i], keyBuf13);
        acc ^= reference.x86.hash32(keyBuf13, SEED);
      }
      sink ^= acc;
    },
  },
  {
    name: 'flowHash inline from the frame, IPv4 (13 bytes)',
    perCall: KEYS,
    fn: () => {
      let acc = 0;
      for (let i = 0; i < KEYS; i++) acc ^= flowHash(v4.frames[i], v4.parsed[i], SEED);
      sink ^= acc;
    },
  },
  {
    name: 'murmurhash3js-revisited hash32, 37-byte IPv6 key copied from the frame',
    perCall: KEYS,
    fn: () => {
      let acc = 0;
      for (let i = 0; i < KEYS; i++) {
        copyFlowKey(v6.frames[i], v6.parsed[i], keyBuf37);
        acc ^= reference.x86.hash32(keyBuf37, SEED);
      }
      sink ^= acc;
    },
  },
  {
    name: 'flowHash inline from the frame, IPv6 (37 bytes)',
    perCall: KEYS,
    fn: () => {
      let acc = 0;
      for (let i = 0; i < KEYS; i++) acc ^= flowHash(v6.frames[i], v6.parsed[i], SEED);
      sink ^= acc;
    },
  },
  {
    name: 'Maglev lookup, M = 65537 (precomputed hashes)',
    perCall: KEYS,
    fn: () => {
      let acc = 0;
      const m = maglev.length;
      for (let i = 0; i < KEYS; i++) acc += maglev[hashes[i] % m];
      sink ^= acc;
    },
  },
  {
    name: 'flowHash IPv4 + Maglev lookup',
    perCall: KEYS,
    fn: () => {
      let acc = 0;
      const m = maglev.length;
      for (let i = 0; i < KEYS; i++) acc += maglev[flowHash(v4.frames[i], v4.parsed[i], SEED) % m];
      sink ^= acc;
    },
  },
  {
    name: 'FlowTable lookup, hit (IPv4, 38% load, precomputed hash)',
    perCall: KEYS,
    fn: () => {
      let acc = 0;
      for (let i = 0; i < KEYS; i++) acc += flows.lookup(v4.frames[i], v4.parsed[i], hashes[i], NOW);
      sink ^= acc;
    },
  },
  {
    name: 'FlowTable lookup, miss (IPv4, 38% load, precomputed hash)',
    perCall: KEYS,
    fn: () => {
      let acc = 0;
      for (let i = 0; i < KEYS; i++) acc += flows.lookup(absent.frames[i], absent.parsed[i], absentHashes[i], NOW);
      sink ^= acc;
    },
  },
  {
    name: 'flowHash + FlowTable lookup hit + touch (the per-packet flow step)',
    perCall: KEYS,
    fn: () => {
      let acc = 0;
      for (let i = 0; i < KEYS; i++) {
        const slot = flows.lookup(v4.frames[i], v4.parsed[i], flowHash(v4.frames[i], v4.parsed[i], SEED), NOW);
        flows.touch(slot, NOW, 0x10);
        acc += flows.backendOf(slot);
      }
      sink ^= acc;
    },
  },
  {
    name: 'buildMaglevTable M = 65537, N = 1000 equal weights (per build)',
    perCall: 1,
    fn: () => {
      sink ^= buildMaglevTable(backends1000, MAGLEV_DEFAULT_SIZE)[0];
    },
  },
];

interface Figure {
  name: string;
  nsPerOp: number;
  opsPerSec: number;
  rmePercent: number;
  samples: number;
}

function run(c: Case): Figure {
  let figure: Figure | undefined;
  const bench = new Benchmark(c.name, c.fn, {
    minSamples: 20,
    maxTime: MAX_TIME,
    onComplete: () => {
      if (bench.error) throw bench.error;
      const nsPerOp = (bench.stats.mean / c.perCall) * 1e9;
      figure = {
        name: c.name,
        nsPerOp: Math.round(nsPerOp * 100) / 100,
        opsPerSec: Math.round(1e9 / nsPerOp),
        rmePercent: Math.round(bench.stats.rme * 100) / 100,
        samples: bench.stats.sample.length,
      };
    },
  });
  bench.run({ async: false });
  if (figure === undefined) throw new Error(`benchmark ${c.name} did not complete`);
  return figure;
}

function main(): void {
  const figures = cases.map(run);
  const byName = (prefix: string): Figure => {
    const f = figures.find((x) => x.name.startsWith(prefix));
    if (f === undefined) throw new Error(`no case ${prefix}`);
    return f;
  };
  const ratio = (a: Figure, b: Figure): number => Math.round((a.nsPerOp / b.nsPerOp) * 100) / 100;
  const libV4 = byName('murmurhash3js-revisited hash32, 13-byte');
  const inlineV4 = byName('flowHash inline from the frame, IPv4');
  const libV6 = byName('murmurhash3js-revisited hash32, 37-byte');
  const inlineV6 = byName('flowHash inline from the frame, IPv6');
  const ratios = {
    libraryOverInlineV4: ratio(libV4, inlineV4),
    libraryOverInlineV6: ratio(libV6, inlineV6),
    tableMissOverHit: ratio(byName('FlowTable lookup, miss'), byName('FlowTable lookup, hit')),
  };

  const w = Math.max(...figures.map((f) => f.name.length));
  console.log(`${'case'.padEnd(w)}  ${'ns/op'.padStart(12)}  ${'ops/sec'.padStart(14)}  ${'rme'.padStart(7)}`);
  for (const f of figures) {
    const ns = f.nsPerOp >= 1e5 ? `${(f.nsPerOp / 1e6).toFixed(2)} ms` : f.nsPerOp.toFixed(2);
    console.log(`${f.name.padEnd(w)}  ${ns.padStart(12)}  ${f.opsPerSec.toLocaleString('en-US').padStart(14)}  ${`±${f.rmePercent}%`.padStart(7)}`);
  }
  console.log(`library / inline flowHash: IPv4 ${ratios.libraryOverInlineV4}x, IPv6 ${ratios.libraryOverInlineV6}x; table miss / hit ${ratios.tableMissOverHit}x`);

  const report = {
    suite: 'hash',
    generatedAt: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    keysPerCall: KEYS,
    flowTable: { capacity: flows.capacity, entries: flows.size, evictions: flows.evictions },
    maglev: { size: MAGLEV_DEFAULT_SIZE, backends: backends1000.length },
    note: 'ns per op = mean time of one call / keys per call (the Maglev build case is per build); ops/sec = 1e9 / ns per op',
    results: figures,
    ratios,
    sink,
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(`${OUT}.tmp`, `${JSON.stringify(report, null, 2)}\n`);
  renameSync(`${OUT}.tmp`, OUT);
  console.log(`wrote ${OUT}`);
}

main();
