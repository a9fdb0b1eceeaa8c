/**
 * Control plane on loopback, all instances in this one process (they share its event loop, so
 * the figures include every instance's work, as on a one-core box):
 *   - owner query round trip: instance lb-a asks for keys owned by lb-b and lb-c (owner and
 *     replica, asked in parallel; the first FOUND wins), one query at a time: p50/p90/p99/max;
 *     the same for keys nobody has (both must answer NOT FOUND); and QUERY_CONCURRENCY at a time
 *     for throughput;
 *   - publish rate: lb-a publishes PUBLISH_ENTRIES entries (flows and tokens) to a 3-instance
 *     cluster; time from publish() until every remote copy is stored (or delivery stalls),
 *     entries/s, datagrams, copies lost. Median of PUBLISH_RUNS runs.
 *
 * Build: npx tsc -p tsconfig.json; run from the repository root: node dist/native-bench/control.bench.js
 * Environment: CONTROL_BENCH_QUERIES (5000), CONTROL_BENCH_ENTRIES (100000), CONTROL_BENCH_RUNS (3),
 * CONTROL_BENCH_OUT (native-bench/results/control.json).
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { ControlPlane, tokenKey, validateClusterConfig, type SyncEntry } from '../src/control/index.js';

const QUERIES = Number(process.env.CONTROL_BENCH_QUERIES ?? 5000);
const PUBLISH_ENTRIES = Number(process.env.CONTROL_BENCH_ENTRIES ?? 100_000);
const PUBLISH_RUNS = Number(process.env.CONTROL_BENCH_RUNS ?? 3);
const QUERY_CONCURRENCY = 64;
const OUT = resolve(process.env.CONTROL_BENCH_OUT ?? 'native-bench/results/control.json');
const KEY = randomBytes(32);
const IDS = ['lb-a', 'lb-b', 'lb-c'];
const BACKENDS = Array.from({ length: 8 }, (_, i) => ({ service: i < 6 ? 'web' : 'mptcp', address: `10.9.0.${i + 1}` }));

async function freePorts(n: number): Promise<number[]> {
  const socks = await Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<dgram.Socket>((res, rej) => {
          const s = dgram.createSocket('udp4');
          s.once('error', rej);
          s.bind(0, '127.0.0.1', () => res(s));
        }),
    ),
  );
  const ports = socks.map((s) => s.address().port);
  await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

async function startCluster(): Promise<ControlPlane[]> {
  const ports = await freePorts(IDS.length);
  const peers = IDS.map((id, i) => ({ id, address: `127.0.0.1:${ports[i]}` }));
  const cps = IDS.map((id, i) => {
    const r = validateClusterConfig({ instanceId: id, listen: peers[i].address, peers, keyEnv: 'UNUSED', heartbeatMs: 100, failureMs: 2000, queryTimeoutMs: 50 });
    if (!r.ok) throw new Error(JSON.stringify(r.issues));
    return new ControlPlane({ cluster: r.config, key: KEY, limits: { storeCapacity: 1 << 20 } });
  });
  await Promise.all(cps.map((c) => c.start()));
  await until(() => cps.every((c) => c.liveInstances().length === IDS.length), 'the cluster to converge', 10_000);
  return cps;
}

async function until(cond: () => boolean, what: string, limitMs: number): Promise<void> {
  const t0 = performance.now();
  while (!cond()) {
    if (performance.now() - t0 > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

/** Entry i of run `run`: 3 in 4 IPv4 flows, 1 in 4 MPTCP tokens. */
function entry(run: number, i: number): SyncEntry {
  if (i % 4 === 3) return { kind: 'token', key: tokenKey(((run << 24) ^ (i * 2654435761)) >>> 0), backend: BACKENDS[6 + (i & 1)], ttlMs: 300_000 };
  const key = new Uint8Array(13);
  key.set([100, 64 + run, (i >>> 16) & 0xff, (i >>> 8) & 0xff, 192, 0, 2, 80, i & 0xff, (i >>> 3) & 0xff, 1, 187, 6]);
  return { kind: 'flow', key, backend: BACKENDS[i % 6], ttlMs: 300_000 };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}
const round = (x: number, d = 1): number => Math.round(x * 10 ** d) / 10 ** d;

interface LatencySummary {
  queries: number;
  found: number;
  timeouts: number;
  p50Us: number;
  p90Us: number;
  p99Us: number;
  maxUs: number;
  meanUs: number;
}

async function serialQueries(asker: ControlPlane, keys: SyncEntry[]): Promise<LatencySummary> {
  const lat: number[] = [];
  let found = 0;
  const t0 = asker.counters.timeouts;
  for (const e of keys) {
    const s = performance.now();
    const got = await asker.query(e.kind, e.key);
    lat.push((performance.now() - s) * 1000);
    if (got !== null) found++;
  }
  lat.sort((a, b) => a - b);
  return {
    queries: keys.length,
    found,
    timeouts: asker.counters.timeouts - t0,
    p50Us: round(percentile(lat, 50)),
    p90Us: round(percentile(lat, 90)),
    p99Us: round(percentile(lat, 99)),
    maxUs: round(lat[lat.length - 1]),
    meanUs: round(lat.reduce((s, x) => s + x, 0) / lat.length),
  };
}

async function concurrentQueries(asker: ControlPlane, keys: SyncEntry[]): Promise<{ queries: number; found: number; concurrency: number; queriesPerSec: number }> {
  let next = 0;
  let found = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: QUERY_CONCURRENCY }, async () => {
      while (next < keys.length) {
        const e = keys[next++];
        if ((await asker.query(e.kind, e.key)) !== null) found++;
      }
    }),
  );
  const s = (performance.now() - t0) / 1000;
  return { queries: keys.length, found, concurrency: QUERY_CONCURRENCY, queriesPerSec: Math.round(keys.length / s) };
}

interface PublishRun {
  entries: number;
  remoteCopies: number;
  delivered: number;
  lost: number;
  datagrams: number;
  ms: number;
  entriesPerSec: number;
  copiesPerSec: number;
}

async function publishRun(run: number): Promise<PublishRun> {
  const cps = await startCluster();
  try {
    const [a, b, c] = cps;
    const es = Array.from({ length: PUBLISH_ENTRIES }, (_, i) => entry(run, i));
    const recv = (): number => b.counters.entriesReceived + c.counters.entriesReceived;
    const dg0 = a.counters.messagesOut.PUBLISH;
    const t0 = performance.now();
    const res = a.publish(es);
    // Done when every remote copy arrived, or nothing moved for 2 s (lost datagrams).
    let last = -1;
    let lastChange = performance.now();
    let tEnd = t0;
    for (;;) {
      const got = recv();
      if (got !== last) {
        last = got;
        lastChange = tEnd = performance.now();
      }
      if (got >= res.queued || performance.now() - lastChange > 2000) break;
      await new Promise((r) => setImmediate(r));
    }
    const ms = tEnd - t0;
    return {
      entries: res.accepted,
      remoteCopies: res.queued,
      delivered: last,
      lost: res.queued - last,
      datagrams: a.counters.messagesOut.PUBLISH - dg0,
      ms: round(ms),
      entriesPerSec: Math.round(res.accepted / (ms / 1000)),
      copiesPerSec: Math.round((res.queued + res.local) / (ms / 1000)),
    };
  } finally {
    await Promise.all(cps.map((cp) => cp.stop()));
  }
}

async function main(): Promise<void> {
  // ---- queries ----
  const cps = await startCluster();
  const [a, b] = cps;
  let queryResults: { found: LatencySummary; notFound: LatencySummary; concurrent: Awaited<ReturnType<typeof concurrentQueries>> };
  try {
    // Keys lb-a does not own, published by lb-b: they live at lb-b and lb-c only.
    const pool: SyncEntry[] = [];
    for (let i = 0; pool.length < QUERIES && i < QUERIES * 10; i++) {
      const e = entry(99, i);
      if (!a.owners(e.key).includes('lb-a')) pool.push(e);
    }
    b.publish(pool);
    await until(() => pool.every((e) => cps[2].lookupLocal(e.kind, e.key) !== undefined), 'owners to hold the query keys', 30_000);
    const absent: SyncEntry[] = []; // keys nobody holds, owned by lb-b and lb-c
    for (let i = 0; absent.length < QUERIES && i < QUERIES * 10; i++) {
      const e = entry(98, i);
      if (!a.owners(e.key).includes('lb-a')) absent.push(e);
    }
    await serialQueries(a, pool.slice(0, 500)); // warm-up
    const found = await serialQueries(a, pool);
    const notFound = await serialQueries(a, absent);
    const concurrent = await concurrentQueries(a, pool);
    queryResults = { found, notFound, concurrent };
  } finally {
    await Promise.all(cps.map((cp) => cp.stop()));
  }

  // ---- publish ----
  const runs: PublishRun[] = [];
  for (let r = 0; r < PUBLISH_RUNS; r++) runs.push(await publishRun(r));
  const sorted = [...runs].sort((x, y) => x.entriesPerSec - y.entriesPerSec);
  const median = sorted[Math.floor(sorted.length / 2)];

  const result = {
    suite: 'control',
    generatedAt: new Date().toISOString(),
    node: process.version,
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cpus: os.cpus().length,
    loadAverage: os.loadavg().map((x) => round(x, 2)),
    note: 'all instances in one Node process on 127.0.0.1 (one event loop); latency = query() call to resolution',
    query: queryResults,
    publish: { instances: IDS.length, runs, median },
  };
  mkdirSync(dirname(OUT), { recursive: true });
  writeFileSync(`${OUT}.tmp`, `${JSON.stringify(result, null, 2)}\n`);
  renameSync(`${OUT}.tmp`, OUT);

  const rows: [string, string][] = [
    [`query FOUND, serial (${queryResults.found.queries})`, `p50 ${queryResults.found.p50Us} us  p90 ${queryResults.found.p90Us} us  p99 ${queryResults.found.p99Us} us  max ${queryResults.found.maxUs} us  found ${queryResults.found.found}  timeouts ${queryResults.found.timeouts}`],
    [`query NOT FOUND, serial (${queryResults.notFound.queries})`, `p50 ${queryResults.notFound.p50Us} us  p90 ${queryResults.notFound.p90Us} us  p99 ${queryResults.notFound.p99Us} us  max ${queryResults.notFound.maxUs} us  timeouts ${queryResults.notFound.timeouts}`],
    [`query FOUND, ${QUERY_CONCURRENCY} at a time`, `${queryResults.concurrent.queriesPerSec} queries/s  found ${queryResults.concurrent.found}/${queryResults.concurrent.queries}`],
    ...runs.map((r, i): [string, string] => [`publish ${r.entries} entries, run ${i + 1}`, `${r.entriesPerSec} entries/s  ${r.ms} ms  ${r.datagrams} datagrams  ${r.delivered}/${r.remoteCopies} remote copies  lost ${r.lost}`]),
    ['publish median', `${median.entriesPerSec} entries/s (${median.copiesPerSec} stored copies/s)`],
  ];
  const w = Math.max(...rows.map((r) => r[0].length));
  console.log(`control plane, ${IDS.length} instances in one process, loopback (${result.cpu}, ${result.cpus} CPUs, load ${result.loadAverage.join(' ')})`);
  for (const [k, v] of rows) console.log(`  ${k.padEnd(w)}  ${v}`);
  console.log(`wrote ${OUT}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
