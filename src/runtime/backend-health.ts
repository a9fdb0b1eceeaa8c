/**
 * The health checks as the control process uses them: one HealthManager over every backend of
 * every service with a healthCheck; a change that moves a backend in or out of traffic asks for
 * a new generation (through `onTrafficChange`, which the reloader debounces).
 */
import type { ServiceConfig, SluiceConfig } from '../config/types.js';
import { sharedIcmpEcho } from '../health/icmp.js';
import { HealthManager } from '../health/manager.js';
import { healthTarget, targetKey, type HealthTarget } from '../health/types.js';
import type { Metrics } from '../observe/metrics.js';
import type { Logger } from '../observe/log.js';
import type { Startable } from './startable.js';

export interface BackendHealthOptions {
  log: Logger;
  metrics: Metrics;
  /** The config whose backends are checked from start(); setTargets() follows later ones. */
  config: SluiceConfig;
  onTrafficChange: () => void;
}

/** What the admin API shows of one backend's check. */
export interface HealthView {
  check: string;
  state: string;
  lastError: string | null;
  lastChange: string | null;
  lastCheck: string | null;
  latencyMs: number | null;
}

function targetOf(s: ServiceConfig, address: string): HealthTarget | null {
  return s.healthCheck ? healthTarget(address, s.port, s.healthCheck) : null;
}

export class BackendHealth implements Startable {
  readonly name = 'health checks';
  readonly #opts: BackendHealthOptions;
  readonly #manager: HealthManager;
  #config: SluiceConfig;

  constructor(opts: BackendHealthOptions) {
    this.#opts = opts;
    this.#config = opts.config;
    this.#manager = new HealthManager({
      onChange: (key, from, to, detail) => {
        // One check may serve several services (same backend, same check): each one's series moves.
        for (const service of this.#servicesOf(key)) opts.metrics.healthTransitions.inc({ service, backend: detail.target.address, to });
        // Recovery is good news (info); going down or unknown is what an operator must see (warn).
        opts.log[to === 'up' ? 'info' : 'warn'](
          { event: 'health_change', backend: detail.target.address, port: detail.target.port, check: detail.target.check.type, from, to, error: detail.error ?? null },
          `backend ${detail.target.address} is ${to}`,
        );
        if (detail.trafficChanged) opts.onTrafficChange();
      },
    });
  }

  start(): void {
    this.setTargets(this.#opts.config);
    this.#manager.start();
  }

  async stop(): Promise<void> {
    await this.#manager.stop();
    sharedIcmpEcho().close();
  }

  /** Check exactly the backends of `config` from now on. */
  setTargets(config: SluiceConfig): void {
    this.#config = config;
    const out: HealthTarget[] = [];
    for (const s of config.services) for (const b of s.backends) {
      const t = targetOf(s, b.address);
      if (t) out.push(t);
    }
    this.#manager.setTargets(out);
  }

  /** The services whose backend is checked under `key`. */
  #servicesOf(key: string): string[] {
    const out: string[] = [];
    for (const s of this.#config.services) {
      for (const b of s.backends) {
        const t = targetOf(s, b.address);
        if (t && targetKey(t) === key) {
          out.push(s.name);
          break;
        }
      }
    }
    return out;
  }

  /** A backend without a check always takes traffic; one with a check while its check says so. */
  healthy = (s: ServiceConfig, address: string): boolean => {
    const t = targetOf(s, address);
    return t === null || this.#manager.takesTraffic(t);
  };

  view(s: ServiceConfig, address: string): HealthView | null {
    const t = targetOf(s, address);
    if (!t) return null;
    const rec = this.#manager.recordOf(targetKey(t));
    return {
      check: t.check.type,
      state: rec?.state ?? 'unknown', lastError: rec?.lastError ?? null, lastChange: rec?.lastChangeAt ? new Date(rec.lastChangeAt).toISOString() : null,
      lastCheck: rec?.lastProbeAt ? new Date(rec.lastProbeAt).toISOString() : null,
      latencyMs: rec?.lastLatencyMs ?? null,
    };
  }
}
