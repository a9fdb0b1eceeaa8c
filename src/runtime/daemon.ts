/**
 * The control process of one Sluice instance: loads and watches the config, checks the host,
 * resolves next hops, builds table generations, supervises the data-plane process, and serves
 * /metrics and the admin API. It never touches packets, so none of this waits on them.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Server } from 'node:http';
import { loadConfigFile, readConfigFile, ConfigError, formatIssues } from '../config/load.js';
import { diffConfigs, summarizeDiff } from '../config/diff.js';
import { ConfigWatcher } from '../config/watch.js';
import type { SluiceConfig } from '../config/types.js';
import { interfaceFacts, resolveNextHop, safetyProblems, type InterfaceFacts, type NextHop } from '../dataplane/host.js';
import { formatMac as macToText } from '../packet/mac.js';
import { DEFAULT_HOLD_PACKETS, DEFAULT_TOKEN_CAPACITY, MAX_BACKENDS, MAX_SERVICES } from '../dataplane/contract/limits.js';
import { DROPS_BASE, ENTITY, G, backendCounter } from '../dataplane/contract/counters.js';
import { DROP_REASONS } from '../packet/drop-reasons.js';
import type { DataplaneInit, DataplaneSpec } from '../dataplane/contract/spec.js';
import type { FlowRow, FromDataplane, ToDataplane } from '../dataplane/contract/messages.js';
import { IdAllocator, backendKey, buildSpec, effectiveBackends, type BackendOverride, type EffectiveBackend } from './generation.js';
import { HealthManager } from '../health/manager.js';
import { healthTarget, targetKey, type HealthTarget } from '../health/types.js';
import { sharedIcmpEcho } from '../health/icmp.js';
import type { ServiceConfig } from '../config/types.js';
import { ControlPlane, backendSetHash, loadClusterKey, type SyncEntry } from '../control/index.js';
import { Metrics } from '../observe/metrics.js';
import { jsonServer, listenTcp, listenUnix, sendJson } from '../observe/http.js';
import type { Logger } from '../observe/log.js';
import { VERSION } from '../version.js';

const WORKER_PATH = fileURLToPath(new URL('../dataplane/worker.js', import.meta.url));
const START_TIMEOUT_MS = 15_000;
const APPLY_TIMEOUT_MS = 10_000;
const NEIGHBOUR_RETRY_MS = 5_000;
const RESOLVE_CONCURRENCY = 16;
const FLOW_LIST_MAX = 10_000;
/** Published owner entries live this long unless refreshed; flows republish every third of it. */
const OWNER_TTL_MS = 30_000;
const OWNER_REFRESH_MS = 10_000;
/** A token query that hears NOT FOUND is asked again (the token may be on its way to its owner), within the join's hold. */
const TOKEN_QUERY_RETRIES = 3;
const TOKEN_QUERY_RETRY_DELAY_MS = 4;
const TOKEN_QUERY_RETRY_UNTIL_MS = 40;

export interface BackendStatus {
  service: string;
  address: string;
  weight: number;
  state: 'active' | 'draining';
  role: 'primary' | 'spare';
  /** What the current generation does with it. */
  status: string;
  overridden: boolean;
  health: { check: string; state: string; lastError: string | null; lastChange: string | null } | null;
  mac: string | null;
  problem: string | null;
  activeFlows: number;
  flowsCreated: number;
  packets: number;
  bytes: number;
}

/** A start-up problem the operator must fix; the CLI prints it and exits non-zero. */
export class StartupError extends Error {}

export class Daemon {
  readonly metrics = new Metrics();
  readonly #log: Logger;
  readonly #configPath: string;
  #config!: SluiceConfig;
  #generation = 0;
  readonly #serviceIds = new IdAllocator(MAX_SERVICES);
  readonly #backendIds = new IdAllocator(MAX_BACKENDS);
  #ingress!: InterfaceFacts;
  #egress!: InterfaceFacts;
  #nextHops = new Map<string, NextHop>();
  #spec!: DataplaneSpec;
  #worker: ChildProcess | null = null;
  #engine = '';
  #stopping = false;
  #restarts = 0;
  #watcher: ConfigWatcher | null = null;
  #metricsServer: Server | null = null;
  #adminServer: Server | null = null;
  #timers: NodeJS.Timeout[] = [];
  #queue: Promise<unknown> = Promise.resolve();
  #requestId = 0;
  readonly #flowRequests = new Map<number, (m: Extract<FromDataplane, { type: 'flows' }>) => void>();
  readonly #countRequests = new Map<number, (m: Map<number, number>) => void>();
  #applyWaiters: { generation: number; resolve: () => void; reject: (e: Error) => void }[] = [];
  #lastReload: { at: string; ok: boolean; message: string } | null = null;
  readonly #overrides = new Map<string, BackendOverride>();
  readonly #health: HealthManager;
  #healthRebuild: NodeJS.Timeout | null = null;
  #cluster: ControlPlane | null = null;
  #startedAt = new Date().toISOString();

  constructor(configPath: string, log: Logger) {
    this.#configPath = configPath;
    this.#log = log;
    this.#health = new HealthManager({
      onChange: (key, from, to, detail) => {
        this.metrics.healthTransitions.inc({ to });
        this.#log.warn(
          { event: 'health_change', backend: detail.target.address, port: detail.target.port, check: detail.target.check.type, from, to, error: detail.error ?? null },
          `backend ${detail.target.address} is ${to}`,
        );
        if (detail.trafficChanged) this.#scheduleHealthRebuild();
      },
    });
  }

  /** Several checks often change together: one generation for all of them. */
  #scheduleHealthRebuild(): void {
    if (this.#healthRebuild || this.#stopping) return;
    this.#healthRebuild = setTimeout(() => {
      this.#healthRebuild = null;
      void this.#serial(() => this.#applyGeneration(this.#config)).catch((e: Error) =>
        this.#log.error({ event: 'health_rebuild_failed', error: e.message }, 'could not apply the health change'),
      );
    }, 100);
  }

  static #targetOf(s: ServiceConfig, address: string): HealthTarget | null {
    return s.healthCheck ? healthTarget(address, s.port, s.healthCheck) : null;
  }

  #healthTargets(config: SluiceConfig): HealthTarget[] {
    const out: HealthTarget[] = [];
    for (const s of config.services) for (const b of s.backends) {
      const t = Daemon.#targetOf(s, b.address);
      if (t) out.push(t);
    }
    return out;
  }

  #healthy = (s: ServiceConfig, address: string): boolean => {
    const t = Daemon.#targetOf(s, address);
    return t === null || this.#health.takesTraffic(t);
  };

  get config(): SluiceConfig {
    return this.#config;
  }

  async start(): Promise<void> {
    let config: SluiceConfig;
    let text: string;
    try {
      ({ config, text } = readConfigFile(this.#configPath));
    } catch (e) {
      if (e instanceof ConfigError) throw new StartupError(`invalid config ${this.#configPath}:\n${formatIssues(e)}`);
      throw e;
    }
    this.#ingress = await interfaceFacts(config.interface).catch((e: Error) => {
      throw new StartupError(e.message);
    });
    this.#egress =
      config.egressInterface === config.interface
        ? this.#ingress
        : await interfaceFacts(config.egressInterface).catch((e: Error) => {
            throw new StartupError(e.message);
          });
    const problems = await safetyProblems({
      interface: config.interface,
      egressInterface: config.egressInterface,
      vips: config.services.map((s) => s.vip),
      allowHostForwarding: config.safety.allowHostForwarding,
      allowLocalVip: config.safety.allowLocalVip,
    });
    if (problems.length > 0) throw new StartupError(`refusing to start:\n- ${problems.join('\n- ')}`);

    this.#config = config;
    this.#generation = 1;
    await this.#resolveNextHops(config, true);
    this.#health.setTargets(this.#healthTargets(config));
    this.#health.start();
    this.#spec = this.#build(config);

    // Servers first: a bad listen address is reported before any packet is captured.
    this.#metricsServer = jsonServer(async (_req, url, res) => {
      if (url.pathname !== '/metrics') return sendJson(res, 404, { error: 'try /metrics' });
      await this.#refreshCounters();
      const body = await this.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': this.metrics.registry.contentType });
      res.end(body);
    });
    await listenTcp(this.#metricsServer, config.metrics.listen).catch((e: Error) => {
      throw new StartupError(`cannot serve metrics on ${config.metrics.listen}: ${e.message}`);
    });
    this.#adminServer = jsonServer((req, url, res) => this.#admin(req.method ?? 'GET', url, res));
    await listenUnix(this.#adminServer, config.admin.socket).catch((e: Error) => {
      throw new StartupError(`cannot serve the admin API on ${config.admin.socket}: ${e.message}`);
    });

    if (config.cluster) {
      let key: Buffer;
      try {
        key = loadClusterKey(config.cluster);
      } catch (e) {
        throw new StartupError(`cluster key: ${(e as Error).message}`);
      }
      const cp = new ControlPlane({
        cluster: config.cluster,
        key,
        onError: (e) => this.#log.error({ event: 'cluster_error', error: e.message }, 'control plane error'),
      });
      await cp.start().catch((e: Error) => {
        throw new StartupError(`cluster: cannot listen on ${config.cluster?.listen}: ${e.message}`);
      });
      cp.onLiveChange((live) => this.#log.warn({ event: 'cluster_view', live }, `cluster live set: ${live.join(', ')}`));
      this.#cluster = cp;
      this.metrics.setCluster(cp);
    }

    await this.#startWorker();
    this.metrics.configGeneration.set(this.#generation);
    this.#afterGeneration();
    if (this.#cluster && config.cluster?.sync) {
      this.#timers.push(setInterval(() => this.#send({ type: 'publish-owners' }), OWNER_REFRESH_MS));
    }

    this.#watcher = new ConfigWatcher({
      path: this.#configPath,
      initialText: text,
      onConfig: (next) => {
        void this.reload(next, 'file changed or SIGHUP');
      },
      onInvalid: (err) => {
        this.metrics.reloads.inc({ result: 'failed' });
        const message = err instanceof ConfigError ? formatIssues(err).replace(/\n/g, '; ') : String(err);
        this.#lastReload = { at: new Date().toISOString(), ok: false, message };
        this.#log.error({ event: 'reload_refused', config: this.#configPath, issues: message }, 'config reload refused; still forwarding with the previous config');
      },
    });
    this.#watcher.start();
    this.#timers.push(setInterval(() => void this.#retryNeighbours(), NEIGHBOUR_RETRY_MS));
    this.#log.info(
      {
        event: 'started',
        config: this.#configPath,
        interface: config.interface,
        egress: config.egressInterface,
        engine: this.#engine,
        services: config.services.length,
        metrics: config.metrics.listen,
        admin: config.admin.socket,
      },
      'sluice is forwarding',
    );
  }

  async #resolveNextHops(config: SluiceConfig, initial: boolean): Promise<void> {
    const wanted: { address: string; direct: boolean }[] = [];
    const seen = new Set<string>();
    for (const s of config.services) {
      for (const b of s.backends) {
        if (seen.has(b.address)) continue;
        seen.add(b.address);
        wanted.push({ address: b.address, direct: s.forwarding === 'dsr-l2' });
      }
    }
    const results = new Map<string, NextHop>();
    let i = 0;
    const workers = Array.from({ length: Math.min(RESOLVE_CONCURRENCY, wanted.length) }, async () => {
      while (i < wanted.length) {
        const w = wanted[i++];
        results.set(w.address, await resolveNextHop(w.address, config.egressInterface, w.direct));
      }
    });
    await Promise.all(workers);
    let unresolved = 0;
    for (const [address, hop] of results) {
      if (hop.problem) {
        unresolved++;
        const before = this.#nextHops.get(address);
        if (initial || !before || before.problem !== hop.problem) {
          this.#log.warn({ event: 'backend_unresolved', backend: address, problem: hop.problem }, 'backend takes no new flows until its next hop resolves');
        }
      }
    }
    this.metrics.neighbourUnresolved.set(unresolved);
    this.#nextHops = results;
  }

  async #retryNeighbours(): Promise<void> {
    const missing = [...this.#nextHops.values()].filter((h) => h.problem);
    if (missing.length === 0 || this.#stopping) return;
    await this.#serial(async () => {
      let changed = false;
      for (const h of missing) {
        const direct = this.#config.services.some((s) => s.forwarding === 'dsr-l2' && s.backends.some((b) => b.address === h.address));
        const now = await resolveNextHop(h.address, this.#config.egressInterface, direct, 500);
        if (!now.problem) {
          this.#nextHops.set(h.address, now);
          changed = true;
          this.#log.info({ event: 'backend_resolved', backend: h.address, mac: now.mac ? macToText(now.mac) : null }, 'backend next hop resolved');
        }
      }
      if (changed) {
        this.metrics.neighbourUnresolved.set([...this.#nextHops.values()].filter((h) => h.problem).length);
        await this.#applyGeneration(this.#config);
      }
    });
  }

  #build(config: SluiceConfig): DataplaneSpec {
    const spec = buildSpec({
      config,
      generation: this.#generation,
      serviceIds: this.#serviceIds,
      backendIds: this.#backendIds,
      nextHops: this.#nextHops,
      ingress: this.#ingress,
      egress: this.#egress,
      healthy: this.#healthy,
      overrides: this.#overrides,
      localAddresses: this.#ingress.allAddresses,
    });
    const services = new Map<number, string>();
    const backends = new Map<number, { service: string; address: string }>();
    for (const s of spec.services) services.set(s.id, s.name);
    for (const b of spec.backends) backends.set(b.id, { service: spec.services.find((s) => s.id === b.serviceId)?.name ?? '?', address: b.address });
    this.metrics.setLabels({ services, backends });
    return spec;
  }

  #startWorker(): Promise<void> {
    const cfg = this.#config;
    const init: DataplaneInit = {
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
      tokenCapacity: DEFAULT_TOKEN_CAPACITY,
      spec: this.#spec,
    };
    const worker = fork(WORKER_PATH, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#worker = worker;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        worker.kill('SIGKILL');
        reject(new StartupError(`the data-plane process did not start within ${START_TIMEOUT_MS} ms`));
      }, START_TIMEOUT_MS);
      let started = false;
      worker.on('message', (m: FromDataplane) => {
        if (m.type === 'ready') {
          started = true;
          clearTimeout(timer);
          this.#engine = m.engine;
          this.metrics.dataplaneUp.set(1);
          const cl = this.#config.cluster;
          if (this.#cluster && cl?.sync) worker.send({ type: 'owner-queries', enabled: true, holdPackets: cl.holdPackets ?? DEFAULT_HOLD_PACKETS } satisfies ToDataplane);
          resolve();
        } else if (m.type === 'fatal') {
          clearTimeout(timer);
          reject(new StartupError(`the data plane could not start: ${m.message}`));
        } else {
          this.#onWorkerMessage(m);
        }
      });
      worker.on('exit', (code, signal) => {
        clearTimeout(timer);
        this.metrics.dataplaneUp.set(0);
        if (this.#worker === worker) this.#worker = null;
        if (!started) {
          reject(new StartupError(`the data-plane process exited during start (code ${code}, signal ${signal})`));
          return;
        }
        for (const w of this.#applyWaiters) w.reject(new Error('data-plane process exited'));
        this.#applyWaiters = [];
        if (!this.#stopping) this.#onWorkerDied(code, signal);
      });
      worker.send({ type: 'init', init } satisfies ToDataplane);
    });
  }

  #onWorkerDied(code: number | null, signal: string | null): void {
    this.#restarts++;
    this.metrics.dataplaneRestarts.inc();
    const delay = Math.min(5000, 100 * 2 ** Math.min(this.#restarts, 6));
    this.#log.error({ event: 'dataplane_died', code, signal, restartInMs: delay }, 'data-plane process died; restarting with the current generation');
    setTimeout(() => {
      if (this.#stopping) return;
      this.#startWorker().then(
        () => this.#log.info({ event: 'dataplane_restarted', engine: this.#engine }, 'data-plane process restarted'),
        (e: Error) => this.#log.error({ event: 'dataplane_restart_failed', error: e.message }, 'data-plane restart failed'),
      );
    }, delay);
  }

  #onWorkerMessage(m: FromDataplane): void {
    switch (m.type) {
      case 'counters':
        this.metrics.setSnapshot(m.counters);
        break;
      case 'applied':
      case 'apply-failed': {
        const waiters = this.#applyWaiters.filter((w) => w.generation === m.generation);
        this.#applyWaiters = this.#applyWaiters.filter((w) => w.generation !== m.generation);
        for (const w of waiters) {
          if (m.type === 'applied') w.resolve();
          else w.reject(new Error(m.message));
        }
        break;
      }
      case 'flows':
        this.#flowRequests.get(m.requestId)?.(m);
        this.#flowRequests.delete(m.requestId);
        break;
      case 'flow-counts':
        this.#countRequests.get(m.requestId)?.(m.counts);
        this.#countRequests.delete(m.requestId);
        break;
      case 'owner-query':
        void this.#answerOwnerQuery(m.qid, m.kind, m.key);
        break;
      case 'owner-entries':
        this.#publishOwners(m.entries);
        break;
      default:
        break;
    }
  }

  #send(msg: ToDataplane): boolean {
    if (!this.#worker || !this.#worker.connected) return false;
    this.#worker.send(msg);
    return true;
  }

  /** Ask for a fresh counter snapshot (bounded wait), so a scrape right after traffic is exact. */
  async #refreshCounters(): Promise<void> {
    if (!this.#worker) return;
    const before = this.metrics.snapshot;
    this.#send({ type: 'publish' });
    const deadline = Date.now() + 50;
    while (this.metrics.snapshot === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }

  /** Apply `config` as the next generation; on any failure the running generation stays. */
  reload(next?: SluiceConfig, cause = 'admin'): Promise<{ ok: boolean; message: string }> {
    return this.#serial(async () => {
      let config = next;
      try {
        config ??= loadConfigFile(this.#configPath);
        const d = diffConfigs(this.#config, config);
        if (d.restartRequired.length > 0) {
          throw new Error(`these settings change only with a restart: ${d.restartRequired.join(', ')}`);
        }
        const problems = await safetyProblems({
          interface: config.interface,
          egressInterface: config.egressInterface,
          vips: config.services.map((s) => s.vip),
          allowHostForwarding: config.safety.allowHostForwarding,
          allowLocalVip: config.safety.allowLocalVip,
        });
        if (problems.length > 0) throw new Error(problems.join(' '));
        await this.#resolveNextHops(config, false);
        const present = new Set(config.services.flatMap((sv) => sv.backends.map((b) => backendKey(sv.name, b.address))));
        for (const k of [...this.#overrides.keys()]) if (!present.has(k)) this.#overrides.delete(k);
        this.#health.setTargets(this.#healthTargets(config));
        await this.#applyGeneration(config);
        this.metrics.reloads.inc({ result: 'ok' });
        const message = summarizeDiff(d);
        this.#lastReload = { at: new Date().toISOString(), ok: true, message };
        this.#log.info({ event: 'reloaded', cause, generation: this.#generation, changes: message }, 'config reloaded');
        return { ok: true, message };
      } catch (e) {
        const message = e instanceof ConfigError ? formatIssues(e).replace(/\n/g, '; ') : (e as Error).message;
        this.metrics.reloads.inc({ result: 'failed' });
        this.#lastReload = { at: new Date().toISOString(), ok: false, message };
        this.#log.error({ event: 'reload_refused', cause, issues: message }, 'config reload refused; still forwarding with the previous config');
        return { ok: false, message };
      }
    });
  }

  async #applyGeneration(config: SluiceConfig): Promise<void> {
    const generation = this.#generation + 1;
    const prevGeneration = this.#generation;
    this.#generation = generation;
    let spec: DataplaneSpec;
    try {
      spec = this.#build(config);
    } catch (e) {
      this.#generation = prevGeneration;
      throw e;
    }
    const applied = new Promise<void>((resolve, reject) => {
      this.#applyWaiters.push({ generation, resolve, reject });
      setTimeout(() => reject(new Error(`data plane did not apply generation ${generation} within ${APPLY_TIMEOUT_MS} ms`)), APPLY_TIMEOUT_MS);
    });
    if (!this.#send({ type: 'generation', spec })) {
      this.#applyWaiters = this.#applyWaiters.filter((w) => w.generation !== generation);
      this.#generation = prevGeneration;
      throw new Error('the data-plane process is not running');
    }
    try {
      await applied;
    } catch (e) {
      this.#generation = prevGeneration;
      // Put the previous generation's labels back.
      this.#build(this.#config);
      throw e;
    }
    this.#config = config;
    this.#spec = spec;
    this.metrics.configGeneration.set(generation);
    this.#afterGeneration();
  }

  /** Tell the cluster our generation and publish what other instances need around the change. */
  #afterGeneration(): void {
    if (!this.#cluster) return;
    const selected = this.#spec.backends.filter((b) => b.serving).map((b) => ({ service: this.#serviceName(b.serviceId), address: b.address, weight: b.weight }));
    this.#cluster.setGeneration(this.#generation, backendSetHash(selected));
    if (this.#config.cluster?.sync) this.#send({ type: 'publish-owners' });
  }

  #serviceName(id: number): string {
    return this.#spec.services.find((s) => s.id === id)?.name ?? '';
  }

  async #answerOwnerQuery(qid: number, kind: number, key: Uint8Array): Promise<void> {
    const cp = this.#cluster;
    let backendId = -1;
    if (cp) {
      const end = this.metrics.ownerQueryLatency.startTimer();
      const started = performance.now();
      let who = await cp.query(kind === 1 ? 'token' : 'flow', key);
      // An MP_JOIN follows its connection's third ACK by ~1 ms (PROTOCOLS.md), and the instance
      // that learned the token from that ACK publishes it at the same moment: the join's query
      // can reach the owner first and hear NOT FOUND. Ask again a few times while the data plane
      // still holds the join (its hold ends at QUERY_DEADLINE_MS, 50 ms).
      for (let retry = 0; who === null && kind === 1 && retry < TOKEN_QUERY_RETRIES; retry++) {
        const left = TOKEN_QUERY_RETRY_UNTIL_MS - (performance.now() - started) - TOKEN_QUERY_RETRY_DELAY_MS;
        if (left < 2) break;
        await new Promise((r) => setTimeout(r, TOKEN_QUERY_RETRY_DELAY_MS));
        who = await cp.query('token', key, left);
      }
      end();
      if (who) backendId = this.#backendIds.idOf(backendKey(who.service, who.address)) ?? -1;
    }
    this.#send({ type: 'owner-answer', qid, backendId });
  }

  #publishOwners(entries: { kind: number; key: Uint8Array; backendId: number }[]): void {
    const cp = this.#cluster;
    if (!cp) return;
    const byId = new Map(this.#spec.backends.map((b) => [b.id, b]));
    const out: SyncEntry[] = [];
    for (const e of entries) {
      const b = byId.get(e.backendId);
      if (!b) continue;
      out.push({ kind: e.kind === 1 ? 'token' : 'flow', key: e.key, backend: { service: this.#serviceName(b.serviceId), address: b.address }, ttlMs: OWNER_TTL_MS });
    }
    if (out.length > 0) cp.publish(out);
  }

  flows(filter: { vip?: string; backend?: string; client?: string; limit: number }): Promise<{ rows: (FlowRow & { backend: string; service: string })[]; total: number }> {
    const backendIds = filter.backend
      ? this.#spec.backends.filter((b) => b.address === filter.backend).map((b) => b.id)
      : undefined;
    const requestId = ++this.#requestId;
    const limit = Math.max(1, Math.min(FLOW_LIST_MAX, filter.limit));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#flowRequests.delete(requestId);
        reject(new Error('the data plane did not answer within 2 s'));
      }, 2000);
      this.#flowRequests.set(requestId, (m) => {
        clearTimeout(timer);
        resolve({
          total: m.total,
          rows: m.rows.map((r) => {
            const b = this.#spec.backends.find((x) => x.id === r.backendId);
            const s = this.#spec.services.find((x) => x.id === r.serviceId);
            return { ...r, backend: b?.address ?? `#${r.backendId}`, service: s?.name ?? `#${r.serviceId}` };
          }),
        });
      });
      if (!this.#send({ type: 'flows', requestId, limit, vip: filter.vip, client: filter.client, backendIds })) {
        clearTimeout(timer);
        this.#flowRequests.delete(requestId);
        reject(new Error('the data-plane process is not running'));
      }
    });
  }

  /** Live flows per backend id (one scan of the flow table in the data plane). */
  #flowCounts(): Promise<Map<number, number>> {
    const requestId = ++this.#requestId;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#countRequests.delete(requestId);
        resolve(new Map());
      }, 2000);
      this.#countRequests.set(requestId, (m) => {
        clearTimeout(timer);
        resolve(m);
      });
      if (!this.#send({ type: 'flow-counts', requestId })) {
        clearTimeout(timer);
        this.#countRequests.delete(requestId);
        resolve(new Map());
      }
    });
  }

  /** Every backend of every service: its role in the current generation, health, flows and traffic. */
  async backends(): Promise<BackendStatus[]> {
    await this.#refreshCounters();
    const counts = await this.#flowCounts();
    const out: BackendStatus[] = [];
    for (const s of this.#config.services) {
      for (const r of this.#backendRows(s)) {
        const target = Daemon.#targetOf(s, r.address);
        const rec = target ? this.#health.recordOf(targetKey(target)) : undefined;
        out.push({
          service: s.name,
          address: r.address,
          weight: r.weight,
          state: r.state,
          role: r.role,
          status: r.status,
          overridden: this.#overrides.has(backendKey(s.name, r.address)),
          health: target ? { check: target.check.type, state: rec?.state ?? 'unknown', lastError: rec?.lastError ?? null, lastChange: rec?.lastChangeAt ? new Date(rec.lastChangeAt).toISOString() : null } : null,
          mac: r.mac,
          problem: r.problem,
          activeFlows: r.id >= 0 ? (counts.get(r.id) ?? 0) : 0,
          flowsCreated: r.flowsCreated,
          packets: r.packets,
          bytes: r.bytes,
        });
      }
    }
    return out;
  }

  /** A counter of the latest data-plane snapshot (0 where the snapshot is shorter). */
  #counter(i: number): number {
    const c = this.metrics.snapshot;
    return i < c.length ? c[i] : 0;
  }

  /** Each backend of a service: its place in the current generation (effective weight, status), next hop and counters. */
  #backendRows(s: ServiceConfig): (EffectiveBackend & { id: number; mac: string | null; problem: string | null; packets: number; bytes: number; flowsCreated: number })[] {
    return effectiveBackends(s, (a) => (this.#nextHops.get(a)?.mac ?? null) !== null, (a) => this.#healthy(s, a), this.#overrides).map((b) => {
      const id = this.#backendIds.idOf(backendKey(s.name, b.address)) ?? -1;
      const hop = this.#nextHops.get(b.address);
      return {
        ...b,
        id,
        mac: hop?.mac ? macToText(hop.mac) : null,
        problem: hop?.problem ?? null,
        packets: id >= 0 ? this.#counter(backendCounter(id, ENTITY.packets)) : 0,
        bytes: id >= 0 ? this.#counter(backendCounter(id, ENTITY.bytes)) : 0,
        flowsCreated: id >= 0 ? this.#counter(backendCounter(id, ENTITY.flowsCreated)) : 0,
      };
    });
  }

  /** Operator action on one backend (or every service's backend at that address): drain, undrain, weight. */
  operate(action: 'drain' | 'undrain' | 'weight', address: string, service?: string, weight?: number): Promise<{ ok: boolean; message: string; matched: string[] }> {
    return this.#serial(async () => {
      const matched: string[] = [];
      for (const s of this.#config.services) {
        if (service && s.name !== service) continue;
        if (!s.backends.some((b) => b.address === address)) continue;
        const key = backendKey(s.name, address);
        const o = { ...(this.#overrides.get(key) ?? {}) };
        if (action === 'drain') o.state = 'draining';
        // undrain removes the operator's drain: the file's state applies again.
        else if (action === 'undrain') delete o.state;
        else o.weight = weight;
        if (o.state === undefined && o.weight === undefined) this.#overrides.delete(key);
        else this.#overrides.set(key, o);
        matched.push(s.name);
      }
      if (matched.length === 0) {
        return { ok: false, message: `no backend ${address}${service ? ` in service ${service}` : ''}`, matched };
      }
      await this.#applyGeneration(this.#config);
      const message = `${action} ${address}${action === 'weight' ? ` = ${weight}` : ''} in ${matched.join(', ')}: generation ${this.#generation}`;
      this.#log.info({ event: 'backend_' + action, backend: address, services: matched, weight: weight ?? null, generation: this.#generation }, message);
      return { ok: true, message, matched };
    });
  }

  async status(): Promise<Record<string, unknown>> {
    await this.#refreshCounters();
    const at = (i: number): number => this.#counter(i);
    const drops: Record<string, number> = {};
    for (let r = 1; r < DROP_REASONS.length; r++) if (at(DROPS_BASE + r) > 0) drops[DROP_REASONS[r]] = at(DROPS_BASE + r);
    return {
      version: VERSION,
      startedAt: this.#startedAt,
      config: this.#configPath,
      generation: this.#generation,
      dataplane: { engine: this.#engine, up: this.#worker !== null, pid: this.#worker?.pid ?? null, restarts: this.#restarts, generation: at(G.generation) },
      interface: this.#config.interface,
      egressInterface: this.#config.egressInterface,
      lastReload: this.#lastReload,
      cluster: this.#cluster ? this.#clusterStatus() : null,
      flows: { active: at(G.flowsActive), capacity: at(G.flowCapacity), created: at(G.flowsCreated), evictions: at(G.flowEvictions) },
      traffic: { rxFrames: at(G.rxFrames), txFrames: at(G.txFrames), txErrors: at(G.txErrors), captureDropped: at(G.captureDropped) },
      drops,
      services: this.#config.services.map((s) => ({
        name: s.name,
        vip: s.vip,
        port: s.port === 0 ? 'all' : s.port,
        protocol: s.protocol,
        forwarding: s.forwarding,
        // Effective weight and status (operator overrides, health, spares), as /backends reports them.
        backends: this.#backendRows(s).map((r) => ({
          address: r.address,
          weight: r.weight,
          status: r.status,
          mac: r.mac,
          problem: r.problem,
          packets: r.packets,
          bytes: r.bytes,
          flowsCreated: r.flowsCreated,
        })),
      })),
    };
  }

  #clusterStatus(): Record<string, unknown> {
    const st = (this.#cluster as ControlPlane).status();
    const { counters, ...rest } = st;
    const { queryLatency: _latency, ...plain } = counters;
    return { ...rest, sync: this.#config.cluster?.sync ?? false, counters: plain };
  }

  async #admin(method: string, url: URL, res: import('node:http').ServerResponse): Promise<void> {
    if (method === 'GET' && url.pathname === '/status') return sendJson(res, 200, await this.status());
    if (method === 'GET' && url.pathname === '/flows') {
      const limit = Number(url.searchParams.get('limit') ?? 100);
      if (!Number.isInteger(limit) || limit < 1) return sendJson(res, 400, { error: 'limit must be a positive integer' });
      const out = await this.flows({
        vip: url.searchParams.get('vip') ?? undefined,
        backend: url.searchParams.get('backend') ?? undefined,
        client: url.searchParams.get('client') ?? undefined,
        limit,
      });
      return sendJson(res, 200, out);
    }
    if (method === 'GET' && url.pathname === '/backends') return sendJson(res, 200, { backends: await this.backends() });
    const op = /^\/backends\/(drain|undrain|weight)$/.exec(url.pathname);
    if (method === 'POST' && op) {
      const address = url.searchParams.get('address');
      if (!address) return sendJson(res, 400, { error: 'address is required' });
      const service = url.searchParams.get('service') ?? undefined;
      let weight: number | undefined;
      if (op[1] === 'weight') {
        weight = Number(url.searchParams.get('weight'));
        if (!Number.isInteger(weight) || weight < 0 || weight > 1000) return sendJson(res, 400, { error: 'weight must be an integer 0..1000' });
      }
      const r = await this.operate(op[1] as 'drain' | 'undrain' | 'weight', address, service, weight);
      return sendJson(res, r.ok ? 200 : 404, r);
    }
    if (method === 'POST' && url.pathname === '/reload') {
      const r = await this.reload(undefined, 'admin');
      return sendJson(res, r.ok ? 200 : 409, r);
    }
    return sendJson(res, 404, { error: `no such endpoint: ${method} ${url.pathname}` });
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    for (const t of this.#timers) clearInterval(t);
    if (this.#healthRebuild) clearTimeout(this.#healthRebuild);
    await this.#health.stop();
    sharedIcmpEcho().close();
    this.#watcher?.stop();
    const worker = this.#worker;
    if (worker) {
      const exited = new Promise<void>((r) => worker.once('exit', () => r()));
      this.#send({ type: 'shutdown' });
      const killer = setTimeout(() => worker.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(killer);
    }
    await this.#cluster?.stop();
    await Promise.all(
      [this.#metricsServer, this.#adminServer].map(
        (s) => new Promise<void>((r) => (s ? s.close(() => r()) : r())),
      ),
    );
    this.#log.info({ event: 'stopped' }, 'sluice stopped');
  }
}


