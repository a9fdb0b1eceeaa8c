/**
 * BGP announcement of the VIPs as a part of the control process: it feeds the Announcer
 * (announce/announcer.ts) the three facts that decide each VIP (data plane up, serving backends
 * per VIP, instance drained) from the supervisor and the generations, and answers the admin
 * API's instance drain/undrain. It is the last part started, so on stop it is the first to go:
 * the routes are withdrawn before anything else stops forwarding.
 */
import { Announcer, type AnnounceStatus } from '../announce/announcer.js';
import { registerAnnounceMetrics } from '../announce/metrics.js';
import { servingByVip } from '../announce/serving.js';
import { createSpeaker } from '../announce/speakers.js';
import type { AnnounceConfig } from '../announce/config.js';
import type { InstanceResult } from '../observe/admin-api.js';
import type { Logger } from '../observe/log.js';
import type { Metrics } from '../observe/metrics.js';
import type { Generations } from './generations.js';
import { StartupError } from './startup-error.js';
import type { DataplaneSupervisor } from './supervisor.js';

export interface VipAnnouncementOptions {
  log: Logger;
  metrics: Metrics;
  announce: AnnounceConfig;
  adminSocket: string;
  generations: Generations;
  supervisor: DataplaneSupervisor;
  /**
   * Resolves when this instance may take traffic as far as its cluster is concerned (it has heard
   * its peers and received the flow entries they hand a newcomer: owner-bridge.ts joined()).
   * Until then the data plane counts as not up for announcing. Absent: no wait.
   */
  joined?: Promise<void>;
}

export class VipAnnouncement {
  readonly name = 'VIP announcement (BGP)';
  readonly #o: VipAnnouncementOptions;
  readonly #announcer: Announcer;
  #running = false;
  #joined: boolean;

  constructor(o: VipAnnouncementOptions) {
    this.#joined = o.joined === undefined;
    o.joined?.then(() => {
      this.#joined = true;
      if (this.#running) this.#announcer.setDataPlane(this.#o.supervisor.info.up);
    });
    this.#o = o;
    const speaker = createSpeaker(o.announce, o.adminSocket, (line) => o.log.info({ event: 'speaker_log', line }, 'bgp speaker'));
    this.#announcer = new Announcer({ speaker, log: o.log });
    // Listeners are registered once; they act only while this part runs.
    o.supervisor.onReady(() => this.#running && this.#joined && this.#announcer.setDataPlane(true));
    o.supervisor.onExit(() => this.#running && this.#announcer.setDataPlane(false));
    o.generations.onApplied(() => this.#running && this.#refreshServing());
  }

  async start(): Promise<void> {
    // The speaker starts with every VIP withdrawn; the facts below announce what may be.
    await this.#announcer.start().catch((e: Error) => {
      throw new StartupError(`announce: cannot start the BGP speaker: ${e.message}`);
    });
    registerAnnounceMetrics(this.#o.metrics.registry, this.#announcer);
    this.#running = true;
    this.#refreshServing();
    this.#announcer.setDataPlane(this.#joined && this.#o.supervisor.info.up);
  }

  async stop(): Promise<void> {
    this.#running = false;
    await this.#announcer.stop();
  }

  status(): Promise<AnnounceStatus> {
    return this.#announcer.status();
  }

  /** Withdraw (drain) or re-announce (undrain) this instance's VIPs; forwarding continues either way. */
  async operate(action: 'drain' | 'undrain'): Promise<InstanceResult> {
    if (action === 'drain') this.#announcer.drain();
    else this.#announcer.undrain();
    await this.#announcer.settled();
    this.#o.log.warn({ event: `instance_${action}` }, `instance ${action}ed`);
    const what = action === 'drain' ? 'withdrawn' : 'announced where they have a serving backend';
    return { ok: true, message: `instance ${action}ed: VIPs ${what}`, announce: await this.#announcer.status() };
  }

  #refreshServing(): void {
    const g = this.#o.generations;
    this.#announcer.setServing(servingByVip({ services: g.config.services, spec: g.spec }));
  }
}
