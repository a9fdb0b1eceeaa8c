/**
 * Config parse time against file size (issue 10 item 4): each case is parsed at 1x, 10x and 100x
 * its base size, and the report gives the growth ratios. Linear work gives ratios near 10 per
 * 10x step; the quadratic loader this replaced gave ~100 (100k repeated keys took over 60 s).
 * Cases: a valid config (services with backends), repeated keys, services missing every key
 * (two schema errors per backend). Parsing includes the JSON scan, the schema and the
 * semantic rules, and for invalid files building the capped issue report.
 *
 * Build: npx tsc -p tsconfig.json; run from the repository root: node dist/native-bench/config-parse.bench.js
 * Writes native-bench/results/config-parse.json (CONFIG_BENCH_OUT overrides; CONFIG_BENCH_REPEAT
 * runs per size, the fastest kept as the least disturbed by other load, default 5). Bounded: at most 3 cases x 3 sizes x REPEAT parses of
 * files up to ~6 MB.
 */
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, resolve } from 'node:path';
import { ConfigError, parseConfig } from '../src/config/load.js';

const OUT = resolve(process.env.CONFIG_BENCH_OUT ?? 'native-bench/results/config-parse.json');
const REPEAT = Math.min(9, Math.max(1, Number(process.env.CONFIG_BENCH_REPEAT ?? 5)));
const SCALES = [1, 10, 100] as const;

function validConfig(services: number): string {
  const list = Array.from({ length: services }, (_, s) => {
    const backends = Array.from({ length: 10 }, (_, b) => `{ "address": "10.${s >> 8}.${s & 255}.${b + 1}", "weight": ${1 + (b % 3)} }`);
    return `{ "name": "svc${s}", "vip": "198.${18 + (s >> 8)}.${s & 255}.10", "port": 80, "protocol": "tcp", "forwarding": "dsr-l2", "tableSize": 1009,\n  "backends": [ ${backends.join(',\n    ')} ] }`;
  });
  return `{ "interface": "eth0",\n"services": [\n${list.join(',\n')}\n] }\n`;
}

function repeatedKeys(n: number): string {
  return `{"interface":"eth0","services":[{"name":"web","vip":"198.51.100.10","port":80,"protocol":"tcp","forwarding":"dsr-l2","backends":[{"address":"10.1.0.11"}]}]${',\n"a":1'.repeat(n + 1)}}`;
}

/** `n` backends, 1000 per service, each missing its address and carrying an unknown key: 2n schema issues. */
function badBackends(n: number): string {
  const services = Array.from({ length: Math.ceil(n / 1000) }, (_, s) => {
    const count = Math.min(1000, n - s * 1000);
    return `{"name":"s${s}","vip":"198.51.100.10","port":${s + 1},"protocol":"tcp","forwarding":"dsr-l2","backends":[${Array(count).fill('{"x":1}').join(',\n')}]}`;
  });
  return `{"interface":"eth0","services":[${services.join(',\n')}]}`;
}

const cases: { name: string; base: number; unit: string; make: (n: number) => string }[] = [
  { name: 'valid config, 10 backends per service', base: 40, unit: 'services', make: validConfig },
  { name: 'repeated keys', base: 10_000, unit: 'repeats', make: repeatedKeys },
  { name: 'backends missing their address, with an unknown key', base: 1000, unit: 'backends', make: badBackends },
];

function parseMs(text: string): { ms: number; issues: number } {
  const t0 = process.hrtime.bigint();
  let issues = 0;
  try {
    parseConfig(text, 'bench.json');
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    issues = err.total;
  }
  return { ms: Number(process.hrtime.bigint() - t0) / 1e6, issues };
}

parseMs(validConfig(1)); // compiles the schema once, outside every measurement
const results = cases.map((c) => {
  const sizes = SCALES.map((scale) => {
    const n = c.base * scale;
    const text = c.make(n);
    const runs = Array.from({ length: REPEAT }, () => parseMs(text));
    const ms = Math.min(...runs.map((r) => r.ms));
    return { scale, [c.unit]: n, bytes: Buffer.byteLength(text), issues: runs[0].issues, bestMs: Number(ms.toFixed(2)), nsPerByte: Number(((ms * 1e6) / Buffer.byteLength(text)).toFixed(1)) };
  });
  const growth = { x10: Number((sizes[1].bestMs / sizes[0].bestMs).toFixed(1)), x100: Number((sizes[2].bestMs / sizes[0].bestMs).toFixed(1)) };
  return { name: c.name, sizes, growth };
});

const report = {
  suite: 'config-parse',
  generatedAt: new Date().toISOString(),
  node: process.version,
  cpu: os.cpus()[0]?.model ?? 'unknown',
  cpus: os.cpus().length,
  loadAverage1m: Number(os.loadavg()[0].toFixed(2)),
  repeat: REPEAT,
  note: 'growth = best-of-repeat parse time at 10x (x10) and 100x (x100) the base size over the time at 1x; linear is ~10 and ~100',
  results,
};
mkdirSync(dirname(OUT), { recursive: true });
writeFileSync(`${OUT}.tmp`, `${JSON.stringify(report, null, 2)}\n`);
renameSync(`${OUT}.tmp`, OUT);
for (const r of results) {
  console.log(`${r.name}: ${r.sizes.map((s) => `${s.scale}x ${s.bytes} B ${s.bestMs} ms`).join(', ')}; growth 10x -> ${r.growth.x10}, 100x -> ${r.growth.x100}`);
}
console.log(`wrote ${OUT}`);
