/**
 * Decides, per VIP, whether this instance announces it, and keeps the speaker in step.
 *
 * A VIP is announced while all three hold: the data plane is up, at least one service on the VIP
 * has a serving backend (after health checks, drains and weights), and the instance is not
 * drained. It is withdrawn as soon as any stops. The routers handle what Sluice cannot say
 * itself: an instance that dies takes its speaker with it (sessions close), and a lost host is
 * dropped by BFD or the hold timer.
 *
 * The daemon feeds it facts (setDataPlane, setServing, drain/undrain); every change recomputes
 * the wanted state and hands it to the speaker, one apply at a time, the latest state winning.
 * A failed apply is retried; a speaker that dies is restarted with backoff.
 */
import type { Speaker, PeerSession } from './speaker.js';

export type VipVerdict = 'announced' | 'dataplane-down' | 'no-serving-backend' | 'drained';

/** Why a VIP is (not) announced, from the three facts. Withdrawal reasons in order of precedence. */
export function vipVerdict(facts: { dataPlaneUp: boolean; drained: boolean; servingBackends: number }): VipVerdict {
  if (!facts.dataPlaneUp) return 'dataplane-down';
  if (facts.drained) return 'drained';
  if (facts.servingBackends < 1) return 'no-serving-backend';
  return 'announced';
}

export interface AnnouncerLog {
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface AnnouncerOptions {
  speaker: Speaker;
  log: AnnouncerLog;
  /** Wait before retrying a failed apply. Default 1000 ms. */
  retryMs?: number;
  /** Longest wait before restarting a dead speaker (backoff doubles from retryMs). Default 30 s. */
  maxRestartMs?: number;
}

export interface VipStatus {
  vip: string;
  servingBackends: number;
  verdict: VipVerdict;
  /** What the speaker was last told successfully. */
  announced: boolean;
}

export interface AnnounceStatus {
  speaker: string;
  speakerUp: boolean;
  dataPlaneUp: boolean;
  drained: boolean;
  vips: VipStatus[];
  sessions: PeerSession[];
  lastError: string | null;
}

export class Announcer {
  readonly #speaker: Speaker;
  readonly #log: AnnouncerLog;
  readonly #retryMs: number;
  readonly #maxRestartMs: number;
  #dataPlaneUp = false;
  #drained = false;
  #serving = new Map<string, number>();
  /** VIPs the speaker has confirmed as announced. */
  #applied = new Set<string>();
  #speakerUp = false;
  #running = false;
  #busy = false;
  #dirty = false;
  #retry: NodeJS.Timeout | null = null;
  #restartTimer: NodeJS.Timeout | null = null;
  #restarts = 0;
  #lastError: string | null = null;
  #idle: (() => void)[] = [];

  constructor(o: AnnouncerOptions) {
    this.#speaker = o.speaker;
    this.#log = o.log;
    this.#retryMs = o.retryMs ?? 1000;
    this.#maxRestartMs = o.maxRestartMs ?? 30_000;
    this.#speaker.onExit((reason) => this.#onSpeakerExit(reason));
  }

  /** Start the speaker with nothing announced; rejects if it cannot start (a startup error). */
  async start(): Promise<void> {
    await this.#speaker.start();
    this.#running = true;
    this.#speakerUp = true;
    this.#log.info({ event: 'announce_started', speaker: this.#speaker.kind }, `BGP speaker ${this.#speaker.kind} started; VIPs withdrawn until the data plane is up`);
    this.#kick();
  }

  /** Withdraw everything and stop the speaker (its sessions end, routers withdraw at once). */
  async stop(): Promise<void> {
    this.#running = false;
    if (this.#retry) clearTimeout(this.#retry);
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    this.#retry = null;
    this.#restartTimer = null;
    await this.settled();
    await this.#speaker.stop();
    this.#speakerUp = false;
    this.#applied.clear();
  }

  setDataPlane(up: boolean): void {
    if (this.#dataPlaneUp === up) return;
    this.#dataPlaneUp = up;
    this.#kick();
  }

  /** Every VIP of the current config with the number of serving backends over its services. */
  setServing(servingByVip: ReadonlyMap<string, number>): void {
    this.#serving = new Map(servingByVip);
    this.#kick();
  }

  /** Withdraw every VIP of this instance (maintenance); forwarding continues for flows that still arrive. */
  drain(): void {
    this.#drained = true;
    this.#kick();
  }

  undrain(): void {
    this.#drained = false;
    this.#kick();
  }

  get drained(): boolean {
    return this.#drained;
  }

  /** Times the speaker died while running (each followed by a restart attempt). */
  get speakerRestarts(): number {
    return this.#restarts;
  }

  /** The VIPs that should be announced now. */
  wanted(): Set<string> {
    const out = new Set<string>();
    for (const [vip, n] of this.#serving) if (this.#verdict(vip, n) === 'announced') out.add(vip);
    return out;
  }

  /** Resolves when no apply is running or pending (retries after a failure do not count). */
  settled(): Promise<void> {
    if (!this.#busy) return Promise.resolve();
    return new Promise((r) => this.#idle.push(r));
  }

  /** Each VIP of the config: serving backends, verdict, and what the speaker was last told. */
  vips(): VipStatus[] {
    return [...this.#serving].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([vip, n]) => ({ vip, servingBackends: n, verdict: this.#verdict(vip, n), announced: this.#applied.has(vip) }));
  }

  async status(): Promise<AnnounceStatus> {
    let sessions: PeerSession[] = [];
    try {
      sessions = await this.#speaker.sessions();
    } catch (e) {
      this.#lastError = (e as Error).message;
    }
    return {
      speaker: this.#speaker.kind,
      speakerUp: this.#speakerUp,
      dataPlaneUp: this.#dataPlaneUp,
      drained: this.#drained,
      vips: this.vips(),
      sessions,
      lastError: this.#lastError,
    };
  }

  #verdict(_vip: string, serving: number): VipVerdict {
    return vipVerdict({ dataPlaneUp: this.#dataPlaneUp, drained: this.#drained, servingBackends: serving });
  }

  /** Something changed: apply now, or right after the apply in progress. */
  #kick(): void {
    if (!this.#running || !this.#speakerUp) return;
    if (this.#busy) {
      this.#dirty = true;
      return;
    }
    this.#busy = true;
    void this.#loop();
  }

  async #loop(): Promise<void> {
    do {
      this.#dirty = false;
      const known = [...this.#serving.keys()];
      const want = this.wanted();
      try {
        await this.#speaker.apply(known, want);
        this.#logChanges(want);
        this.#applied = want;
        this.#lastError = null;
      } catch (e) {
        this.#lastError = (e as Error).message;
        this.#log.error({ event: 'announce_failed', error: this.#lastError, retryInMs: this.#retryMs }, 'could not update the BGP speaker; retrying');
        if (this.#running && !this.#retry) {
          this.#retry = setTimeout(() => {
            this.#retry = null;
            this.#kick();
          }, this.#retryMs);
        }
        break;
      }
    } while (this.#dirty && this.#running && this.#speakerUp);
    this.#busy = false;
    for (const r of this.#idle.splice(0)) r();
  }

  #logChanges(want: ReadonlySet<string>): void {
    for (const vip of want) if (!this.#applied.has(vip)) this.#log.info({ event: 'vip_announced', vip }, `announcing ${vip}`);
    for (const vip of this.#applied) {
      if (want.has(vip)) continue;
      const reason = this.#serving.has(vip) ? this.#verdict(vip, this.#serving.get(vip) ?? 0) : 'removed-from-config';
      this.#log.warn({ event: 'vip_withdrawn', vip, reason }, `withdrawing ${vip}: ${reason}`);
    }
  }

  #onSpeakerExit(reason: string): void {
    this.#speakerUp = false;
    this.#applied.clear();
    if (!this.#running) return;
    this.#restarts++;
    const delay = Math.min(this.#maxRestartMs, this.#retryMs * 2 ** Math.min(this.#restarts - 1, 10));
    this.#lastError = reason;
    this.#log.error({ event: 'speaker_died', speaker: this.#speaker.kind, reason, restartInMs: delay }, 'BGP speaker died; its routes are withdrawn by the routers; restarting');
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (!this.#running) return;
      this.#speaker.start().then(
        () => {
          this.#speakerUp = true;
          this.#log.info({ event: 'speaker_restarted', speaker: this.#speaker.kind }, 'BGP speaker restarted');
          this.#kick();
        },
        (e: Error) => this.#onSpeakerExit(e.message),
      );
    }, delay);
  }
}
