/**
 * What the status page shows, as data: GET /status.json on the metrics listener answers it and
 * GET / renders it (status-page.ts). Rates are the difference of two counter snapshots divided
 * by the time between them; RateBase keeps the older snapshot so every viewer sees rates over
 * at least MIN_RATE_INTERVAL_MS, however often the page is loaded.
 */
import type { AnnounceStatus } from '../announce/announcer.js';
import type { Forwarding, Protocol, ServiceConfig } from '../config/types.js';
import { DROPS_BASE, ENTITY, G, backendCounter, type EntityCounter } from '../dataplane/contract/counters.js';
import { DROP_REASONS } from '../packet/drop-reasons.js';
import { VERSION } from '../version.js';
import type { BackendStatus, LastReload } from './admin-api.js';
import type { AdminSources } from './admin.js';

export interface Rates {
  packetsPerSecond: number;
  bitsPerSecond: number;
  newFlowsPerSecond: number;
}

/** A backend as /backends reports it (less its service and MAC), with its rates. */
export interface StatusBackendView extends Omit<BackendStatus, 'service' | 'mac' | 'closingFlows'> {
  /** null until a second snapshot is at hand. */
  rates: Rates | null;
}

export interface StatusServiceView {
  name: string;
  vip: string;
  port: number | 'all';
  protocol: string;
  forwarding: string;
  backends: StatusBackendView[];
}

export interface StatusPeerView {
  id: string;
  address: string;
  up: boolean;
  generation: number | null;
  generationMismatch: boolean;
  lastHeartbeatAgeMs: number | null;
}

export interface StatusView {
  version: string;
  generatedAt: string;
  startedAt: string;
  config: string;
  generation: number;
  dataplane: { engine: string; up: boolean; pid: number | null; restarts: number; generation: number };
  lastReload: LastReload | null;
  flows: { active: number; capacity: number };
  rates: Rates | null;
  /** Seconds the rates are measured over; null with no rates. */
  rateIntervalSeconds: number | null;
  captureDropped: number;
  /** Every drop reason with a non-zero count. */
  drops: Record<string, number>;
  services: StatusServiceView[];
  cluster: { instanceId: string; generation: number; peers: StatusPeerView[] } | null;
  announce: AnnounceStatus | null;
}

/** Shortest interval rates are computed over: two loads a moment apart reuse the last rates. */
export const MIN_RATE_INTERVAL_MS = 1000;

export interface Snapshot {
  at: number;
  counters: Float64Array;
}

/** The older of the two snapshots rates are computed from, and the rates it last gave. */
export class RateBase {
  #base: Snapshot | null = null;
  #previous: Snapshot | null = null;

  /** The pair (older, newer) to compute rates from, after recording `counters` taken at `at`. */
  advance(counters: Float64Array, at: number): { older: Snapshot; newer: Snapshot } | null {
    const now: Snapshot = { at, counters: Float64Array.from(counters) };
    if (this.#base === null) {
      this.#base = now;
      return null;
    }
    if (at - this.#base.at >= MIN_RATE_INTERVAL_MS) {
      this.#previous = this.#base;
      this.#base = now;
      return { older: this.#previous, newer: now };
    }
    return this.#previous ? { older: this.#previous, newer: now } : null;
  }
}

const counterOf = (c: Float64Array, i: number): number => (i < c.length ? c[i] : 0);

function ratesBetween(older: Snapshot, newer: Snapshot, packets: number, bytes: number, flows: number): Rates {
  const seconds = (newer.at - older.at) / 1000;
  // A data-plane restart zeroes its counters: a negative difference is shown as 0, not as a dip.
  const per = (i: number): number => Math.max(0, counterOf(newer.counters, i) - counterOf(older.counters, i)) / seconds;
  return { packetsPerSecond: per(packets), bitsPerSecond: per(bytes) * 8, newFlowsPerSecond: per(flows) };
}

/** Every drop reason whose counter is not zero, by name (packet/drop-reasons.ts): /status and the status page. */
export function nonZeroDrops(counters: Float64Array): Record<string, number> {
  const drops: Record<string, number> = {};
  for (let r = 1; r < DROP_REASONS.length; r++) {
    const n = counterOf(counters, DROPS_BASE + r);
    if (n > 0) drops[DROP_REASONS[r]] = n;
  }
  return drops;
}

/** What names a service in /status and on the status page (port 0 is "all"). */
export function serviceHead(s: ServiceConfig): { name: string; vip: string; port: number | 'all'; protocol: Protocol; forwarding: Forwarding } {
  return { name: s.name, vip: s.vip, port: s.port === 0 ? 'all' : s.port, protocol: s.protocol, forwarding: s.forwarding };
}

/** The status view from the sources, a counter snapshot taken now, the flow counts and the rate base. */
export function statusView(
  src: AdminSources,
  counters: Float64Array,
  flowCounts: ReadonlyMap<number, number>,
  announce: AnnounceStatus | null,
  pair: { older: Snapshot; newer: Snapshot } | null,
  now: Date,
): StatusView {
  const at = (i: number): number => counterOf(counters, i);
  const drops = nonZeroDrops(counters);
  const cluster = src.cluster();
  const config = src.config();
  return {
    version: VERSION,
    generatedAt: now.toISOString(),
    startedAt: src.startedAt,
    config: src.configPath,
    generation: src.generation(),
    dataplane: { ...src.dataplane(), generation: at(G.generation) },
    lastReload: src.lastReload(),
    flows: { active: at(G.flowsActive), capacity: at(G.flowCapacity) },
    rates: pair ? ratesBetween(pair.older, pair.newer, G.rxFrames, G.rxBytes, G.flowsCreated) : null,
    rateIntervalSeconds: pair ? (pair.newer.at - pair.older.at) / 1000 : null,
    captureDropped: at(G.captureDropped),
    drops,
    services: config.services.map((s) => ({
      ...serviceHead(s),
      backends: src.backendFacts(s).map((b) => {
        const has = b.id >= 0;
        const i = (which: EntityCounter): number => (has ? backendCounter(b.id, which) : -1);
        return {
          address: b.address,
          weight: b.weight,
          state: b.state,
          role: b.role,
          status: b.status,
          overridden: b.overridden,
          health: b.health,
          activeFlows: has ? (flowCounts.get(b.id) ?? 0) : 0,
          packets: has ? at(i(ENTITY.packets)) : 0,
          bytes: has ? at(i(ENTITY.bytes)) : 0,
          flowsCreated: has ? at(i(ENTITY.flowsCreated)) : 0,
          rates: pair && has ? ratesBetween(pair.older, pair.newer, i(ENTITY.packets), i(ENTITY.bytes), i(ENTITY.flowsCreated)) : null,
          problem: b.problem,
        };
      }),
    })),
    cluster: cluster
      ? {
          instanceId: cluster.status.instanceId,
          generation: cluster.status.generation,
          peers: cluster.status.peers.map((p) => ({
            id: p.id,
            address: p.address,
            up: p.up,
            generation: p.generation,
            generationMismatch: p.generationMismatch,
            lastHeartbeatAgeMs: p.lastHeartbeatAgeMs,
          })),
        }
      : null,
    announce,
  };
}
