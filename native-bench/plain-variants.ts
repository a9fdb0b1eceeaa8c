/**
 * The forwarders compared by the plain-path benches (plain-path.bench.ts: frames per CPU second;
 * plain-instructions.bench.ts: instructions per frame), and what they are fed: each variant's
 * forwarder is compiled from its own sources (a main-line commit via `git archive`, or this tree)
 * with the same tsc flags, so a comparison is of the code; every variant gets the same service
 * (one dsr-l2 UDP service, 3 backends) and the same prebuilt plain 60-byte UDP frames (the pps
 * harness's: 1024 flows to 198.51.100.10:53).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { buildFrame } from '../src/packet/build.js';

export const PLAIN_FLOWS = 1024;
const TABLE = 65537;
const VIP = [198, 51, 100, 10];
const REPO = resolve('.');

/** The older main-line commits compared by default, oldest first (see native-bench/README.md). */
export const DEFAULT_BASES = 'ea0939f,b8b6f8e,1c48dc9';

/** The part of every variant's forwarder API the benches use. */
export interface AnyForwarder {
  apply(spec: unknown): void;
  forward(rx: Buffer, len: number, tx: Buffer, nowMs: number): number;
}
export type ForwarderCtor = new (opts: PlainForwarderOptions) => AnyForwarder;
export interface PlainForwarderOptions {
  flowCapacity: number;
  tcpIdleMs: number;
  tcpClosingMs: number;
  udpIdleMs: number;
  tokenCapacity: number;
}

/** Constructor options every variant understands (newer options keep their defaults). */
export const PLAIN_FORWARDER_OPTIONS: PlainForwarderOptions = { flowCapacity: 65536, tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 300_000, tokenCapacity: 1024 };

/** One variant: its name, the commit it was built from, and its compiled forwarder.js. */
export interface PlainVariant {
  name: string;
  commit: string;
  forwarderJs: string;
}

/** Short commit names from a comma list, oldest first; anything that is not a hex name is ignored. */
export function parseBases(list: string | undefined): string[] {
  return (list ?? DEFAULT_BASES).split(',').filter((b) => /^[0-9a-f]{6,40}$/i.test(b));
}

/** Compile `srcRoot`/dataplane/forwarder.ts and what it imports into `outDir` with fixed flags; returns the path of forwarder.js. */
function compileForwarder(srcRoot: string, outDir: string): string {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'package.json'), '{"type":"module"}\n');
  const tsc = join(REPO, 'node_modules', '.bin', 'tsc');
  const args = ['--outDir', outDir, '--rootDir', srcRoot, '--module', 'ES2022', '--moduleResolution', 'Bundler', '--target', 'ES2022', '--skipLibCheck', '--strict', 'false'];
  args.push('--typeRoots', join(REPO, 'node_modules', '@types'), '--types', 'node', '--noEmitOnError', 'false', join(srcRoot, 'dataplane', 'forwarder.ts'));
  try {
    execFileSync(tsc, args, { stdio: 'pipe' });
  } catch {
    // Type errors of an old tree against today's @types still emit JavaScript; only a missing file is fatal.
  }
  const file = join(outDir, 'dataplane', 'forwarder.js');
  if (!existsSync(file)) throw new Error(`plain-path bench: tsc produced no ${file}`);
  return file;
}

/** Compile each base commit's forwarder and this tree's (last, named 'this tree') under `tmp`. */
export function compileVariants(bases: string[], tmp: string): PlainVariant[] {
  const out: PlainVariant[] = [];
  for (const base of bases) {
    const dir = join(tmp, base);
    mkdirSync(dir);
    const tar = execFileSync('git', ['archive', '--format=tar', base, 'src'], { cwd: REPO, maxBuffer: 256 << 20 });
    execFileSync('tar', ['-x', '-C', dir], { input: tar });
    const commit = execFileSync('git', ['rev-parse', base], { cwd: REPO }).toString().trim();
    out.push({ name: base, commit, forwarderJs: compileForwarder(join(dir, 'src'), join(dir, 'out')) });
  }
  const head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: REPO }).toString().trim();
  out.push({ name: 'this tree', commit: `${head} (working tree)`, forwarderJs: compileForwarder(join(REPO, 'src'), join(tmp, 'tree')) });
  return out;
}

/** A forwarder of `forwarderJs`, configured with the plain service. */
export async function loadForwarder(forwarderJs: string): Promise<AnyForwarder> {
  const mod = (await import(pathToFileURL(forwarderJs).href)) as { Forwarder: ForwarderCtor };
  const fwd = new mod.Forwarder(PLAIN_FORWARDER_OPTIONS);
  fwd.apply(plainSpec());
  return fwd;
}

/** One dsr-l2 UDP service on the VIP's port 53, three backends, an evenly split table. */
function plainSpec(): unknown {
  const mac = (n: number): Uint8Array => Uint8Array.from([2, 0, 0, 0, 1, n]);
  const backends = [1, 2, 3].map((id) => ({ id, serviceId: 0, address: `10.98.0.${id + 1}`, addr: Uint8Array.from([10, 98, 0, id + 1]), nextHopMac: mac(id), weight: 1, serving: true, down: false }));
  const table = new Int32Array(TABLE);
  for (let i = 0; i < TABLE; i++) table[i] = 1 + (i % 3);
  return {
    generation: 1,
    hashSeed: 0x5eed,
    services: [{ id: 0, name: 'dns', vip: Uint8Array.from(VIP), protocol: 17, port: 53, forwarding: 'dsr-l2', table, mptcp: false, mptcpUnknownJoin: 'hash', stableHash: 1, affinity: null }],
    backends,
    egressMac: Uint8Array.from([2, 0, 0, 0, 0, 2]),
    egressMtu: 1500,
    encapSource4: null,
    encapSource6: null,
    filter: '',
  };
}

/** PLAIN_FLOWS plain 60-byte UDP frames (no options, not fragmented, checksum complete), one per source port. */
export function plainFrames(): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < PLAIN_FLOWS; i++) {
    out.push(buildFrame({ eth: { src: '02:00:00:00:00:01', dst: '02:00:00:00:00:02' }, ipv4: { src: '10.98.1.1', dst: VIP.join('.'), ttl: 64 }, udp: { sport: 20000 + i, dport: 53 }, payload: new Uint8Array(18) }));
  }
  return out;
}
