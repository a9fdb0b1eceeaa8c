/**
 * Everything that makes a new generation, one at a time through one serial queue:
 *   - the config file changed or SIGHUP (ConfigWatcher) or POST /reload: reload()
 *       diff -> host safety -> next hops -> health targets -> Generations.apply, or refuse
 *   - an operator drain/undrain/weight (POST /backends/...): operate()
 *   - a health change that moves a backend in or out of traffic (debounced): rebuild
 *   - an unresolved next hop that resolves (retried on a timer): rebuild
 * A refused or failed change leaves the running generation forwarding, and says why.
 */
import { ConfigError, configWarnings, formatIssue, formatIssues, loadConfigFile } from '../config/load.js';
import { diffConfigs, summarizeDiff } from '../config/diff.js';
import { ConfigWatcher } from '../config/watch.js';
import type { SluiceConfig } from '../config/types.js';
import type { LastReload, OperateRequest, OperateResult, ReloadResult } from '../observe/admin-api.js';
import type { Metrics } from '../observe/metrics.js';
import type { Logger } from '../observe/log.js';
import type { BackendHealth } from './backend-health.js';
import { backendKey } from './generation.js';
import type { Generations } from './generations.js';
import { hostSafetyProblems } from './host-safety.js';
import type { NextHops } from './next-hops.js';
import type { Startable } from './startable.js';

/** Several checks often change together: one generation for all that change within this time. */
const HEALTH_REBUILD_DEBOUNCE_MS = 100;
const NEIGHBOUR_RETRY_MS = 5_000;

export interface ReloaderOptions {
  log: Logger;
  metrics: Metrics;
  configPath: string;
  /** The text the running config was read from (the watcher reports only a different one). */
  initialText: string;
  generations: Generations;
  nextHops: NextHops;
  health: BackendHealth;
}

const issuesText = (e: unknown): string => (e instanceof ConfigError ? formatIssues(e).replace(/\n/g, '; ') : e instanceof Error ? e.message : String(e));

export class Reloader implements Startable {
  readonly name = 'reloader';
  readonly #opts: ReloaderOptions;
  #queue: Promise<unknown> = Promise.resolve();
  #watcher: ConfigWatcher | null = null;
  #neighbourRetry: NodeJS.Timeout | null = null;
  #healthRebuild: NodeJS.Timeout | null = null;
  #stopping = false;
  #lastReload: LastReload | null = null;

  constructor(opts: ReloaderOptions) {
    this.#opts = opts;
  }

  get lastReload(): LastReload | null {
    return this.#lastReload;
  }

  start(): void {
    const { log, metrics, configPath, initialText } = this.#opts;
    this.#watcher = new ConfigWatcher({
      path: configPath,
      initialText,
      onConfig: (next) => {
        for (const w of configWarnings(next)) log.warn({ event: 'config_warning', path: w.path, rule: w.rule }, formatIssue(w));
        void this.reload(next, 'file changed or SIGHUP');
      },
      onInvalid: (err) => {
        metrics.reloads.inc({ result: 'failed' });
        const message = issuesText(err);
        this.#lastReload = { at: new Date().toISOString(), ok: false, message };
        log.error({ event: 'reload_refused', config: configPath, issues: message }, 'config reload refused; still forwarding with the previous config');
      },
    });
    this.#watcher.start();
    this.#neighbourRetry = setInterval(() => this.#retryNextHops(), NEIGHBOUR_RETRY_MS);
  }

  stop(): void {
    this.#stopping = true;
    if (this.#neighbourRetry) clearInterval(this.#neighbourRetry);
    if (this.#healthRebuild) clearTimeout(this.#healthRebuild);
    this.#watcher?.stop();
  }

  /** Apply `next` (default: the file, read now) as the next generation; refused with the reason otherwise. */
  reload(next?: SluiceConfig, cause = 'admin'): Promise<ReloadResult> {
    const { log, metrics, configPath, generations, nextHops, health } = this.#opts;
    return this.#serial(async () => {
      try {
        const config = next ?? loadConfigFile(configPath);
        const d = diffConfigs(generations.config, config);
        if (d.restartRequired.length > 0) throw new Error(`these settings change only with a restart: ${d.restartRequired.join(', ')}`);
        const problems = await hostSafetyProblems(config);
        if (problems.length > 0) throw new Error(problems.join(' '));
        await nextHops.resolve(config, false);
        generations.dropOverridesNotIn(config);
        health.setTargets(config);
        await generations.apply(config);
        metrics.reloads.inc({ result: 'ok' });
        const message = summarizeDiff(d);
        this.#lastReload = { at: new Date().toISOString(), ok: true, message };
        log.info({ event: 'reloaded', cause, generation: generations.number, changes: message }, 'config reloaded');
        return { ok: true, message };
      } catch (e) {
        const message = issuesText(e);
        metrics.reloads.inc({ result: 'failed' });
        this.#lastReload = { at: new Date().toISOString(), ok: false, message };
        log.error({ event: 'reload_refused', cause, issues: message }, 'config reload refused; still forwarding with the previous config');
        return { ok: false, message };
      }
    });
  }

  /** Operator action on one backend (or every service's backend at that address): drain, undrain, weight. */
  operate(op: OperateRequest): Promise<OperateResult> {
    const { log, generations } = this.#opts;
    const { action, address, service, weight } = op;
    return this.#serial(async () => {
      const matched: string[] = [];
      for (const s of generations.config.services) {
        if (service && s.name !== service) continue;
        if (!s.backends.some((b) => b.address === address)) continue;
        const key = backendKey(s.name, address);
        const o = { ...(generations.overrides.get(key) ?? {}) };
        if (action === 'drain') o.state = 'draining';
        // undrain removes the operator's drain: the file's state applies again.
        else if (action === 'undrain') delete o.state;
        else o.weight = weight;
        if (o.state === undefined && o.weight === undefined) generations.overrides.delete(key);
        else generations.overrides.set(key, o);
        matched.push(s.name);
      }
      if (matched.length === 0) return { ok: false, message: `no backend ${address}${service ? ` in service ${service}` : ''}`, matched };
      await generations.apply(generations.config);
      const message = `${action} ${address}${action === 'weight' ? ` = ${weight}` : ''} in ${matched.join(', ')}: generation ${generations.number}`;
      log.info({ event: 'backend_' + action, backend: address, services: matched, weight: weight ?? null, generation: generations.number }, message);
      return { ok: true, message, matched };
    });
  }

  /** A health change moved a backend in or out of traffic: one new generation for this burst of changes. */
  scheduleHealthRebuild(): void {
    if (this.#healthRebuild || this.#stopping) return;
    this.#healthRebuild = setTimeout(() => {
      this.#healthRebuild = null;
      const { generations, log } = this.#opts;
      this.#serial(() => generations.apply(generations.config)).catch((e: Error) =>
        log.error({ event: 'health_rebuild_failed', error: e.message }, 'could not apply the health change'),
      );
    }, HEALTH_REBUILD_DEBOUNCE_MS);
  }

  #retryNextHops(): void {
    const { generations, nextHops, log } = this.#opts;
    if (!nextHops.anyMissing || this.#stopping) return;
    this.#serial(async () => {
      if (await nextHops.retryMissing(generations.config)) await generations.apply(generations.config);
    }).catch((e: Error) => log.error({ event: 'next_hop_rebuild_failed', error: e.message }, 'could not apply a resolved next hop'));
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.#queue.then(fn, fn);
    this.#queue = next.catch(() => undefined);
    return next;
  }
}
