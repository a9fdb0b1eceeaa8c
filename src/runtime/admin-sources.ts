/**
 * What the admin API (observe/admin.ts) reads and does, answered by the parts of the control
 * process: the current generation, next hops, health, the data-plane supervisor, the cluster
 * bridge and the reloader. Reads only; every change goes through the reloader's queue.
 */
import type { ServiceConfig, SluiceConfig } from '../config/types.js';
import type { ControlPlaneStatus } from '../control/index.js';
import type { AnnounceStatus } from '../announce/announcer.js';
import type { FlowQuery, FlowsReport, InstanceAction, InstanceResult, LastReload, OperateRequest, OperateResult, ReloadResult } from '../observe/admin-api.js';
import type { AdminSources, BackendFacts } from '../observe/admin.js';
import type { Metrics } from '../observe/metrics.js';
import { formatMac } from '../packet/mac.js';
import type { BackendHealth } from './backend-health.js';
import { backendKey, effectiveBackends } from './generation.js';
import type { Generations } from './generations.js';
import type { NextHops } from './next-hops.js';
import type { OwnerBridge } from './owner-bridge.js';
import type { Reloader } from './reloader.js';
import type { DataplaneSupervisor } from './supervisor.js';
import type { VipAnnouncement } from './vip-announcement.js';

export interface ControlParts {
  configPath: string;
  metrics: Metrics;
  generations: Generations;
  nextHops: NextHops;
  health: BackendHealth;
  supervisor: DataplaneSupervisor;
  bridge: OwnerBridge;
  reloader: Reloader;
  /** Null without an "announce" section. */
  announcement: VipAnnouncement | null;
}

export class ControlAdminSources implements AdminSources {
  readonly configPath: string;
  readonly startedAt = new Date().toISOString();
  readonly metrics: Metrics;
  readonly #p: ControlParts;

  constructor(parts: ControlParts) {
    this.#p = parts;
    this.configPath = parts.configPath;
    this.metrics = parts.metrics;
  }

  config(): SluiceConfig {
    return this.#p.generations.config;
  }

  generation(): number {
    return this.#p.generations.number;
  }

  dataplane(): { engine: string; up: boolean; pid: number | null; restarts: number } {
    return this.#p.supervisor.info;
  }

  lastReload(): LastReload | null {
    return this.#p.reloader.lastReload;
  }

  cluster(): { status: ControlPlaneStatus; sync: boolean } | null {
    const cp = this.#p.bridge.controlPlane;
    return cp ? { status: cp.status(), sync: this.#p.bridge.syncing } : null;
  }

  backendFacts(s: ServiceConfig): BackendFacts[] {
    const { generations, nextHops, health } = this.#p;
    const resolved = (a: string): boolean => (nextHops.get(a)?.mac ?? null) !== null;
    return effectiveBackends(s, resolved, (a) => health.healthy(s, a), generations.overrides).map((b) => {
      const hop = nextHops.get(b.address);
      return {
        ...b,
        id: generations.backendId(s.name, b.address),
        mac: hop?.mac ? formatMac(hop.mac) : null,
        problem: hop?.problem ?? null,
        overridden: generations.overrides.has(backendKey(s.name, b.address)),
        health: health.view(s, b.address),
      };
    });
  }

  freshCounters(): Promise<Float64Array> {
    return this.#p.supervisor.freshCounters();
  }

  async flowCounts(): Promise<Map<number, number>> {
    try {
      return (await this.#p.supervisor.request({ type: 'flow-counts' })).counts;
    } catch {
      // No data plane to ask, or it is busy: the table shows 0 active flows rather than failing.
      return new Map();
    }
  }

  async flows(q: FlowQuery): Promise<FlowsReport> {
    const spec = this.#p.generations.spec;
    const backendIds = q.backend ? spec.backends.filter((b) => b.address === q.backend).map((b) => b.id) : undefined;
    const reply = await this.#p.supervisor.request({ type: 'flows', limit: Math.max(1, q.limit), vip: q.vip, client: q.client, backendIds });
    // Names from the generation current when the answer arrives (ids are stable while names exist).
    const now = this.#p.generations.spec;
    const backends = new Map(now.backends.map((b) => [b.id, b.address]));
    const services = new Map(now.services.map((s) => [s.id, s.name]));
    return {
      total: reply.total,
      rows: reply.rows.map((r) => ({ ...r, backend: backends.get(r.backendId) ?? `#${r.backendId}`, service: services.get(r.serviceId) ?? `#${r.serviceId}` })),
    };
  }

  operate(op: OperateRequest): Promise<OperateResult> {
    return this.#p.reloader.operate(op);
  }

  reload(): Promise<ReloadResult> {
    return this.#p.reloader.reload(undefined, 'admin');
  }

  async announce(): Promise<AnnounceStatus | null> {
    return this.#p.announcement ? this.#p.announcement.status() : null;
  }

  async instance(action: InstanceAction): Promise<InstanceResult | null> {
    return this.#p.announcement ? this.#p.announcement.operate(action) : null;
  }
}
