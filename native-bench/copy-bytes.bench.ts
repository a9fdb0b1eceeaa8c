/**
 * Copying one frame's bytes into a tx slot, per copy: Node's Buffer.copy (a view of the source
 * per call unless the whole source is copied) against src/packet/copy-bytes.ts and its pieces,
 * for a 64-byte and a 1500-byte frame. The copy is the ipip one (from the IP header at 14 to
 * 34, both 2 mod 4) so every candidate copies the same bytes; rx and tx slots are in two
 * backings (as in both capture engines) except for the copyWithin case. Figures are noisy on a shared
 * machine: read the ratios to Buffer.copy from one run.
 *
 * Build: npx tsc -p tsconfig.json; run from the repository root: node dist/native-bench/copy-bytes.bench.js
 * COPY_BENCH_MAX_TIME: seconds per case (default 0.5).
 */
import Benchmark from 'benchmark';
import { copyByteLoop, copyBytes, copyWordLoop } from '../src/packet/copy-bytes.js';

const MAX_TIME = Number(process.env.COPY_BENCH_MAX_TIME ?? 0.5);
const SLOT = 10240; // FRAME_SLOT_BYTES, as in the engines
const SLOTS = 64;
const COPIES = 64; // copies per benchmark call: figures are per copy

/** rx and tx slot areas in separate backings (the batch engine), and one area holding both (a shared ring). */
const rxArea = Buffer.allocUnsafeSlow(SLOT * SLOTS).fill(0x5a);
const txArea = Buffer.allocUnsafeSlow(SLOT * SLOTS);
const shared = Buffer.allocUnsafeSlow(SLOT * SLOTS * 2).fill(0x5a);
const rx: Buffer[] = [];
const tx: Buffer[] = [];
const sharedRx: Buffer[] = [];
const sharedTx: Buffer[] = [];
for (let i = 0; i < SLOTS; i++) {
  rx.push(rxArea.subarray(i * SLOT, (i + 1) * SLOT));
  tx.push(txArea.subarray(i * SLOT, (i + 1) * SLOT));
  sharedRx.push(shared.subarray(i * SLOT, (i + 1) * SLOT));
  sharedTx.push(shared.subarray((SLOTS + i) * SLOT, (SLOTS + i + 1) * SLOT));
}

let sink = 0;
type Copy = (s: Buffer, d: Buffer, n: number) => void;
const candidates: { name: string; copy: Copy; shared?: boolean }[] = [
  { name: 'Buffer.copy', copy: (s, d, n) => void s.copy(d, 34, 14, 14 + n) },
  { name: 'byte loop', copy: (s, d, n) => copyByteLoop(s, 14, d, 34, n) },
  { name: 'word loop', copy: (s, d, n) => copyWordLoop(s, 14, d, 34, n) },
  { name: 'copyBytes, two backings (kept view, set)', copy: (s, d, n) => copyBytes(s, 14, d, 34, n) },
  { name: 'copyBytes, one backing (copyWithin)', copy: (s, d, n) => copyBytes(s, 14, d, 34, n), shared: true },
];

const results: { size: number; name: string; ns: number }[] = [];
for (const size of [64, 1500]) {
  const suite = new Benchmark.Suite();
  for (const c of candidates) {
    const srcs = c.shared ? sharedRx : rx;
    const dsts = c.shared ? sharedTx : tx;
    const copy = c.copy;
    suite.add(`${size} B ${c.name}`, () => {
      for (let i = 0; i < COPIES; i++) copy(srcs[i], dsts[i], size);
      sink += dsts[0][40];
    }, { maxTime: MAX_TIME });
  }
  suite.on('cycle', (e: Benchmark.Event) => {
    const b = e.target as unknown as Benchmark;
    const name = String(b.name);
    results.push({ size, name: name.slice(name.indexOf('B ') + 2), ns: (1e9 / (b.hz ?? 1)) / COPIES });
  });
  suite.run();
}
for (const size of [64, 1500]) {
  const base = results.find((r) => r.size === size && r.name === 'Buffer.copy');
  for (const r of results.filter((x) => x.size === size)) {
    console.log(`${String(size).padStart(4)} B  ${r.name.padEnd(38)} ${r.ns.toFixed(1).padStart(7)} ns/copy  ${(r.ns / (base?.ns ?? r.ns)).toFixed(2)}x Buffer.copy`);
  }
}
if (sink === -1) console.log(sink);
