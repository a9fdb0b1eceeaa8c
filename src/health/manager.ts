/**
 * Runs the health checks of every backend: one schedule and one state per distinct check
 * (targetKey), however many services share it; bounded probe concurrency; a callback on every
 * state change. The daemon calls setTargets() on each config generation and rebuilds the table
 * generation when a change moves a backend in or out of traffic.
 */
import { probe as defaultProbe, type ProbeFn } from './probes.js';
import { initialRecord, step, takesTraffic, type HealthRecord, type HealthState } from './state.js';
import { targetKey, type HealthTarget, type ProbeResult } from './types.js';

export const DEFAULT_MAX_IN_FLIGHT = 64;

export interface HealthChangeDetail {
  target: HealthTarget;
  /** The record after the probe that caused the change. */
  record: HealthRecord;
  /** The failing probe's error when going down; null when going up. */
  error: string | null;
  /** Whether the backend moved in or out of traffic (unknown -> up does not). */
  trafficChanged: boolean;
  at: number;
}

export type HealthChangeListener = (key: string, from: HealthState, to: HealthState, detail: HealthChangeDetail) => void;

export interface HealthManagerOptions {
  onChange?: HealthChangeListener;
  /** Most probes running at once; the rest wait in FIFO order (counted as deferred). */
  maxInFlight?: number;
  /** State of a target when first seen. Default 'unknown' (takes traffic; see state.ts). */
  initialState?: HealthState;
  /** The probe to run; default probes.ts. Tests inject fakes. */
  probe?: ProbeFn;
  /** Clock for record times; default Date.now. */
  now?: () => number;
  /** Told when onChange throws (the manager carries on). */
  onListenerError?: (error: unknown, key: string) => void;
}

export interface TargetStatus {
  key: string;
  address: string;
  port: number;
  type: HealthTarget['check']['type'];
  state: HealthState;
  takesTraffic: boolean;
  /** How many times the current target list names this check (services sharing it). */
  refs: number;
  probing: boolean;
  probes: number;
  failures: number;
  consecutiveOk: number;
  consecutiveFail: number;
  lastResult: 'ok' | 'fail' | null;
  lastError: string | null;
  lastLatencyMs: number | null;
  lastProbeAt: number | null;
  lastChangeAt: number | null;
  transitionsToUp: number;
  transitionsToDown: number;
}

export interface HealthStatus {
  running: boolean;
  maxInFlight: number;
  inFlight: number;
  /** Targets due now but waiting for a probe slot. */
  waiting: number;
  /** Times a due probe had to wait for a slot, since creation. */
  deferred: number;
  probesStarted: number;
  listenerErrors: number;
  targets: TargetStatus[];
}

interface Entry {
  readonly key: string;
  target: HealthTarget;
  refs: number;
  record: HealthRecord;
  timer: NodeJS.Timeout | null;
  controller: AbortController | null;
  waiting: boolean;
  removed: boolean;
}

/** FNV-1a 32-bit: a stable spread of targets over the interval, the same on every run. */
function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Delay of a target's first probe: a deterministic phase in [0, intervalMs) from its key. */
export function probePhase(key: string, intervalMs: number): number {
  return fnv1a(key) % Math.max(1, intervalMs);
}

export class HealthManager {
  readonly #entries = new Map<string, Entry>();
  readonly #inFlightProbes = new Set<Promise<void>>();
  #waitQueue: Entry[] = [];
  #running = false;
  #inFlight = 0;
  #deferred = 0;
  #probesStarted = 0;
  #listenerErrors = 0;
  readonly #maxInFlight: number;
  readonly #initialState: HealthState;
  readonly #probe: ProbeFn;
  readonly #now: () => number;
  readonly #onChange: HealthChangeListener | undefined;
  readonly #onListenerError: ((error: unknown, key: string) => void) | undefined;

  constructor(options: HealthManagerOptions = {}) {
    const max = options.maxInFlight ?? DEFAULT_MAX_IN_FLIGHT;
    if (!Number.isInteger(max) || max < 1) throw new RangeError(`HealthManager maxInFlight must be an integer >= 1 (got ${max})`);
    this.#maxInFlight = max;
    this.#initialState = options.initialState ?? 'unknown';
    this.#probe = options.probe ?? defaultProbe;
    this.#now = options.now ?? Date.now;
    this.#onChange = options.onChange;
    this.#onListenerError = options.onListenerError;
  }

  get running(): boolean {
    return this.#running;
  }

  /** Begin probing every target (first probes spread over one interval). Idempotent. */
  start(): void {
    if (this.#running) return;
    this.#running = true;
    for (const e of this.#entries.values()) this.#schedule(e, probePhase(e.key, e.target.check.intervalMs));
  }

  /**
   * Stop probing: timers cleared, waiting probes dropped, running probes aborted (their results
   * are ignored). Resolves once every aborted probe has released its socket. Targets and their
   * states are kept; start() resumes.
   */
  async stop(): Promise<void> {
    this.#running = false;
    for (const e of this.#entries.values()) {
      this.#clearTimer(e);
      e.waiting = false;
      e.controller?.abort();
      // Its completion is ignored (aborted); a later start() must not wait for it.
      e.controller = null;
    }
    this.#waitQueue = [];
    await Promise.all([...this.#inFlightProbes]);
  }

  /**
   * Replace the target list (call on every config generation). Targets whose key stays keep
   * their state and schedule; new ones start in the initial state; missing ones stop at once
   * (a running probe is aborted and its result ignored). Duplicates share one entry.
   */
  setTargets(targets: readonly HealthTarget[]): void {
    const wanted = new Map<string, { target: HealthTarget; refs: number }>();
    for (const t of targets) {
      const key = targetKey(t);
      const w = wanted.get(key);
      if (w) w.refs++;
      else wanted.set(key, { target: t, refs: 1 });
    }
    let removedAny = false;
    for (const [key, e] of this.#entries) {
      if (wanted.has(key)) continue;
      e.removed = true;
      this.#clearTimer(e);
      e.controller?.abort();
      this.#entries.delete(key);
      removedAny = true;
    }
    if (removedAny) this.#waitQueue = this.#waitQueue.filter((e) => !e.removed);
    const at = this.#now();
    for (const [key, w] of wanted) {
      const have = this.#entries.get(key);
      if (have) {
        have.target = w.target;
        have.refs = w.refs;
        continue;
      }
      const e: Entry = { key, target: w.target, refs: w.refs, record: initialRecord(at, this.#initialState), timer: null, controller: null, waiting: false, removed: false };
      this.#entries.set(key, e);
      if (this.#running) this.#schedule(e, probePhase(key, w.target.check.intervalMs));
    }
  }

  /** State of the check with this key, or undefined when no target has it. */
  stateOf(key: string): HealthState | undefined {
    return this.#entries.get(key)?.record.state;
  }

  /** Full record of the check with this key. */
  recordOf(key: string): HealthRecord | undefined {
    return this.#entries.get(key)?.record;
  }

  /**
   * Whether the backend this target checks may take new flows: false only when its check is
   * 'down'. A target not (yet) registered counts as taking traffic, like a new one.
   */
  takesTraffic(target: HealthTarget): boolean {
    const state = this.stateOf(targetKey(target));
    return state === undefined || takesTraffic(state);
  }

  status(): HealthStatus {
    const targets: TargetStatus[] = [];
    for (const e of this.#entries.values()) {
      const r = e.record;
      targets.push({
        key: e.key,
        address: e.target.address,
        port: e.target.port,
        type: e.target.check.type,
        state: r.state,
        takesTraffic: takesTraffic(r.state),
        refs: e.refs,
        probing: e.controller !== null,
        probes: r.probes,
        failures: r.failures,
        consecutiveOk: r.consecutiveOk,
        consecutiveFail: r.consecutiveFail,
        lastResult: r.lastResult,
        lastError: r.lastError,
        lastLatencyMs: r.lastLatencyMs,
        lastProbeAt: r.lastProbeAt,
        lastChangeAt: r.lastChangeAt,
        transitionsToUp: r.transitionsToUp,
        transitionsToDown: r.transitionsToDown,
      });
    }
    targets.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    return {
      running: this.#running,
      maxInFlight: this.#maxInFlight,
      inFlight: this.#inFlight,
      waiting: this.#waitQueue.length,
      deferred: this.#deferred,
      probesStarted: this.#probesStarted,
      listenerErrors: this.#listenerErrors,
      targets,
    };
  }

  #clearTimer(e: Entry): void {
    if (e.timer) clearTimeout(e.timer);
    e.timer = null;
  }

  #schedule(e: Entry, delayMs: number): void {
    this.#clearTimer(e);
    e.timer = setTimeout(() => {
      e.timer = null;
      this.#due(e);
    }, Math.max(0, delayMs));
    // Health checks alone never keep the process alive.
    e.timer.unref();
  }

  #due(e: Entry): void {
    if (!this.#running || e.removed || e.controller || e.waiting) return;
    if (this.#inFlight >= this.#maxInFlight) {
      e.waiting = true;
      this.#waitQueue.push(e);
      this.#deferred++;
      return;
    }
    this.#launch(e);
  }

  #launch(e: Entry): void {
    const controller = new AbortController();
    e.controller = controller;
    this.#inFlight++;
    this.#probesStarted++;
    const startedAt = this.#now();
    const target = e.target;
    let run: Promise<ProbeResult>;
    try {
      run = this.#probe(target, controller.signal);
    } catch (err) {
      run = Promise.resolve({ ok: false, error: err instanceof Error ? err.message : String(err), latencyMs: 0 });
    }
    const done = run
      .catch((err: unknown): ProbeResult => ({ ok: false, error: err instanceof Error ? err.message : String(err), latencyMs: 0 }))
      .then((result) => this.#complete(e, controller, startedAt, result));
    this.#inFlightProbes.add(done);
    void done.finally(() => this.#inFlightProbes.delete(done));
  }

  #complete(e: Entry, controller: AbortController, startedAt: number, result: ProbeResult): void {
    this.#inFlight--;
    if (e.controller === controller) e.controller = null;
    if (this.#running && !e.removed && !controller.signal.aborted) {
      const at = this.#now();
      const prev = e.record;
      const next = step(prev, result, at, e.target.check);
      e.record = next;
      if (next.state !== prev.state) this.#notify(e, prev.state, next, at);
      // Starts stay at least one interval apart; timeoutMs < intervalMs keeps this positive.
      if (this.#running && !e.removed) this.#schedule(e, startedAt + e.target.check.intervalMs - this.#now());
    }
    this.#pump();
  }

  #notify(e: Entry, from: HealthState, record: HealthRecord, at: number): void {
    if (!this.#onChange) return;
    const detail: HealthChangeDetail = {
      target: e.target,
      record,
      error: record.lastResult === 'fail' ? record.lastError : null,
      trafficChanged: takesTraffic(from) !== takesTraffic(record.state),
      at,
    };
    try {
      this.#onChange(e.key, from, record.state, detail);
    } catch (err) {
      this.#listenerErrors++;
      this.#onListenerError?.(err, e.key);
    }
  }

  /** Start waiting probes while slots are free. */
  #pump(): void {
    while (this.#running && this.#inFlight < this.#maxInFlight && this.#waitQueue.length > 0) {
      const e = this.#waitQueue.shift() as Entry;
      e.waiting = false;
      if (!e.removed && !e.controller) this.#launch(e);
    }
  }
}
