/**
 * The control process's end of the data-plane process. At start it looks for a data plane already
 * capturing on the interface (contract/handover.ts: the abstract socket "@sluice/dataplane/<if>"):
 *   - one of the same build: ADOPT it. The running generation's ids are kept (Generations.adopt),
 *     the current generation is sent as a normal generation request; no second capture, no flow
 *     lost, its counters go on;
 *   - one of another build (an upgrade) or contract: REPLACE it. It is told to hand over (it stops
 *     capturing and writing the flow table, and exits), then a new one attaches to the same table
 *     file and rebuilds its MPTCP token index;
 *   - none: start a new one, in a session of its own (it outlives this process) with a new table.
 * Then it restarts the data plane with backoff when it dies (attaching to the table it left), and
 * is the only place that writes to or reads from the channel. Requests go through one
 * RequestTracker; unasked messages (counters, owner traffic) go to whoever subscribed with onNotice().
 *
 * stop(): a clean stop of Sluice stops the data plane too and removes the table file. After
 * release() (a hitless restart: `sluice restart`, SIGUSR2) stop() only closes the channel and the
 * data plane forwards on until the next control process adopts it. With SLUICE_HANDOVER=off there
 * is no adoption, no shared table, and release() changes nothing (the old behaviour, for tests).
 * The message flow is drawn in src/dataplane/contract/messages.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { createConnection } from 'node:net';
import { fileURLToPath } from 'node:url';
import type { DataplaneInit } from '../dataplane/contract/spec.js';
import type { DataplaneNotice, FromDataplane, ReplyOf, RequestBody, RequestType, ToDataplane } from '../dataplane/contract/messages.js';
import { CONTRACT_VERSION, MAX_WORKERS, buildIdentity, dataplaneSocketName, initSettings, handoverEnabled, workerFlowTablePath, type DataplaneHello, type DataplaneIds } from '../dataplane/contract/handover.js';
import { SocketChannel } from '../dataplane/contract/socket-channel.js';
import { RequestTracker } from '../dataplane/contract/request.js';
import type { Metrics } from '../observe/metrics.js';
import type { Logger } from '../observe/log.js';
import type { Startable } from './startable.js';
import { StartupError } from './startup-error.js';

/**
 * V8 flags of the data-plane process. A young generation capped at 1 MiB per semi-space (V8 grows
 * it up to 16 MiB by default): the packet path allocates nothing, so the cap only makes the rare
 * control-side scavenges smaller, and it kept about 8 MB out of an idle data plane's resident memory (README, flow table, "Idle memory").
 */
export const DATAPLANE_V8_FLAGS: readonly string[] = ['--max-semi-space-size=1'];

const WORKER_PATH = fileURLToPath(new URL('../dataplane/worker.js', import.meta.url));
/** init -> ready: opening the capture handle and applying the first generation. */
const START_TIMEOUT_MS = 15_000;
/** shutdown -> exit, after which the process is killed. */
/** How often a request made while the data plane is starting checks whether it has connected. */
const STARTING_POLL_MS = 20;
const STOP_GRACE_MS = 3_000;
/** Restart delay: 100 ms doubling per restart, at most this. */
const RESTART_MAX_DELAY_MS = 5_000;
/** A scrape waits at most this long for the fresh snapshot it asked for. */
const FRESH_COUNTERS_WAIT_MS = 50;
/** Connecting to a data plane that may exist, and its hello (a busy packet loop answers late). */
const PROBE_TIMEOUT_MS = 5_000;
/** handover -> handed-over and exit. */
const HANDOVER_TIMEOUT_MS = 5_000;
/** After this many restarts in one control process, a restarted data plane starts with an empty table (the kept one may be what kills it). */
const ATTACH_RESTART_LIMIT = 3;

type Channel = SocketChannel<FromDataplane, ToDataplane>;
type NoticeType = DataplaneNotice['type'];
type NoticeHandler<K extends NoticeType> = (m: Extract<DataplaneNotice, { type: K }>) => void;

export interface SupervisorOptions {
  log: Logger;
  metrics: Metrics;
  /** What to start (or restart) the data plane with: the current generation. */
  init: () => DataplaneInit;
  /** A running data plane's ids: make the current generation number services and backends as it does. */
  adoptIds: (ids: DataplaneIds) => void;
  /** Capture interface (names the data plane's socket). */
  interface: string;
  /** The flow table's file (handover.ts flowTablePath). */
  flowTablePath: string;
  /** Abstract-name prefix; tests use their own. */
  socketPrefix?: string;
}

/** How the running data plane came to be. */
export type DataplaneOrigin = 'started' | 'adopted' | 'replaced';

/** The data-plane process as the admin API shows it. */
export interface DataplaneInfo {
  engine: string;
  up: boolean;
  pid: number | null;
  restarts: number;
  /** started: by this control process; adopted: found running (same build); replaced: found running another build, its flow table taken over. */
  origin: DataplaneOrigin;
  /** Flows kept from the previous data plane when this one started or was adopted. */
  keptFlows: number;
}

/** A message the next waiter takes: true when it consumed it. */
type Waiter = (m: FromDataplane) => boolean;

export class DataplaneSupervisor implements Startable {
  readonly name = 'data-plane process';
  readonly #opts: SupervisorOptions;
  readonly #socketName: string;
  readonly #handover: boolean;
  readonly #requests = new RequestTracker();
  readonly #readyListeners: (() => void)[] = [];
  readonly #exitListeners: (() => void)[] = [];
  readonly #notices = new Map<NoticeType, (m: DataplaneNotice) => void>();
  readonly #waiters: Waiter[] = [];
  #channel: Channel | null = null;
  #pid: number | null = null;
  #child: ChildProcess | null = null;
  #engine = '';
  #origin: DataplaneOrigin = 'started';
  #keptFlows = 0;
  #restarts = 0;
  #restartTimer: NodeJS.Timeout | null = null;
  #stopping = false;
  #releasing = false;
  /** Another control process took the data plane over: losing the channel is not a crash. */
  #superseded = false;
  /** The control process's ids match the table's (it ran or adopted the data plane that wrote it). */
  #idsMatchTable = false;

  constructor(opts: SupervisorOptions) {
    this.#opts = opts;
    this.#socketName = dataplaneSocketName(opts.interface, opts.socketPrefix);
    this.#handover = handoverEnabled();
    this.onNotice('counters', (m) => opts.metrics.setSnapshot(m.counters, m.workers));
  }

  /** A data-plane process is spawned and alive but has not connected yet. */
  #starting(): boolean {
    return this.#channel === null && this.#child !== null && this.#child.exitCode === null && this.#child.signalCode === null && !this.#stopping;
  }

  get info(): DataplaneInfo {
    // Up while a data-plane process exists: from its spawn (as a fork was, before), or while adopted.
    const starting = this.#starting();
    const pid = this.#channel !== null ? this.#pid : starting ? (this.#child?.pid ?? null) : this.#pid;
    return { engine: this.#engine, up: this.#channel !== null || starting, pid, restarts: this.#restarts, origin: this.#origin, keptFlows: this.#keptFlows };
  }

  /** Called each time a data-plane process is ready (first start, adoption and every restart). */
  onReady(fn: () => void): void {
    this.#readyListeners.push(fn);
  }

  /** Called each time the channel to the data plane is lost (crash, kill or stop). */
  onExit(fn: () => void): void {
    this.#exitListeners.push(fn);
  }

  /** The one handler of an unasked message type. */
  onNotice<K extends NoticeType>(type: K, fn: NoticeHandler<K>): void {
    this.#notices.set(type, fn as (m: DataplaneNotice) => void);
  }

  start(): Promise<void> {
    return this.#connectOrStart();
  }

  /** The next stop() leaves the data plane forwarding for the next control process (hitless restart). */
  release(): void {
    this.#releasing = true;
  }

  async stop(): Promise<void> {
    this.#stopping = true;
    if (this.#restartTimer) clearTimeout(this.#restartTimer);
    const ch = this.#channel;
    if (!ch) return;
    if (this.#releasing && this.#handover) {
      this.#opts.log.info({ event: 'dataplane_released', pid: this.#pid }, 'leaving the data plane forwarding for the next control process');
      ch.end();
      return;
    }
    await this.#shutdown(ch, this.#pid);
    this.#removeTable();
  }

  /** Fire and forget; false if there is no process to send to. */
  send(msg: ToDataplane): boolean {
    return this.#channel?.send(msg) ?? false;
  }

  /** A request with its answer (timeouts: REQUEST_TIMEOUT_MS in messages.ts). */
  async request<K extends RequestType>(body: RequestBody<K>): Promise<ReplyOf[K]> {
    // The admin API answers before a data plane that is starting has connected (status shows it
    // up from its spawn). A fork's IPC channel queued what was sent meanwhile; the socket cannot,
    // so a request waits here, bounded, until the data plane is connected or gone. Without this, a
    // drain right after start failed with "the data-plane process is not running".
    for (const end = Date.now() + START_TIMEOUT_MS; this.#starting() && Date.now() < end; ) await new Promise((r) => setTimeout(r, STARTING_POLL_MS));
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

  async #connectOrStart(): Promise<void> {
    const { log } = this.#opts;
    const found = await this.#probe();
    if (!found) return this.#startNew(this.#handover && this.#idsMatchTable && this.#restarts < ATTACH_RESTART_LIMIT);
    const { channel, hello } = found;
    if (!this.#handover || hello.engine === null || (hello.interface !== null && hello.interface !== this.#opts.interface)) {
      // Handover off, or a data plane that never started: stop it and begin anew.
      log.warn({ event: 'dataplane_stopping_found', pid: hello.pid, handover: this.#handover }, 'stopping the data plane found running');
      await this.#shutdown(channel, hello.pid);
      return this.#startNew(false);
    }
    this.#opts.adoptIds(hello.ids);
    this.#idsMatchTable = true;
    const sameSettings = hello.settings === initSettings(this.#opts.init());
    if (hello.contract === CONTRACT_VERSION && hello.build === buildIdentity() && sameSettings) return this.#adopt(channel, hello);
    const why = !sameSettings && hello.build === buildIdentity() ? 'its start-only settings (capture, interfaces, table sizes, timeouts) differ from the config' : 'it is another build';
    log.info({ event: 'dataplane_replacing', pid: hello.pid, build: hello.build, ours: buildIdentity(), flows: hello.flows, why }, `replacing the running data plane (${why}): taking over its flow table`);
    // The new process starts (Node, the addon) while the old one still forwards; it takes the
    // socket name, the table and the capture only after the old one has let go of them.
    const child = this.#spawn();
    await this.#loaded(child, START_TIMEOUT_MS);
    const t0 = Date.now();
    const handedOver = await this.#handOver(channel, hello.pid);
    await this.#initNew(child, handedOver, 'replaced');
    // No capture between the two: what TCP retransmits across (the kernel drops those frames).
    log.info({ event: 'dataplane_replaced', pid: this.#pid, previousPid: hello.pid, gapMs: Date.now() - t0 }, `replaced the data plane; ${Date.now() - t0} ms without capture`);
  }

  /** A data plane listening on our socket name, after its hello; null when none answers. */
  async #probe(): Promise<{ channel: Channel; hello: DataplaneHello } | null> {
    const socket = createConnection({ path: `\0${this.#socketName}` });
    const connected = await new Promise<boolean>((resolve) => {
      const t = setTimeout(() => resolve(false), PROBE_TIMEOUT_MS);
      socket.once('connect', () => {
        clearTimeout(t);
        resolve(true);
      });
      socket.once('error', () => {
        clearTimeout(t);
        resolve(false);
      });
    });
    if (!connected) {
      socket.destroy();
      return null;
    }
    const channel: Channel = new SocketChannel(socket);
    this.#listen(channel);
    const hello = await this.#await<DataplaneHello>(channel, PROBE_TIMEOUT_MS, (m) => (m.type === 'hello' ? m : null), () => channel.send({ type: 'hello', contract: CONTRACT_VERSION }));
    if (!hello) {
      channel.destroy('no hello');
      // Someone holds the name but does not answer: a second data plane would capture beside it.
      throw new StartupError(`a data plane listens on @${this.#socketName} but did not answer within ${PROBE_TIMEOUT_MS} ms; stop it (its pid: ss -xlp | grep ${this.#socketName})`);
    }
    return { channel, hello };
  }

  async #adopt(channel: Channel, hello: DataplaneHello): Promise<void> {
    const { log, metrics } = this.#opts;
    this.#origin = 'adopted';
    this.#use(channel, hello.pid, hello.engine ?? '');
    this.#keptFlows = hello.flows;
    const reply = await this.request({ type: 'generation', spec: this.#opts.init().spec });
    if (reply.type === 'apply-failed') throw new StartupError(`the running data plane (pid ${hello.pid}) refused the current generation: ${reply.message}`);
    metrics.dataplaneUp.set(1);
    log.info({ event: 'dataplane_adopted', pid: hello.pid, engine: hello.engine, flows: hello.flows, previousGeneration: hello.generation }, 'adopted the running data plane');
    for (const fn of this.#readyListeners) fn();
  }

  /** Tell a data plane to hand its table over and wait until it is gone; false if it did not say it handed over. */
  async #handOver(channel: Channel, pid: number): Promise<boolean> {
    const done = await this.#await(channel, HANDOVER_TIMEOUT_MS, (m) => (m.type === 'handed-over' ? m : null), () => channel.send({ type: 'handover' }));
    await this.#gone(pid, HANDOVER_TIMEOUT_MS);
    if (!done) this.#opts.log.error({ event: 'dataplane_handover_failed', pid }, 'the old data plane did not hand over; starting with an empty flow table');
    return done !== null;
  }

  #startNew(attach: boolean): Promise<void> {
    const child = this.#spawn();
    void this.#loaded(child, START_TIMEOUT_MS);
    return this.#initNew(child, attach, 'started');
  }

  #spawn(): ChildProcess {
    // DATAPLANE_V8_FLAGS first: a flag the operator gave node (process.execArgv) comes later and wins.
    const child = spawn(process.execPath, [...DATAPLANE_V8_FLAGS, ...process.execArgv, WORKER_PATH, '--listen', this.#socketName, '--loaded-fd', '3'], {
      // A session of its own: the control process's death, its terminal or its process group do not end forwarding.
      detached: true,
      // fd 3: the worker says when its code is loaded, then closes it (nothing else ties the two processes).
      stdio: ['ignore', 'inherit', 'inherit', 'pipe'],
    });
    this.#child = child;
    child.unref();
    return child;
  }

  /** Resolves once the child has loaded its code (or closed fd 3, or exited), at most after timeoutMs. */
  #loaded(child: ChildProcess, timeoutMs: number): Promise<void> {
    const pipe = child.stdio[3];
    if (!pipe) return Promise.resolve();
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        pipe.destroy();
        resolve();
      };
      const t = setTimeout(done, timeoutMs);
      pipe.once('data', done);
      pipe.once('close', done);
      pipe.once('error', done);
      child.once('exit', done);
    });
  }

  /** Connect to a data plane just spawned, init it (attaching to the table or not), wait until it is ready. */
  async #initNew(child: ChildProcess, attach: boolean, origin: DataplaneOrigin): Promise<void> {
    const { log, metrics } = this.#opts;
    const startedAt = Date.now();
    const exitedEarly = new Promise<string>((resolve) => child.once('exit', (code, signal) => resolve(`code ${code}, signal ${signal}`)));
    const deadline = Date.now() + START_TIMEOUT_MS;
    let channel: Channel | null = null;
    while (!channel) {
      if (child.exitCode !== null || child.signalCode !== null) throw new StartupError(`the data-plane process exited during start (${await exitedEarly})`);
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new StartupError(`the data-plane process did not start within ${START_TIMEOUT_MS} ms`);
      }
      channel = await this.#connect();
      if (channel) {
        // Only our own child: a predecessor may still hold the name for a moment.
        this.#listen(channel);
        const c: Channel = channel;
        const hello = await this.#await(c, PROBE_TIMEOUT_MS, (m) => (m.type === 'hello' ? m : null), () => c.send({ type: 'hello', contract: CONTRACT_VERSION }));
        if (hello?.pid !== child.pid) {
          c.destroy('not the data plane just started');
          channel = null;
        }
      }
      if (!channel) await new Promise((r) => setTimeout(r, 20));
    }
    const init: DataplaneInit = { ...this.#opts.init(), flowTable: this.#handover ? { path: this.#opts.flowTablePath, attach } : undefined, outliveControl: this.#handover };
    const answer = await this.#await(channel, Math.max(1, deadline - Date.now()), (m) => (m.type === 'ready' || m.type === 'fatal' ? m : null), () => channel.send({ type: 'init', init }));
    if (!answer || answer.type !== 'ready') {
      child.kill('SIGKILL');
      channel.destroy('start failed');
      throw new StartupError(answer ? `the data plane could not start: ${answer.message}` : `the data-plane process did not start within ${START_TIMEOUT_MS} ms`);
    }
    this.#origin = origin;
    this.#use(channel, child.pid ?? null, answer.engine);
    log.info({ event: 'dataplane_started', pid: child.pid, engine: answer.engine, ms: Date.now() - startedAt, attached: answer.flowTable.attached }, 'data-plane process ready');
    this.#idsMatchTable = this.#handover;
    this.#keptFlows = answer.flowTable.flows;
    metrics.dataplaneUp.set(1);
    const t = answer.flowTable;
    if (t.attached) log.info({ event: 'flow_table_attached', flows: t.flows, tokens: t.tokens }, `kept ${t.flows} flows and ${t.tokens} MPTCP tokens from the previous data plane`);
    else if (t.note.startsWith('refused')) log.error({ event: 'flow_table_refused', note: t.note }, 'the kept flow table was refused; starting with an empty one');
    for (const fn of this.#readyListeners) fn();
  }

  /** One connection attempt to the socket name; null if nobody listens (yet). */
  #connect(): Promise<Channel | null> {
    return new Promise((resolve) => {
      const socket = createConnection({ path: `\0${this.#socketName}` });
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        resolve(new SocketChannel(socket));
      });
      socket.once('error', () => {
        socket.destroy();
        resolve(null);
      });
    });
  }

  /** Route a channel's messages: waiters first (handshakes), then answers, then notices. */
  #listen(channel: Channel): void {
    channel.onMessage((m) => {
      for (let i = 0; i < this.#waiters.length; i++) {
        if (this.#waiters[i](m)) return;
      }
      if (channel !== this.#channel) return;
      if (m.type === 'superseded') {
        // Two control processes for one data plane (the instance claim should prevent it): the newer one wins, this one stops driving it.
        this.#superseded = true;
        this.#opts.log.error({ event: 'dataplane_superseded', by: m.by }, `another control process (pid ${m.by}) took over the data plane; not reconnecting`);
        return;
      }
      if ('requestId' in m) {
        if (!this.#requests.settle(m)) this.#opts.log.debug({ event: 'dataplane_late_answer', type: m.type }, 'an answer nobody waits for any more');
      } else if (m.type === 'counters' || m.type === 'owner-query' || m.type === 'owner-entries') {
        this.#notices.get(m.type)?.(m);
      }
    });
  }

  /** Send with `kick`, then wait for the first message `pick` accepts; null on timeout or a closed channel. */
  #await<T>(channel: Channel, timeoutMs: number, pick: (m: FromDataplane) => T | null, kick: () => void): Promise<T | null> {
    return new Promise((resolve) => {
      let done = false;
      const finish = (v: T | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        clearInterval(closed);
        const i = this.#waiters.indexOf(waiter);
        if (i >= 0) this.#waiters.splice(i, 1);
        resolve(v);
      };
      const waiter: Waiter = (m) => {
        const v = pick(m);
        if (v === null) return false;
        finish(v);
        return true;
      };
      const timer = setTimeout(() => finish(null), timeoutMs);
      const closed = setInterval(() => {
        if (!channel.open) finish(null);
      }, 20);
      this.#waiters.push(waiter);
      kick();
    });
  }

  /** Make `channel` the data plane's: its loss is a crash to restart from. */
  #use(channel: Channel, pid: number | null, engine: string): void {
    this.#channel = channel;
    this.#pid = pid;
    this.#engine = engine;
    channel.onClose((reason) => this.#lost(channel, reason));
  }

  #lost(channel: Channel, reason: string): void {
    if (this.#channel !== channel) return;
    const { metrics } = this.#opts;
    this.#channel = null;
    metrics.dataplaneUp.set(0);
    for (const fn of this.#exitListeners) fn();
    this.#requests.failAll('the data-plane process exited');
    if (this.#stopping || this.#superseded) return;
    this.#scheduleRestart(reason);
  }

  #scheduleRestart(reason: string): void {
    const { log, metrics } = this.#opts;
    this.#restarts++;
    metrics.dataplaneRestarts.inc();
    const delay = Math.min(RESTART_MAX_DELAY_MS, 100 * 2 ** Math.min(this.#restarts, 6));
    log.error({ event: 'dataplane_died', pid: this.#pid, reason, restartInMs: delay }, 'lost the data-plane process; restarting it with the current generation');
    this.#restartTimer = setTimeout(() => {
      this.#restartTimer = null;
      if (this.#stopping) return;
      this.#connectOrStart().then(
        () => log.info({ event: 'dataplane_restarted', engine: this.#engine, pid: this.#pid, keptFlows: this.#keptFlows }, 'data-plane process restarted'),
        (e: Error) => {
          log.error({ event: 'dataplane_restart_failed', error: e.message }, 'data-plane restart failed');
          if (!this.#channel && !this.#stopping) this.#scheduleRestart(e.message);
        },
      );
    }, delay);
  }

  /** shutdown, then wait for the process to go; SIGKILL after STOP_GRACE_MS. */
  async #shutdown(channel: Channel, pid: number | null): Promise<void> {
    channel.send({ type: 'shutdown' });
    if (pid === null) return;
    if (!(await this.#gone(pid, STOP_GRACE_MS))) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone meanwhile
      }
      await this.#gone(pid, STOP_GRACE_MS);
    }
    channel.destroy('stopped');
  }

  /** Wait until `pid` no longer exists (our own child: until it is reaped). */
  async #gone(pid: number, timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    const child = this.#child?.pid === pid ? this.#child : null;
    for (;;) {
      const alive = child ? child.exitCode === null && child.signalCode === null : processExists(pid);
      if (!alive) return true;
      if (Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  #removeTable(): void {
    // A clean stop: the next start begins with an empty table (a restart keeps it: release()).
    try {
      // Worker 0's file, and those of the other packet workers (dataplane.workers) beside it.
      for (let i = 0; i < MAX_WORKERS; i++) {
        const path = workerFlowTablePath(this.#opts.flowTablePath, i);
        if (existsSync(path)) unlinkSync(path);
      }
    } catch (e) {
      this.#opts.log.warn({ event: 'flow_table_remove_failed', error: (e as Error).message }, 'could not remove the flow table file');
    }
  }
}

/** The process runs (a zombie, exited but not yet reaped by whoever inherited it, does not). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
