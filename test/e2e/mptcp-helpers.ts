/**
 * What the MPTCP e2e tests share: scripts/mptcp-peer.py's servers and client, what they
 * write, and the checks of one connection (bytes verified, 2 subflows, both on the backend
 * that served it).
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { VIP4, type Lab } from '../../scripts/lab/topology.js';
import { REPO, sleep } from './sluice-harness.js';

export const PEER = join(REPO, 'scripts', 'mptcp-peer.py');
export const PORT = 8080;
export const MIB = 1 << 20;
export const PATH1 = '10.99.1.2';
export const PATH2 = '10.99.9.2';

// ---- what mptcp-peer.py writes ---------------------------------------------------------------
export type Addr = [string, number];
export interface SubflowAddrs {
  local: Addr | null;
  remote: Addr | null;
}
export interface PeerInfo {
  subflows?: number;
  fallback?: boolean;
  token?: string;
  error?: string;
}
export interface ServerView {
  name: string;
  info: PeerInfo | null;
  subflowPeers: SubflowAddrs[] | null;
}
export interface ClientConn {
  index: number;
  seed: number;
  connected?: boolean;
  bytesOk?: boolean;
  received?: number;
  backend?: string | null;
  serverToken?: string;
  localPort?: number;
  subflows?: number;
  info?: PeerInfo | null;
  subflowAddrs?: SubflowAddrs[] | null;
  server?: ServerView | null;
  error?: string | null;
}
export interface ClientReport {
  connections: number;
  bytes: number;
  completed: number;
  bytesOk: number;
  twoSubflows: number;
  subflows: Record<string, number>;
  backends: Record<string, number>;
  errors: Record<string, number>;
  timedOut: boolean;
  perConnection: ClientConn[];
}
export interface ServerRecord {
  name: string;
  peer: string;
  port: number;
  sent: number;
  mptcp?: boolean;
  token?: string | null;
  request?: { bytes: number; seed: number };
  atQuery?: { info: PeerInfo | null; subflowPeers: SubflowAddrs[] | null };
  maxSubflows?: number;
  error?: string;
}

export interface MptcpCounters {
  learned: number;
  steered: number;
  unknown: number;
  droppedUnknown: number;
  collisions: number;
}

export const same = (a: Addr | null | undefined, host: string, port?: number): boolean => !!a && a[0] === host && (port === undefined || a[1] === port);

/**
 * Every way one connection can fall short of "bytes verified, 2 subflows, both on the backend
 * that served it"; [] when it is whole. Uses the client's report and the serving backend's own
 * record (looked up by the connection's unique seed).
 */
export function connectionProblems(c: ClientConn, servers: Map<number, ServerRecord[]>, bytes: number): string[] {
  const p: string[] = [];
  const id = `#${c.index} (port ${c.localPort ?? '?'})`;
  if (c.error) p.push(`${id}: error ${c.error}`);
  if (!c.bytesOk) p.push(`${id}: ${c.received ?? 0} of ${bytes} bytes verified`);
  if ((c.subflows ?? 0) !== 2) p.push(`${id}: client sees ${c.subflows ?? 0} subflow(s)`);
  const locals = (c.subflowAddrs ?? []).map((s) => s.local?.[0]).sort();
  if (locals.join(',') !== [PATH1, PATH2].join(',')) p.push(`${id}: client subflows from ${locals.join(',') || 'nowhere'}`);
  const join2 = (c.subflowAddrs ?? []).find((s) => s.local?.[0] === PATH2);
  const sv = c.server;
  if (!sv) {
    p.push(`${id}: no answer from the server`);
  } else {
    if (sv.name !== c.backend) p.push(`${id}: served by ${c.backend ?? '?'} but INFO answered by ${sv.name}`);
    if (sv.info?.subflows !== 2) p.push(`${id}: ${sv.name} holds ${sv.info?.subflows ?? 0} subflow(s)`);
    const peers = sv.subflowPeers ?? [];
    if (!peers.some((s) => same(s.remote, PATH1, c.localPort))) p.push(`${id}: ${sv.name} has no subflow from ${PATH1}:${c.localPort ?? '?'}`);
    if (!join2 || !peers.some((s) => same(s.remote, PATH2, join2.local?.[1]))) p.push(`${id}: ${sv.name} has no subflow from the client's ${PATH2} subflow`);
  }
  const recs = servers.get(c.seed) ?? [];
  if (recs.length !== 1) p.push(`${id}: ${recs.length} server records`);
  const r = recs[0];
  if (r) {
    if (r.name !== c.backend) p.push(`${id}: recorded by ${r.name}, header said ${c.backend ?? '?'}`);
    if (r.error) p.push(`${id}: server error ${r.error}`);
    if (r.sent !== bytes) p.push(`${id}: server sent ${r.sent}`);
    if (r.atQuery?.info?.subflows !== 2) p.push(`${id}: server record has ${r.atQuery?.info?.subflows ?? 0} subflow(s)`);
    if (r.token !== c.serverToken) p.push(`${id}: token ${r.token ?? '?'} vs header ${c.serverToken ?? '?'}`);
  }
  return p;
}

/** Start mptcp-peer.py servers on every backend of `lab`, each writing its records to `dir`; resolves once all listen. */
export async function startPeerServers(lab: Lab, dir: string): Promise<void> {
  await Promise.all(
    lab.backends().map(async (b) => {
      const log = `mptcp-${b.name}.log`;
      lab.spawn(b.name, ['python3', '-u', PEER, 'server', '--port', String(PORT), '--name', b.name, '--report', join(dir, `server-${b.name}.jsonl`)], { logName: log });
      for (let i = 0; i < 100; i++) {
        if (existsSync(join(dir, log)) && readFileSync(join(dir, log), 'utf8').includes('listening')) return;
        await sleep(50);
      }
      throw new Error(`mptcp-peer server in ${b.name} did not start: ${readFileSync(join(dir, log), 'utf8')}`);
    }),
  );
}

/** Server records by seed, once every seed of `seeds` has one (a server writes after its client closed; bounded wait). */
export async function serverRecordsOf(lab: Lab, dir: string, seeds: number[]): Promise<Map<number, ServerRecord[]>> {
  let by = new Map<number, ServerRecord[]>();
  for (let attempt = 0; attempt < 50; attempt++) {
    by = new Map();
    for (const b of lab.backends()) {
      const file = join(dir, `server-${b.name}.jsonl`);
      if (!existsSync(file)) continue;
      for (const line of readFileSync(file, 'utf8').split('\n')) {
        if (!line.trim()) continue;
        const r = JSON.parse(line) as ServerRecord;
        const seed = r.request?.seed;
        if (seed === undefined) continue;
        by.set(seed, [...(by.get(seed) ?? []), r]);
      }
    }
    if (seeds.every((s) => by.has(s))) return by;
    await sleep(100);
  }
  return by;
}

/** A run of mptcp-peer.py's client. */
export interface PeerClientOptions {
  connections: number;
  bytes: number;
  concurrency: number;
  seed: number;
  holdMs: number;
  plain?: boolean;
  extra?: string[];
}

/** The command line of mptcp-peer.py's client to the VIP, its report written to `<dir>/<name>.json`. */
export const peerClientArgs = (dir: string, name: string, o: PeerClientOptions): string[] => [
  'python3',
  PEER,
  'client',
  '--target',
  `${VIP4}:${PORT}`,
  '--connections',
  String(o.connections),
  '--bytes',
  String(o.bytes),
  '--concurrency',
  String(o.concurrency),
  '--seed',
  String(o.seed),
  '--hold-ms',
  String(o.holdMs),
  '--timeout',
  '75',
  '--report',
  join(dir, `${name}.json`),
  ...(o.plain ? ['--plain'] : []),
  ...(o.extra ?? []),
];
