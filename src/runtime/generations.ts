/**
 * The current table generation of this instance and how the next one comes about: the config it
 * was built from, its DataplaneSpec, the stable service and backend ids, the operator's runtime
 * overrides. apply() builds the next generation (generation.ts buildSpec), sends it to the data
 * plane as a `generation` request and waits for `applied`; on any failure the running generation
 * stays. Only the reloader calls apply(), one at a time.
 */
import { availableParallelism } from 'node:os';
import type { SluiceConfig } from '../config/types.js';
import { DEFAULT_TOKEN_CAPACITY, MAX_BACKENDS, MAX_SERVICES } from '../dataplane/contract/limits.js';
import type { DataplaneInit, DataplaneSpec } from '../dataplane/contract/spec.js';
import type { InterfaceFacts } from '../dataplane/host.js';
import type { Metrics } from '../observe/metrics.js';
import type { BackendHealth } from './backend-health.js';
import type { DataplaneIds } from '../dataplane/contract/handover.js';
import { IdAllocator, backendKey, buildSpec, type BackendOverride } from './generation.js';
import type { NextHops } from './next-hops.js';
import type { Startable } from './startable.js';
import type { DataplaneSupervisor } from './supervisor.js';

export interface GenerationsOptions {
  metrics: Metrics;
  /** The config the first generation is built from (already checked against the host). */
  config: SluiceConfig;
  ingress: InterfaceFacts;
  egress: InterfaceFacts;
  nextHops: NextHops;
  health: BackendHealth;
  supervisor: DataplaneSupervisor;
}

export class Generations implements Startable {
  readonly name = 'table generations';
  readonly #opts: GenerationsOptions;
  readonly #serviceIds = new IdAllocator(MAX_SERVICES);
  readonly #backendIds = new IdAllocator(MAX_BACKENDS);
  /** Operator drain/weight by backendKey; they last until the backend leaves the config or a restart. */
  readonly overrides = new Map<string, BackendOverride>();
  readonly #listeners: (() => void)[] = [];
  #config: SluiceConfig;
  #number = 0;
  #spec: DataplaneSpec | null = null;

  constructor(opts: GenerationsOptions) {
    this.#opts = opts;
    this.#config = opts.config;
  }

  /** Builds generation 1 (the data plane starts with it). */
  start(): void {
    this.#spec = this.#build(this.#config, 1);
    this.#number = 1;
    this.#opts.metrics.configGeneration.set(1);
  }

  stop(): void {
    // Nothing runs between calls.
  }

  /**
   * A running data plane was found (supervisor.ts): number services and backends as its generation
   * does, since its flows and MPTCP tokens record those ids, and continue after its generation.
   */
  adopt(ids: DataplaneIds): void {
    this.#serviceIds.reset(ids.services.map((s) => [s.name, s.id] as const));
    this.#backendIds.reset(ids.backends.map((b) => [backendKey(b.service, b.address), b.id] as const));
    this.#number = Math.max(this.#number, ids.generation + 1);
    this.#spec = this.#build(this.#config, this.#number);
    this.#opts.metrics.configGeneration.set(this.#number);
  }

  get config(): SluiceConfig {
    return this.#config;
  }

  get number(): number {
    return this.#number;
  }

  get spec(): DataplaneSpec {
    if (!this.#spec) throw new Error('no generation built yet');
    return this.#spec;
  }

  /** Called after each generation the data plane applied (not the first: start() has no data plane yet). */
  onApplied(fn: () => void): void {
    this.#listeners.push(fn);
  }

  /** What a (re)started data-plane process is initialised with: the current generation. */
  dataplaneInit(): DataplaneInit {
    const cfg = this.#config;
    return {
      engine: cfg.capture.engine,
      interface: cfg.interface,
      egressInterface: cfg.egressInterface,
      bufferBytes: cfg.capture.bufferMiB * 1024 * 1024,
      batchSize: cfg.capture.batchSize,
      flowCapacity: cfg.flowTable.capacity,
      tcpIdleMs: cfg.flowTable.tcpIdleTimeoutS * 1000,
      tcpClosingMs: cfg.flowTable.tcpClosingTimeoutS * 1000,
      udpIdleMs: cfg.flowTable.udpIdleTimeoutS * 1000,
      halfOpenMs: cfg.flowTable.halfOpenTimeoutS * 1000,
      floodProtection: cfg.flowTable.floodProtection,
      tokenCapacity: DEFAULT_TOKEN_CAPACITY,
      workers: resolveWorkers(cfg.dataplane?.workers ?? 1),
      spec: this.spec,
    };
  }

  /** Local id of a backend of a service, or -1 if it has none. */
  backendId(service: string, address: string): number {
    return this.#backendIds.idOf(backendKey(service, address)) ?? -1;
  }

  serviceName(serviceId: number): string {
    return this.spec.services.find((s) => s.id === serviceId)?.name ?? '';
  }

  /** Forget the overrides of backends that `config` no longer has. */
  dropOverridesNotIn(config: SluiceConfig): void {
    const present = new Set(config.services.flatMap((sv) => sv.backends.map((b) => backendKey(sv.name, b.address))));
    for (const k of [...this.overrides.keys()]) if (!present.has(k)) this.overrides.delete(k);
  }

  /**
   * Make `config` (with the current overrides, health and next hops) the next generation, and
   * wait until the data plane runs it. Throws, with the running generation unchanged, if the
   * build fails, the data plane refuses it, does not answer, or is not running.
   */
  async apply(config: SluiceConfig): Promise<void> {
    const generation = this.#number + 1;
    const spec = this.#build(config, generation);
    try {
      const reply = await this.#opts.supervisor.request({ type: 'generation', spec });
      if (reply.type === 'apply-failed') throw new Error(reply.message);
    } catch (e) {
      // The ids and metric labels follow the running generation again.
      this.#build(this.#config, this.#number);
      throw e;
    }
    this.#config = config;
    this.#spec = spec;
    this.#number = generation;
    this.#opts.metrics.configGeneration.set(generation);
    for (const fn of this.#listeners) fn();
  }

  #build(config: SluiceConfig, generation: number): DataplaneSpec {
    const { ingress, egress, nextHops, health, metrics } = this.#opts;
    const spec = buildSpec({
      config,
      generation,
      serviceIds: this.#serviceIds,
      backendIds: this.#backendIds,
      nextHops: nextHops.map,
      ingress,
      egress,
      healthy: health.healthy,
      overrides: this.overrides,
      localAddresses: ingress.allAddresses,
    });
    const services = new Map<number, string>();
    const backends = new Map<number, { service: string; address: string }>();
    for (const s of spec.services) services.set(s.id, s.name);
    for (const b of spec.backends) backends.set(b.id, { service: services.get(b.serviceId) ?? '?', address: b.address });
    metrics.setLabels({ services, backends });
    return spec;
  }
}

/** dataplane.workers as a count: 'auto' is one worker per CPU this process may run on (at most 64). */
export function resolveWorkers(workers: number | 'auto'): number {
  return workers === 'auto' ? Math.max(1, Math.min(64, availableParallelism())) : workers;
}
