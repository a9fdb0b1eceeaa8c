/**
 * The control process's end of the data-plane process: forks src/dataplane/worker.ts, waits for
 * it to start, restarts it with backoff when it dies (with the generation current then), and is
 * the only place that writes to or reads from the pipe. Requests go through one RequestTracker;
 * unasked messages (counters, owner traffic) go to whoever subscribed with onNotice().
 * The message flow is drawn in src/dataplane/contract/messages.ts.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { DataplaneInit } from '../dataplane/contract/spec.js';
import type { DataplaneNotice, FromDataplane, ReplyOf, RequestBody, RequestType, ToDataplane } from '../dataplane/contract/messages.js';
import { RequestTracker } from '../dataplane/contract/request.js';
import type { Metrics } from '../observe/metrics.js';
import type { Logger } from '../observe/log.js';
import type { Startable } from './startable.js';
import { StartupError } from './startup-error.js';

const WORKER_PATH = fileURLToPath(new URL('../dataplane/worker.js', import.meta.url));
/** init -> ready: opening the capture handle and applying the first generation. */
const START_TIMEOUT_MS = 15_000;
/** shutdown -> exit, after which the process is killed. */
const STOP_GRACE_MS = 3_000;
/** Restart delay: 100 ms doubling per restart, at most this. */
const RESTART_MAX_DELAY_MS = 5_000;
/** A scrape waits at most this long for the fresh snapshot it asked for. */
const FRESH_COUNTERS_WAIT_MS = 50;

type NoticeType = DataplaneNotice['type'];
type NoticeHandler<K extends NoticeType> = (m: Extract<DataplaneNotice, { type: K }>) => void;

export interface SupervisorOptions {
  log: Logger;
  metrics: Metrics;
  /** What to start (or restart) the data plane with: the current generation. */
  init: () => DataplaneInit;
}

/** The data-plane process as the admin API shows it. */
export interface DataplaneInfo {
  engine: string;
  up: boolean;
  pid: number | null;
  restarts: number;
}

export class DataplaneSupervisor implements Startable {
  readonly name = 'data-plane process';
  readonly #opts: SupervisorOptions;
  readonly #requests = new RequestTracker();
  readonly #readyListeners: (() => void)[] = [];
  readonly #exitListeners: (() => void)[] = [];
  readonly #notices = new Map<NoticeType, (m: DataplaneNotice) => void>();
  #worker: ChildProcess | null = null;
  #engine = '';
  #restarts = 0;
  #restartTimer: NodeJS.Timeout | null = null;
  #stopping = false;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.onNotice('counters', (m) => opts.metrics.setSnapshot(m.counters));
  }

  get info(): DataplaneInfo {
    return { engine: this.#engine, up: this.#worker !== null, pid: this.#worker?.pid ?? null, restarts: this.#restarts };
  }

  /** Called each time a data-plane process is ready (first start and every restart). */
  onReady(fn: () => void): void {
    this.#readyListeners.push(fn);
  }

  /** Called each time a data-plane process exits (crash, kill or stop). */
  onExit(fn: () => void): void {
    this.#exitListeners.push(fn);
  }

  /** The one handler of an unasked message type. */
  onNotice<K extends NoticeType>(type: K, fn: NoticeHandler<K>): void {
    this.#notices.set(type, fn as (m: DataplaneNotice) => void);
  }

  start(): Promise<void> {
    return this.#fork();
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    const worker = this.#worker;
    if (!worker) return;
    const exited = new Promise<void>((r) => worker.once('exit', () => r()));
    this.send({ type: 'shutdown' });
    const killer = setTimeout(() => worker.kill('SIGKILL'), STOP_GRACE_MS);
    await exited;
    clearTimeout(killer);
  }

  /** Fire and forget; false if there is no process to send to. */
  send(msg: ToDataplane): boolean {
    if (!this.#worker || !this.#worker.connected) return false;
    this.#worker.send(msg);
    return true;
  }

  /** A request with its answer (timeouts: REQUEST_TIMEOUT_MS in messages.ts). */
  request<K extends RequestType>(body: RequestBody<K>): Promise<ReplyOf[K]> {
    return this.#requests.request(body, (m) => this.send(m));
  }

  /** Ask for a fresh counter snapshot and wait for it briefly, so a scrape right after traffic is exact. */
  async freshCounters(): Promise<Float64Array> {
    const metrics = this.#opts.metrics;
    const before = metrics.snapshot;
    if (!this.send({ type: 'publish' })) return before;
    const deadline = Date.now() + FRESH_COUNTERS_WAIT_MS;
    while (metrics.snapshot === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 2));
    return metrics.snapshot;
  }

  #fork(): Promise<void> {
    const { log, metrics } = this.#opts;
    const worker = fork(WORKER_PATH, [], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    this.#worker = worker;
    return new Promise((resolve, reject) => {
      let started = false;
      const timer = setTimeout(() => {
        worker.kill('SIGKILL');
        reject(new StartupError(`the data-plane process did not start within ${START_TIMEOUT_MS} ms`));
      }, START_TIMEOUT_MS);
      worker.on('message', (m: FromDataplane) => {
        if (m.type === 'ready') {
          started = true;
          clearTimeout(timer);
          this.#engine = m.engine;
          metrics.dataplaneUp.set(1);
          for (const fn of this.#readyListeners) fn();
          resolve();
        } else if (m.type === 'fatal') {
          clearTimeout(timer);
          reject(new StartupError(`the data plane could not start: ${m.message}`));
        } else if ('requestId' in m) {
          if (!this.#requests.settle(m)) log.debug({ event: 'dataplane_late_answer', type: m.type }, 'an answer nobody waits for any more');
        } else {
          this.#notices.get(m.type)?.(m);
        }
      });
      worker.on('exit', (code, signal) => {
        clearTimeout(timer);
        metrics.dataplaneUp.set(0);
        if (this.#worker === worker) this.#worker = null;
        for (const fn of this.#exitListeners) fn();
        this.#requests.failAll('the data-plane process exited');
        if (!started) {
          reject(new StartupError(`the data-plane process exited during start (code ${code}, signal ${signal})`));
          return;
        }
        if (!this.#stopping) this.#restartLater(code, signal);
      });
      worker.send({ type: 'init', init: this.#opts.init() } satisfies ToDataplane);
    });
  }

  #restartLater(code: number | null, signal: string | null): void {
    const { log, metrics } = this.#opts;
    this.#restarts++;
    metrics.dataplaneRestarts.inc();
    const delay = Math.min(RESTART_MAX_DELAY_MS, 100 * 2 ** Math.min(this.#restarts, 6));
    log.error({ event: 'dataplane_died', code, signal, restartInMs: delay }, 'data-plane process died; restarting with the current generation');
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopping) return;
      this.#fork().then(
        () => log.info({ event: 'dataplane_restarted', engine: this.#engine }, 'data-plane process restarted'),
        (e: Error) => log.error({ event: 'dataplane_restart_failed', error: e.message }, 'data-plane restart failed'),
      );
    }, delay);
  }
}
