/**
 * What the admin API (observe/admin.ts) reads and does, answered by the parts of the control
 * process: the current generation, next hops, health, the data-plane supervisor, the cluster
 * bridge and the reloader. Reads only; every change goes through the reloader's queue.
 */
import { workerFigures, type WorkerFigures } from '../dataplane/contract/counters.js';
import type { ServiceConfig, SluiceConfig } from '../config/types.js';
import type { ControlPlaneStatus } from '../control/index.js';
import type { AnnounceStatus } from '../announce/announcer.js';
import { resolve } from 'node:path';
import type { ExplainCluster, ExplainFlowReport, ExplainReport, FlowQuery, FlowsReport, InstanceAction, InstanceResult, LastReload, OperateRequest, OperateResult, ReloadResult, RestartResult } from '../observe/admin-api.js';
import type { AdminSources, BackendFacts, FlowStates } from '../observe/admin.js';
import type { ExplainDecision, ExplainQuery } from '../dataplane/contract/messages.js';
import { handoverEnabled } from '../dataplane/contract/handover.js';
import type { Metrics } from '../observe/metrics.js';
import { formatMac } from '../packet/mac.js';
import { tokenKey } from '../packet/token-key.js';
import type { BackendIdentity } from '../control/index.js';
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
  /** What releases this process (`sluice restart`), or null when nobody can (not run from the CLI). */
  restart: () => (() => void) | null;
}

export class ControlAdminSources implements AdminSources {
  readonly configPath: string;
  readonly startedAt = new Date().toISOString();
  readonly metrics: Metrics;
  readonly #p: ControlParts;

  constructor(parts: ControlParts) {
    this.#p = parts;
    // Absolute, as this process reads it: `sluice reload --config` compares against it.
    this.configPath = resolve(parts.configPath);
    this.metrics = parts.metrics;
  }

  config(): SluiceConfig {
    return this.#p.generations.config;
  }

  generation(): number {
    return this.#p.generations.number;
  }

  dataplane(): { engine: string; up: boolean; pid: number | null; restarts: number; origin?: string; keptFlows?: number; workers?: WorkerFigures[] } {
    const workers = workerFigures(this.metrics.workers);
    return workers.length > 0 ? { ...this.#p.supervisor.info, workers } : this.#p.supervisor.info;
  }

  restart(): RestartResult | null {
    const request = this.#p.restart();
    if (!request) return null;
    // Answer first: the release starts after this turn.
    setTimeout(request, 50);
    return { pid: process.pid, dataplanePid: this.#p.supervisor.info.pid, handover: handoverEnabled() };
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

  async flowStates(): Promise<FlowStates | null> {
    try {
      const r = await this.#p.supervisor.request({ type: 'flow-counts' });
      return { counts: r.counts, closing: r.closing ?? new Map<number, number>() };
    } catch {
      return null;
    }
  }

  async explain(q: ExplainQuery): Promise<ExplainReport> {
    const reply = await this.#p.supervisor.request({ type: 'explain', query: q });
    if (reply.type === 'explain-failed') throw new RangeError(reply.message);
    const spec = this.#p.generations.spec;
    const backends = new Map(spec.backends.map((b) => [b.id, b.address]));
    const services = new Map(spec.services.map((s) => [s.id, s.name]));
    const name = (id: number | null): string | null => (id === null || id < 0 ? null : (backends.get(id) ?? `#${id}`));
    const flows: ExplainFlowReport[] = [];
    for (const d of reply.decisions) {
      const { cluster, answer } = await this.#explainCluster(d);
      const tableBackend = name(d.tableBackendId);
      flows.push({
        ...d,
        service: d.serviceId === null ? null : (services.get(d.serviceId) ?? `#${d.serviceId}`),
        tableBackend,
        affinityBackend: name(d.affinityBackendId),
        newFlowBackend: name(d.newFlowBackendId),
        trackedBackend: name(d.tracked?.backendId ?? null),
        tokenBackend: name(d.tokenBackendId),
        nextBackend: d.next.by === 'owner-query' ? this.#ownerVerdict(d, cluster, answer, tableBackend) : name(d.next.backendId),
        cluster,
      });
    }
    return { query: q, flows };
  }

  /** The key the data plane asks the cluster about for this decision (a join SYN: its token), else the flow key. */
  #ownerKeyOf(d: ExplainDecision): { kind: 'flow' | 'token'; key: Uint8Array } | null {
    if (d.next.asks === 'token' && d.mptcpToken !== null) return { kind: 'token', key: tokenKey(d.mptcpToken) };
    return d.ownerKey === null ? null : { kind: 'flow', key: Uint8Array.from(Buffer.from(d.ownerKey, 'hex')) };
  }

  /**
   * The key's owner and replica over the live instances, and what they hold for it (a read; the
   * answer the data plane's own query would get, within the cluster's query timeout).
   */
  async #explainCluster(d: ExplainDecision): Promise<{ cluster: ExplainCluster | null; answer: BackendIdentity | null }> {
    const cp = this.#p.bridge.controlPlane;
    const k = this.#ownerKeyOf(d);
    if (!cp || k === null) return { cluster: null, answer: null };
    const [owner = null, replica = null] = cp.owners(k.key);
    const self = cp.instanceId;
    const here = cp.lookupLocal(k.kind, k.key);
    const heldHere = here ? `${here.backend.service}/${here.backend.address}` : null;
    // As the data plane's query (ControlPlane#query): this instance's own entry if it is owner or
    // replica and holds one; else the other owners are asked (a read).
    const mine = here !== undefined && (owner === self || replica === self);
    const asked = !mine && [owner, replica].some((o) => o !== null && o !== self);
    const who = asked ? await cp.query(k.kind, k.key) : null;
    const cluster: ExplainCluster = { kind: k.kind, owner, replica, self, heldHere, heldByOwners: who ? `${who.service}/${who.address}` : null, asked };
    return { cluster, answer: mine ? here.backend : who };
  }

  /**
   * Where a packet held for its owner's answer goes, as OwnerHold#settle decides: the answered
   * backend if it is one of the flow's service, else (a miss) the Maglev table's pick, except a
   * join SYN of a service that drops joins with an unknown token. Null without a cluster.
   */
  #ownerVerdict(d: ExplainDecision, cluster: ExplainCluster | null, answer: BackendIdentity | null, tableBackend: string | null): string | null {
    if (cluster === null) return null;
    const { generations } = this.#p;
    if (answer !== null) {
      const id = generations.backendId(answer.service, answer.address);
      if (id >= 0 && generations.spec.backends.some((b) => b.id === id && b.serviceId === d.serviceId)) return answer.address;
    }
    if (cluster.kind === 'token') {
      const svc = generations.spec.services.find((s) => s.id === d.serviceId);
      const hashes = generations.config.services.find((c) => c.name === svc?.name)?.mptcpUnknownJoin === 'hash';
      if (!hashes) return null;
    }
    return tableBackend;
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
