/**
 * The control process of one Sluice instance, as a composition root: it reads the config, checks
 * the host, builds the parts below and starts them in order (stopping the started ones in reverse).
 * It does no work itself; each part says what it does:
 *
 *   instance-lock.ts   one instance per interface, namespace and admin socket (first in, last out)
 *   next-hops.ts       backend next hops (routes, neighbours)
 *   backend-health.ts  health checks -> "rebuild" on a traffic change
 *   generations.ts     the current table generation; apply() the next one or keep this one
 *   observe/admin.ts   /metrics and the admin API (answers from admin-sources.ts)
 *   owner-bridge.ts    the cluster: owner queries and entries between data plane and peers
 *   supervisor.ts      the data-plane process: adopt, replace or start it, restart, the typed request helper
 *   reloader.ts        config file, SIGHUP, admin, health and next-hop changes -> generations
 *   vip-announcement.ts  BGP routes for the VIPs (last in, first out: withdrawn before anything stops)
 *
 * It never touches packets, so none of this waits on them (src/dataplane/worker.ts does).
 */
import { ConfigError, formatIssue, formatIssues, readConfigFile, type ConfigIssue } from '../config/load.js';
import type { SluiceConfig } from '../config/types.js';
import type { DataplaneInit } from '../dataplane/contract/spec.js';
import { interfaceFacts, type InterfaceFacts } from '../dataplane/host.js';
import type { BackendStatus, OperateRequest, OperateResult, ReloadResult, StatusReport } from '../observe/admin-api.js';
import { AdminApi, backendStatuses, statusReport } from '../observe/admin.js';
import type { Logger } from '../observe/log.js';
import { Metrics } from '../observe/metrics.js';
import { ControlAdminSources } from './admin-sources.js';
import { BackendHealth } from './backend-health.js';
import { Generations } from './generations.js';
import { hostSafetyProblems } from './host-safety.js';
import { InstanceClaim } from './instance-lock.js';
import { controlHeapForSize, tuneMalloc } from './malloc-tuning.js';
import { NextHops } from './next-hops.js';
import { OwnerBridge } from './owner-bridge.js';
import { Reloader } from './reloader.js';
import type { Startable } from './startable.js';
import { StartupError } from './startup-error.js';
import { DataplaneSupervisor } from './supervisor.js';
import { flowTablePath } from '../dataplane/contract/handover.js';
import { VipAnnouncement } from './vip-announcement.js';

export { StartupError } from './startup-error.js';

/** What start-up learns before any part exists. */
interface Boot {
  config: SluiceConfig;
  /** The config file's text (the watcher reports only a different one). */
  text: string;
  ingress: InterfaceFacts;
  egress: InterfaceFacts;
}

export class Daemon {
  readonly metrics = new Metrics();
  readonly #log: Logger;
  readonly #configPath: string;
  /** Parts whose start() was called, in that order (a part that failed half way is stopped too). */
  readonly #started: Startable[] = [];
  #sources: ControlAdminSources | null = null;
  #supervisor: DataplaneSupervisor | null = null;
  /** What `sluice restart` (POST /restart) and SIGUSR2 call: set by the CLI, which owns the process. */
  onRestartRequest: (() => void) | null = null;

  constructor(configPath: string, log: Logger) {
    this.#configPath = configPath;
    this.#log = log;
  }

  async start(): Promise<void> {
    tuneMalloc();
    controlHeapForSize();
    const boot = await this.#boot();
    const parts = this.#compose(boot);
    for (const part of parts) {
      this.#started.push(part);
      this.#log.debug({ event: 'part_starting', part: part.name }, `starting ${part.name}`);
      await part.start();
    }
    const { config } = boot;
    this.#log.info(
      {
        event: 'started',
        config: this.#configPath,
        interface: config.interface,
        egress: config.egressInterface,
        engine: this.#sources?.dataplane().engine ?? '',
        services: config.services.length,
        metrics: config.metrics.listen,
        admin: config.admin.socket,
      },
      'sluice is forwarding',
    );
  }

  /**
   * Stop this control process but leave the data plane forwarding, flows and MPTCP tokens in its
   * table, for the next control process (systemd's restart, or the operator's `sluice run`) to
   * adopt or replace. With SLUICE_HANDOVER=off this is stop().
   */
  release(): Promise<void> {
    this.#supervisor?.release();
    return this.stop();
  }

  async stop(): Promise<void> {
    while (this.#started.length > 0) {
      const part = this.#started.pop() as Startable;
      try {
        await part.stop();
      } catch (e) {
        this.#log.error({ event: 'part_stop_failed', part: part.name, error: (e as Error).message }, `could not stop ${part.name} cleanly`);
      }
    }
    this.#log.info({ event: 'stopped' }, 'sluice stopped');
  }

  /** The admin API's answers, for callers in this process. */
  async status(): Promise<StatusReport> {
    const src = this.#running();
    return statusReport(src, await src.freshCounters(), await src.announce());
  }

  async backends(): Promise<BackendStatus[]> {
    const src = this.#running();
    const counters = await src.freshCounters();
    return backendStatuses(src, counters, await src.flowCounts());
  }

  /** Re-read the config file now and apply it (what SIGHUP and POST /reload do). */
  reload(): Promise<ReloadResult> {
    return this.#running().reload();
  }

  operate(op: OperateRequest): Promise<OperateResult> {
    return this.#running().operate(op);
  }

  #running(): ControlAdminSources {
    if (!this.#sources) throw new Error('sluice is not running');
    return this.#sources;
  }

  /** Config, interfaces, host safety: everything that must hold before anything starts. */
  async #boot(): Promise<Boot> {
    let config: SluiceConfig;
    let text: string;
    try {
      let warnings: ConfigIssue[];
      ({ config, text, warnings } = readConfigFile(this.#configPath));
      // Warnings do not stop a start (`sluice check` shows the same ones).
      for (const w of warnings) this.#log.warn({ event: 'config_warning', path: w.path, rule: w.rule }, formatIssue(w));
    } catch (e) {
      if (e instanceof ConfigError) throw new StartupError(`invalid config ${this.#configPath}:\n${formatIssues(e)}`);
      throw e;
    }
    const facts = (name: string): Promise<InterfaceFacts> =>
      interfaceFacts(name).catch((e: Error) => {
        throw new StartupError(e.message);
      });
    const ingress = await facts(config.interface);
    const egress = config.egressInterface === config.interface ? ingress : await facts(config.egressInterface);
    const problems = await hostSafetyProblems(config);
    if (problems.length > 0) throw new StartupError(`refusing to start:\n- ${problems.join('\n- ')}`);
    return { config, text, ingress, egress };
  }

  /** The parts, in start order. */
  #compose({ config, text, ingress, egress }: Boot): Startable[] {
    const log = this.#log;
    const metrics = this.metrics;
    const configPath = this.#configPath;
    // Health changes and restarts happen only after start(), when every part below exists.
    const nextHops = new NextHops({ log, metrics, config });
    const health = new BackendHealth({ log, metrics, config, onTrafficChange: () => reloader.scheduleHealthRebuild() });
    const supervisor: DataplaneSupervisor = new DataplaneSupervisor({
      log,
      metrics,
      init: (): DataplaneInit => generations.dataplaneInit(),
      adoptIds: (ids) => generations.adopt(ids),
      interface: config.interface,
      flowTablePath: flowTablePath(config.admin.socket),
    });
    this.#supervisor = supervisor;
    const generations = new Generations({ metrics, config, ingress, egress, nextHops, health, supervisor });
    const bridge = new OwnerBridge({ log, metrics, config, generations, supervisor });
    const reloader = new Reloader({ log, metrics, configPath, initialText: text, generations, nextHops, health });
    const announcement = config.announce
      ? new VipAnnouncement({ log, metrics, announce: config.announce, adminSocket: config.admin.socket, generations, supervisor, joined: bridge.joined() })
      : null;
    const sources = new ControlAdminSources({
      configPath,
      metrics,
      generations,
      nextHops,
      health,
      supervisor,
      bridge,
      reloader,
      announcement,
      restart: () => this.onRestartRequest,
    });
    const claim = new InstanceClaim({ interface: config.interface, adminSocket: config.admin.socket, allowOthers: config.safety.allowOtherInstances ?? false });
    const admin = new AdminApi({
      sources,
      log,
      metricsListen: config.metrics.listen,
      adminSocket: config.admin.socket,
      listenError: (what, e) => new StartupError(`${what}: ${e.message}`),
    });
    this.#sources = sources;
    // Servers and the cluster listen before the data plane captures: a bad address fails first.
    // The instance claim comes first: a second instance is refused before it probes, listens or captures.
    const parts: Startable[] = [claim, nextHops, health, generations, admin, bridge, supervisor, reloader];
    if (announcement) parts.push(announcement);
    return parts;
  }
}
