/**
 * Per-packet cost of Sluice's MPTCP layer: TCP option walk + MPTCP decode + token work.
 *   (a) plain TCP ACK with timestamps: walk only, no MPTCP option
 *   (b) third ACK (20-byte MP_CAPABLE): decode + SHA-256 of the server key + table learn
 *   (b') the same with node:crypto's createHash for the token: the alternative a user would pick
 *   (c) third ACK again when the flow already has its token: decode only (what the forwarder
 *       should do for the repeated MP_CAPABLE Linux sends until the server's first DSS)
 *   (d) MP_JOIN SYN: decode + token read + table lookup (hit)
 *   (d') the same over a table in a SharedArrayBuffer, as data-plane workers share it (issue 11)
 * Each case is compared with a baseline loop that touches the same frames and does nothing.
 *
 * Build: npx tsc -p tsconfig.json; run: node dist/native-bench/mptcp.bench.js
 * Writes native-bench/results/mptcp.json (path relative to the repository root = cwd).
 */
import { createHash } from 'node:crypto';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import Benchmark from 'benchmark';
import { MptcpInfo } from '../src/packet/mptcp-options.js';
import { MptcpTokenTable, mptcpActionToken, mptcpInspect } from '../src/dataplane/mptcp-tokens.js';
import type { ParsedPacket } from '../src/packet/parsed-packet.js';
import {
  TCP_ACK,
  TCP_SYN,
  buildTcpFrame,
  optMpCapable,
  optMpJoinSyn,
  optMss,
  optNop,
  optSackPermitted,
  optTimestamps,
  optWscale,
} from '../test/fixtures/mptcp-frames.js';

const BATCH = 64; // frames per benchmark call; figures are per frame
const OUT = resolve(process.env.MPTCP_BENCH_OUT ?? 'native-bench/results/mptcp.json');

interface FrameSet {
  frames: Uint8Array[];
  parsed: ParsedPacket[];
}

/** A distinct 8-byte key per frame, so the hash never sees the same input twice in a row. */
function keyOf(i: number, salt: number): number[] {
  const h = Math.imul(i + 1, 0x9e3779b1) ^ Math.imul(salt, 0x85ebca6b);
  const out: number[] = [];
  for (let b = 0; b < 8; b++) out.push(((h >>> ((b & 3) * 8)) ^ (b * 37 + salt)) & 0xff);
  return out;
}

function makeSet(build: (i: number) => { frame: Uint8Array; parsed: ParsedPacket }): FrameSet {
  const frames: Uint8Array[] = [];
  const parsed: ParsedPacket[] = [];
  for (let i = 0; i < BATCH; i++) {
    const b = build(i);
    frames.push(b.frame);
    parsed.push(b.parsed);
  }
  return { frames, parsed };
}

const family = (i: number): 4 | 6 => (i % 4 === 3 ? 6 : 4);

const plainAcks = makeSet((i) =>
  buildTcpFrame({ family: family(i), flags: TCP_ACK, options: [optNop(), optNop(), optTimestamps(i * 1000, i * 999)], srcPort: 40000 + i }),
);
const thirdAcks = makeSet((i) =>
  buildTcpFrame({
    family: family(i),
    flags: TCP_ACK,
    options: [optNop(), optNop(), optTimestamps(i, i), optMpCapable({ version: 1, senderKey: keyOf(i, 7), receiverKey: keyOf(i, 101) })],
    srcPort: 40000 + i,
  }),
);
/** Tokens computed independently of the code under test (node:crypto). */
const serverTokens = thirdAcks.frames.map((_, i) =>
  createHash('sha256').update(Uint8Array.from(keyOf(i, 101))).digest().readUInt32BE(0),
);
const joinSyns = makeSet((i) => {
  const t = serverTokens[i];
  return buildTcpFrame({
    family: family(i),
    flags: TCP_SYN,
    options: [
      optMss(1460),
      optSackPermitted(),
      optTimestamps(i, 0),
      optNop(),
      optWscale(7),
      optMpJoinSyn({ backup: false, addressId: 2, token: [t >>> 24, (t >>> 16) & 0xff, (t >>> 8) & 0xff, t & 0xff], nonce: i }),
    ],
    srcPort: 50000 + i,
  });
});

const info = new MptcpInfo();
const table = new MptcpTokenTable({ capacity: 1 << 16, idleTimeoutMs: 300_000, seed: 1 });
const sharedTable = MptcpTokenTable.over(MptcpTokenTable.sharedBuffer(1 << 16, { seed: 1 }), { idleTimeoutMs: 300_000 });
let now = 1;
let sink = 0;

// Sanity: every frame does what its case claims, before anything is timed.
for (let i = 0; i < BATCH; i++) {
  if (mptcpInspect(plainAcks.frames[i], plainAcks.parsed[i], info) !== 0) throw new Error('plain ACK frame misdecoded');
  if (mptcpInspect(thirdAcks.frames[i], thirdAcks.parsed[i], info) !== 1) throw new Error('third ACK frame misdecoded');
  if (mptcpActionToken(thirdAcks.frames[i], 1, info) !== serverTokens[i]) throw new Error('token offset mismatch');
  table.learn(serverTokens[i], i & 7, 0, 1, now);
  sharedTable.learn(serverTokens[i], i & 7, 0, 1, now);
  if (mptcpInspect(joinSyns.frames[i], joinSyns.parsed[i], info) !== 3) throw new Error('join SYN frame misdecoded');
  if (table.lookup(mptcpActionToken(joinSyns.frames[i], 3, info), now) !== (i & 7)) throw new Error('join lookup missed');
  if (sharedTable.lookup(mptcpActionToken(joinSyns.frames[i], 3, info), now) !== (i & 7)) throw new Error('shared join lookup missed');
}

function baseline(set: FrameSet): () => void {
  const { frames, parsed } = set;
  return () => {
    let acc = 0;
    for (let i = 0; i < BATCH; i++) acc ^= frames[i][parsed[i].tcpOptionsOffset];
    sink ^= acc;
  };
}

/** Decode each MP_JOIN SYN of the batch and look its token up in `t` (cases d and d'). */
function joinLookups(t: MptcpTokenTable): () => void {
  return () => {
    let acc = 0;
    for (let i = 0; i < BATCH; i++) {
      const f = joinSyns.frames[i];
      const action = mptcpInspect(f, joinSyns.parsed[i], info);
      acc += t.lookup(mptcpActionToken(f, action, info), now);
    }
    sink ^= acc;
  };
}

const cases: { name: string; set: FrameSet; fn: () => void }[] = [
  {
    name: '(a) plain TCP ACK + timestamps: option walk',
    set: plainAcks,
    fn: () => {
      let acc = 0;
      for (let i = 0; i < BATCH; i++) acc += mptcpInspect(plainAcks.frames[i], plainAcks.parsed[i], info);
      sink ^= acc;
    },
  },
  {
    name: '(b) third ACK: decode + SHA-256 token + learn',
    set: thirdAcks,
    fn: () => {
      now++;
      let acc = 0;
      for (let i = 0; i < BATCH; i++) {
        const f = thirdAcks.frames[i];
        const action = mptcpInspect(f, thirdAcks.parsed[i], info);
        acc += table.learn(mptcpActionToken(f, action, info), i & 7, 0, info.version, now);
      }
      sink ^= acc;
    },
  },
  {
    name: '(b\') the same with node:crypto createHash for the token (alternative)',
    set: thirdAcks,
    fn: () => {
      now++;
      let acc = 0;
      for (let i = 0; i < BATCH; i++) {
        const f = thirdAcks.frames[i];
        mptcpInspect(f, thirdAcks.parsed[i], info);
        const k = info.receiverKeyOffset;
        const token = createHash('sha256').update(f.subarray(k, k + 8)).digest().readUInt32BE(0);
        acc += table.learn(token, i & 7, 0, info.version, now);
      }
      sink ^= acc;
    },
  },
  {
    name: '(c) repeated MP_CAPABLE ACK, token already on the flow: decode only',
    set: thirdAcks,
    fn: () => {
      let acc = 0;
      for (let i = 0; i < BATCH; i++) acc += mptcpInspect(thirdAcks.frames[i], thirdAcks.parsed[i], info);
      sink ^= acc;
    },
  },
  {
    name: '(d) MP_JOIN SYN: decode + token lookup',
    set: joinSyns,
    fn: joinLookups(table),
  },
  {
    name: "(d') MP_JOIN SYN: decode + token lookup, table in a SharedArrayBuffer (workers)",
    set: joinSyns,
    fn: joinLookups(sharedTable),
  },
];

interface Figure {
  name: string;
  nsPerPacket: number;
  rmePercent: number;
  samples: number;
}

function run(name: string, fn: () => void): Promise<Figure> {
  return new Promise((resolveRun, reject) => {
    const bench = new Benchmark(name, fn, {
      minSamples: 20,
      maxTime: Number(process.env.MPTCP_BENCH_MAX_TIME ?? 3),
      onComplete: () => {
        if (bench.error) {
          reject(bench.error);
          return;
        }
        resolveRun({
          name,
          nsPerPacket: Math.round((bench.stats.mean / BATCH) * 1e9 * 100) / 100,
          rmePercent: Math.round(bench.stats.rme * 100) / 100,
          samples: bench.stats.sample.length,
        });
      },
    });
    bench.run({ async: false });
  });
}

async function main(): Promise<void> {
  const loadBefore = os.loadavg()[0];
  const results: (Figure & { baselineNsPerPacket: number; netNsPerPacket: number; ratioVsBaseline: number })[] = [];
  for (const c of cases) {
    const base = await run(`baseline over the frames of ${c.name}`, baseline(c.set));
    const fig = await run(c.name, c.fn);
    const row = {
      ...fig,
      baselineNsPerPacket: base.nsPerPacket,
      netNsPerPacket: Math.round((fig.nsPerPacket - base.nsPerPacket) * 100) / 100,
      ratioVsBaseline: Math.round((fig.nsPerPacket / base.nsPerPacket) * 100) / 100,
    };
    results.push(row);
    console.log(
      `${c.name.padEnd(72)} ${row.nsPerPacket.toFixed(1).padStart(8)} ns/pkt  ` +
        `(+-${row.rmePercent.toFixed(1)}%)  baseline ${row.baselineNsPerPacket.toFixed(1)} ns  x${row.ratioVsBaseline.toFixed(1)}`,
    );
  }
  const doc = {
    suite: 'mptcp',
    generatedAt: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    // Other work on the machine inflates every figure; compare ratios from one run.
    loadAverage1m: { before: Math.round(loadBefore * 100) / 100, after: Math.round(os.loadavg()[0] * 100) / 100 },
    framesPerCall: BATCH,
    tokenTable: { capacity: table.capacity, probeWindow: table.probeWindow, active: table.active },
    note: 'ns per packet = mean time of one call over 64 frames / 64; ratio = case / baseline loop over the same frames',
    results,
    sink,
  };
  mkdirSync(dirname(OUT), { recursive: true });
  const tmp = `${OUT}.tmp`;
  writeFileSync(tmp, JSON.stringify(doc, null, 2) + '\n');
  renameSync(tmp, OUT);
  console.log(`wrote ${OUT}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
