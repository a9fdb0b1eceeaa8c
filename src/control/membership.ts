/**
 * Who is live: this instance plus every peer that sent a valid heartbeat less than failureMs
 * ago. Heartbeats go to every configured peer (up or down) every heartbeatMs and carry this
 * instance's table generation, backend-set hash and live view, so status can show which peers
 * run a different backend set or see a different cluster.
 *
 * Time is passed in (monotonic ms), never read here: the ControlPlane drives tick() from a
 * timer, tests drive it by hand.
 */
import { hashInstanceId } from '../hash/rendezvous.js';
import type { HeartbeatBody } from './codec.js';

export interface MembershipOptions {
  selfId: string;
  /** Configured peers (this instance's id, if present, is ignored). */
  peerIds: readonly string[];
  heartbeatMs: number;
  failureMs: number;
  /** Send a heartbeat to one peer. */
  sendHeartbeat: (peerId: string, body: HeartbeatBody) => void;
}

export interface PeerView {
  id: string;
  up: boolean;
  /** Monotonic ms of the last valid heartbeat, or undefined if none yet. */
  lastHeartbeatAt: number | undefined;
  /** Monotonic ms of the last up/down transition, or undefined if never up. */
  changedAt: number | undefined;
  generation: number | undefined;
  backendSetHash: bigint | undefined;
  incarnation: bigint | undefined;
  /** Sorted instance id hashes the peer reported as live. */
  liveView: readonly number[];
  /** Times the peer went from up to down. */
  downs: number;
  /** Times a new incarnation of the peer appeared (a restart). */
  restarts: number;
  /** Monotonic ms when a heartbeat last reported a backend set different from the peer's previous one, or undefined. */
  tableChangedAt: number | undefined;
}

export interface GenerationMismatch {
  id: string;
  generation: number;
  backendSetHash: bigint;
}

export type LiveListener = (live: readonly string[]) => void;
export type RestartListener = (peerId: string) => void;
/** A table (backend set) changed somewhere: here (peerId = selfId) or at a peer. */
export type TableChangeListener = (peerId: string) => void;

export class Membership {
  readonly selfId: string;
  readonly heartbeatMs: number;
  readonly failureMs: number;
  readonly #send: MembershipOptions['sendHeartbeat'];
  readonly #peers = new Map<string, PeerView>();
  readonly #liveListeners = new Set<LiveListener>();
  readonly #restartListeners = new Set<RestartListener>();
  readonly #tableListeners = new Set<TableChangeListener>();
  /** Monotonic ms of the latest table change seen anywhere (here or at a peer), or undefined. */
  #tableChangedAt: number | undefined;
  #live: string[];
  #liveHashes: Uint32Array;
  #generation = 0;
  #backendSetHash = 0n;
  #nextHeartbeatAt = -Infinity;

  constructor(opts: MembershipOptions) {
    if (!(opts.failureMs > 2 * opts.heartbeatMs)) {
      throw new RangeError(`failureMs ${opts.failureMs} must be more than 2 x heartbeatMs ${opts.heartbeatMs}`);
    }
    this.selfId = opts.selfId;
    this.heartbeatMs = opts.heartbeatMs;
    this.failureMs = opts.failureMs;
    this.#send = opts.sendHeartbeat;
    for (const id of opts.peerIds) {
      if (id === opts.selfId || this.#peers.has(id)) continue;
      this.#peers.set(id, {
        id,
        up: false,
        lastHeartbeatAt: undefined,
        changedAt: undefined,
        generation: undefined,
        backendSetHash: undefined,
        incarnation: undefined,
        liveView: [],
        downs: 0,
        restarts: 0,
        tableChangedAt: undefined,
      });
    }
    this.#live = [this.selfId];
    this.#liveHashes = Uint32Array.of(hashInstanceId(this.selfId));
  }

  /** Sorted ids of the live instances, this one included. */
  live(): readonly string[] {
    return this.#live;
  }

  /** hashInstanceId of live()[i], for rendezvous hashing. */
  liveHashes(): Uint32Array {
    return this.#liveHashes;
  }

  isUp(peerId: string): boolean {
    return peerId === this.selfId || this.#peers.get(peerId)?.up === true;
  }

  onChange(cb: LiveListener): () => void {
    this.#liveListeners.add(cb);
    return () => this.#liveListeners.delete(cb);
  }

  /** A known peer came back with a new incarnation (it restarted and lost its state). */
  onRestart(cb: RestartListener): () => void {
    this.#restartListeners.add(cb);
    return () => this.#restartListeners.delete(cb);
  }

  /** A table changed here or at a peer (see tableChangedAt). */
  onTableChange(cb: TableChangeListener): () => void {
    this.#tableListeners.add(cb);
    return () => this.#tableListeners.delete(cb);
  }

  /**
   * Monotonic ms of the latest table change seen in the cluster, or undefined if none yet. A
   * change is a new backend set (the serving backends and their weights: what the Maglev table
   * is built from), here (setLocal, except its first call: a starting instance pins no flow) or
   * at a peer (a heartbeat whose backend set differs from that peer's previous one). A new
   * generation with the same backend set moves no flow and is no change; neither is a peer's
   * first heartbeat, nor one from a peer that has no table yet (generation 0), nor a restart
   * that comes back on the same set.
   */
  get tableChangedAt(): number | undefined {
    return this.#tableChangedAt;
  }

  /** This instance's table generation and backend-set hash, reported in heartbeats; `now` (monotonic ms) dates a change. */
  setLocal(generation: number, backendSetHash: bigint, now?: number): void {
    // Generation 0 is "no table yet": the first table (at start) sets the backend set, it does not change it.
    const changed = this.#generation !== 0 && generation !== 0 && backendSetHash !== this.#backendSetHash;
    this.#generation = generation;
    this.#backendSetHash = backendSetHash;
    if (changed && now !== undefined) this.#tableChanged(this.selfId, now);
  }

  #tableChanged(peerId: string, now: number): void {
    if (this.#tableChangedAt === undefined || now > this.#tableChangedAt) this.#tableChangedAt = now;
    for (const cb of this.#tableListeners) cb(peerId);
  }

  get generation(): number {
    return this.#generation;
  }

  get backendSetHash(): bigint {
    return this.#backendSetHash;
  }

  /** Make the next tick() send heartbeats whatever the time (e.g. after a generation change). */
  heartbeatSoon(): void {
    this.#nextHeartbeatAt = -Infinity;
  }

  /** Send heartbeats if due and mark peers down whose last heartbeat is failureMs old. */
  tick(now: number): void {
    let changed = false;
    for (const p of this.#peers.values()) {
      if (p.up && p.lastHeartbeatAt !== undefined && now - p.lastHeartbeatAt >= this.failureMs) {
        p.up = false;
        p.changedAt = now;
        p.downs++;
        changed = true;
      }
    }
    if (changed) this.#recompute();
    if (now >= this.#nextHeartbeatAt) {
      this.#nextHeartbeatAt = now + this.heartbeatMs;
      const body = this.heartbeatBody();
      for (const id of this.#peers.keys()) this.#send(id, body);
    }
  }

  /** The body this instance sends now. */
  heartbeatBody(): HeartbeatBody {
    return { generation: this.#generation, backendSetHash: this.#backendSetHash, live: Array.from(this.#liveHashes).sort((a, b) => a - b) };
  }

  /** An authenticated heartbeat arrived from a configured peer. */
  onHeartbeat(peerId: string, incarnation: bigint, body: HeartbeatBody, now: number): void {
    const p = this.#peers.get(peerId);
    if (p === undefined) return;
    const restarted = p.incarnation !== undefined && p.incarnation !== incarnation;
    const tableChanged =
      p.generation !== undefined && p.generation !== 0 && body.generation !== 0 && p.backendSetHash !== undefined && p.backendSetHash !== body.backendSetHash;
    p.incarnation = incarnation;
    p.lastHeartbeatAt = now;
    p.generation = body.generation;
    p.backendSetHash = body.backendSetHash;
    p.liveView = body.live.slice().sort((a, b) => a - b);
    if (restarted) p.restarts++;
    if (tableChanged) {
      p.tableChangedAt = now;
      this.#tableChanged(peerId, now);
    }
    if (!p.up) {
      p.up = true;
      p.changedAt = now;
      this.#recompute();
    } else if (restarted) {
      for (const cb of this.#restartListeners) cb(peerId);
    }
  }

  /** Peers whose last reported backend-set hash differs from this instance's (up peers only). */
  generationMismatch(): GenerationMismatch[] {
    const out: GenerationMismatch[] = [];
    for (const p of this.#peers.values()) {
      if (p.up && p.backendSetHash !== undefined && p.backendSetHash !== this.#backendSetHash) {
        out.push({ id: p.id, generation: p.generation ?? 0, backendSetHash: p.backendSetHash });
      }
    }
    return out;
  }

  /** True if the peer's reported live view equals this instance's. */
  sameView(peerId: string): boolean {
    const p = this.#peers.get(peerId);
    if (p === undefined || !p.up) return false;
    const mine = Array.from(this.#liveHashes).sort((a, b) => a - b);
    return mine.length === p.liveView.length && mine.every((h, i) => h === p.liveView[i]);
  }

  peers(): readonly PeerView[] {
    return [...this.#peers.values()];
  }

  #recompute(): void {
    const live = [this.selfId];
    for (const p of this.#peers.values()) if (p.up) live.push(p.id);
    live.sort();
    this.#live = live;
    this.#liveHashes = Uint32Array.from(live, hashInstanceId);
    for (const cb of this.#liveListeners) cb(live);
  }
}
