/**
 * ControlPlane: the control-plane library behind one facade. It owns one UDP socket
 * (transport.ts), the peer membership (membership.ts), the flow state this instance holds as
 * owner or replica (owner-store.ts) and the owner sync (sync.ts). See docs/DESIGN.md, "Several
 * instances: authoritative flow owners".
 *
 * What the daemon calls, and when:
 *   new ControlPlane({ cluster, key: loadClusterKey(cluster) }); await cp.start()   at startup
 *   cp.setGeneration(g, backendSetHash(...))     whenever a table generation is applied
 *   cp.publish(entries)                          after a generation change: every live flow whose
 *                                                backend differs from what the new table picks,
 *                                                and every MPTCP token; again (refresh) while those
 *                                                flows live, well within ttlMs; ttlMs 0 when one ends
 *   await cp.query(kind, key)                    on a miss for a non-SYN packet, an MP_JOIN SYN, or
 *                                                a UDP packet while changeRecentMs() > 0, while the
 *                                                data plane holds its packets; null means
 *                                                "use the table"
 *   cp.changeRecentMs(lifetimeMs)                how long flows pinned off the table's pick may
 *                                                still exist (0 in steady state)
 *   cp.status(), cp.counters                     admin API and metrics
 *   await cp.stop()                              at shutdown (pending queries resolve null)
 */
import { formatIssue } from '../config/issues.js';
import { parseHostPort, type ClusterConfig } from './cluster-config.js';
import { kindOfKey, writeHeartbeatBody, type BackendIdentity, type EntryKind, type MessageTypeName, type RejectReason, type SyncEntry } from './codec.js';
import { Membership } from './membership.js';
import { DEFAULT_STORE_CAPACITY, OwnerStore, type StoredEntry } from './owner-store.js';
import { DEFAULT_REPLICAS, OwnerSync, type PublishResult, type QueryLatency, type QueryOptions, type SyncCounters } from './sync.js';
import { Transport, type TransportCounters } from './transport.js';

export type { ClusterConfig, ClusterPeer, ClusterConfigResult } from './cluster-config.js';
export { validateClusterConfig, loadClusterKey, clusterKeyIssues, parseHostPort, CLUSTER_DEFAULTS } from './cluster-config.js';
export type { BackendIdentity, EntryKind, SyncEntry, RejectReason, MessageTypeName } from './codec.js';
export { backendSetHash, tokenKey, kindOfKey, REJECT_REASONS, MESSAGE_TYPES } from './codec.js';
export type { PublishResult, QueryLatency, QueryOptions } from './sync.js';
export { QUERY_LATENCY_BUCKETS_MS, OWNER_KEY_SEED, ownersOf } from './sync.js';
export type { StoredEntry } from './owner-store.js';

export interface ControlClock {
  /** Wall clock, ms since the epoch: message timestamps and the skew check. */
  wallMs(): number;
  /** Monotonic ms: heartbeat ages, expiry, query latency. */
  monoMs(): number;
}

export interface ControlLimits {
  /** Entries held as owner/replica. */
  storeCapacity: number;
  /** Datagram buffers per peer (priority messages beyond it are dropped and counted). */
  sendQueueDatagrams: number;
  /** PUBLISH datagrams per peer per event-loop turn. */
  sendBurstPerTurn: number;
  /** Queries waiting for answers; more resolve null at once (counted). */
  maxOutstandingQueries: number;
  /** Entry copies queued for peers; more are dropped (counted). */
  maxPendingPublish: number;
  /** Anti-replay window, sequence numbers (power of two). */
  replayWindow: number;
  /** Accepted |message timestamp - local wall clock|. */
  clockSkewMs: number;
  /** SO_RCVBUF asked for (the kernel caps it at net.core.rmem_max). */
  recvBufferBytes: number;
  /** How often expired entries are swept, and how many entries one sweep examines. */
  sweepIntervalMs: number;
  sweepBudget: number;
  /**
   * Instances that hold each entry (owner first): 2 by default. The daemon asks for every
   * instance (up to 8): then an entry for a flow pinned off the table's pick is on every
   * instance before ECMP moves the flow, and its query is answered from the local store, with
   * no peer round trip to wait for on a busy machine.
   */
  replicas: number;
}

export const DEFAULT_LIMITS: Readonly<ControlLimits> = {
  storeCapacity: DEFAULT_STORE_CAPACITY,
  sendQueueDatagrams: 1024,
  sendBurstPerTurn: 64,
  maxOutstandingQueries: 1024,
  maxPendingPublish: 1 << 20,
  replayWindow: 1024,
  clockSkewMs: 5000,
  recvBufferBytes: 4 << 20,
  sweepIntervalMs: 1000,
  sweepBudget: 16384,
  replicas: DEFAULT_REPLICAS,
};

export interface ControlPlaneOptions {
  /** A validated cluster section (validateClusterConfig). */
  cluster: ClusterConfig;
  /** The cluster key (loadClusterKey), >= 32 bytes. */
  key: Uint8Array;
  clock?: Partial<ControlClock>;
  limits?: Partial<ControlLimits>;
  /** Fixed incarnation (tests); random per start otherwise. */
  incarnation?: bigint;
  /** Socket errors after start (also counted as sendErrors). */
  onError?: (err: Error) => void;
}

export interface PeerStatus {
  id: string;
  address: string;
  up: boolean;
  /** ms since the last valid heartbeat, or null if none yet. */
  lastHeartbeatAgeMs: number | null;
  generation: number | null;
  /** 16 hex digits, or null if no heartbeat yet. */
  backendSetHash: string | null;
  /** The peer's backend-set hash differs from this instance's. */
  generationMismatch: boolean;
  /** The peer reports the same live set as this instance. */
  sameView: boolean;
  downs: number;
  restarts: number;
  inFlight: number;
  queueDrops: number;
}

/** Everything the transport and the owner sync count, plus membership and store figures. */
export type ControlCounters = TransportCounters &
  Omit<SyncCounters, 'latency'> & {
    peersUp: number;
    /** Entries held as owner or replica now (gauge). */
    entriesOwned: number;
    storeInserts: number;
    storeEvictions: number;
    storeExpirations: number;
    queryLatency: QueryLatency;
  };

export interface ControlPlaneStatus {
  instanceId: string;
  /** 16 hex digits. */
  incarnation: string;
  started: boolean;
  /** Bound "address:port", or the configured listen address before start. */
  listen: string;
  generation: number;
  backendSetHash: string;
  live: string[];
  peers: PeerStatus[];
  /** Up peers whose backend set differs from this instance's. */
  generationMismatch: string[];
  store: { entries: number; capacity: number };
  outstandingQueries: number;
  pendingPublish: number;
  counters: ControlCounters;
}

const hex64 = (v: bigint): string => v.toString(16).padStart(16, '0');
/** The longest a caller may wait for one query (the data plane's second ask after a silence). */
export const MAX_QUERY_WAIT_MS = 200;

export class ControlPlane {
  readonly instanceId: string;
  readonly #cluster: ClusterConfig;
  readonly #limits: ControlLimits;
  readonly #wall: () => number;
  readonly #mono: () => number;
  readonly #transport: Transport;
  readonly #membership: Membership;
  readonly #store: OwnerStore;
  readonly #sync: OwnerSync;
  readonly #peerAddress = new Map<string, string>();
  #tick: ReturnType<typeof setInterval> | undefined;
  #sweep: ReturnType<typeof setInterval> | undefined;
  #started = false;
  #stopped = false;

  constructor(opts: ControlPlaneOptions) {
    const cfg = opts.cluster;
    this.#cluster = cfg;
    this.instanceId = cfg.instanceId;
    this.#limits = { ...DEFAULT_LIMITS, ...opts.limits };
    this.#wall = opts.clock?.wallMs ?? Date.now;
    this.#mono = opts.clock?.monoMs ?? (() => performance.now());
    const listen = parseHostPort(cfg.listen);
    if (typeof listen === 'string') throw new Error(formatIssue({ path: '$.cluster.listen', rule: 'cluster', message: listen }));
    const peers = [];
    for (const [i, p] of cfg.peers.entries()) {
      if (p.id === cfg.instanceId) continue;
      const hp = parseHostPort(p.address);
      if (typeof hp === 'string') throw new Error(formatIssue({ path: `$.cluster.peers[${i}].address`, rule: 'cluster', message: hp }));
      peers.push({ id: p.id, host: hp.host, port: hp.port });
      this.#peerAddress.set(p.id, p.address);
    }
    this.#store = new OwnerStore(this.#limits.storeCapacity);
    this.#transport = new Transport({
      instanceId: cfg.instanceId,
      listenHost: listen.host,
      listenPort: listen.port,
      peers,
      key: opts.key,
      wallClock: this.#wall,
      incarnation: opts.incarnation,
      replayWindow: this.#limits.replayWindow,
      clockSkewMs: this.#limits.clockSkewMs,
      queueCapacity: this.#limits.sendQueueDatagrams,
      burstPerTurn: this.#limits.sendBurstPerTurn,
      recvBufferBytes: this.#limits.recvBufferBytes,
      onError: opts.onError,
      onMessage: (peerId, m) => {
        if (m.type === 'HEARTBEAT') this.#membership.onHeartbeat(peerId, m.header.incarnation, m.body, this.#mono());
        else this.#sync.handle(peerId, m);
      },
    });
    this.#membership = new Membership({
      selfId: cfg.instanceId,
      peerIds: peers.map((p) => p.id),
      heartbeatMs: cfg.heartbeatMs,
      failureMs: cfg.failureMs,
      sendHeartbeat: (peerId, body) => {
        this.#transport.send(peerId, 'HEARTBEAT', (out, off) => writeHeartbeatBody(out, off, body));
      },
    });
    this.#sync = new OwnerSync({
      selfId: cfg.instanceId,
      transport: this.#transport,
      store: this.#store,
      now: this.#mono,
      maxOutstandingQueries: this.#limits.maxOutstandingQueries,
      maxPendingPublish: this.#limits.maxPendingPublish,
      replicas: this.#limits.replicas,
    });
    this.#sync.setLive(this.#membership.live(), this.#membership.liveHashes());
    this.#membership.onChange((live) => this.#sync.setLive(live, this.#membership.liveHashes()));
    this.#membership.onRestart((peerId) => this.#sync.peerRestarted(peerId));
  }

  /** Bind the socket, send the first heartbeats, start the timers. Once per instance. */
  async start(): Promise<void> {
    if (this.#stopped) throw new Error('control plane: a stopped ControlPlane cannot start again; create a new one');
    if (this.#started) return;
    await this.#transport.start();
    this.#started = true;
    this.#membership.tick(this.#mono());
    const tickMs = Math.max(5, Math.floor(this.#cluster.heartbeatMs / 2));
    this.#tick = setInterval(() => this.#membership.tick(this.#mono()), tickMs);
    this.#sweep = setInterval(() => this.#store.sweep(this.#mono(), this.#limits.sweepBudget), this.#limits.sweepIntervalMs);
    this.#tick.unref();
    this.#sweep.unref();
  }

  /** Stop timers, resolve waiting queries with null, close the socket. */
  async stop(): Promise<void> {
    if (this.#tick !== undefined) clearInterval(this.#tick);
    if (this.#sweep !== undefined) clearInterval(this.#sweep);
    this.#tick = this.#sweep = undefined;
    this.#sync.stop();
    this.#started = false;
    this.#stopped = true;
    await this.#transport.stop();
  }

  /** The table generation now applied and its backend-set hash (codec.ts backendSetHash). */
  setGeneration(generation: number, backendSetHash: bigint): void {
    if (!Number.isSafeInteger(generation) || generation < 0) throw new RangeError(`generation ${generation}: expected a safe integer >= 0`);
    const changed = generation !== this.#membership.generation || backendSetHash !== this.#membership.backendSetHash;
    this.#membership.setLocal(generation, BigInt.asUintN(64, backendSetHash), this.#mono());
    if (changed && this.#started) {
      this.#membership.heartbeatSoon();
      this.#membership.tick(this.#mono());
    }
  }

  /** Send entries to their owners (storing those this instance owns). Returns at once. */
  publish(entries: Iterable<SyncEntry>): PublishResult {
    return this.#sync.publish(entries);
  }

  /**
   * The backend of record for a flow key or MPTCP token, asked of its owner and replica in
   * parallel; null if neither has it, on timeout (default cluster.queryTimeoutMs; at most MAX_QUERY_WAIT_MS),
   * or when too many queries are waiting. Never rejects. o.resendMs asks the silent owners
   * again before the timeout; o.onTimeout tells a timeout from a NOT FOUND.
   */
  query(kind: EntryKind, key: Uint8Array, timeoutMs?: number, o?: QueryOptions): Promise<BackendIdentity | null> {
    const t = timeoutMs === undefined ? this.#cluster.queryTimeoutMs : Math.min(MAX_QUERY_WAIT_MS, Math.max(1, Math.floor(timeoutMs)));
    return this.#sync.query(kind, key, t, o);
  }

  /**
   * How much longer (ms; 0: not) flows whose backend differs from the current table's pick may
   * still exist in the cluster, for entries that live lifetimeMs: lifetimeMs after the latest
   * table change seen anywhere (here or in a peer's heartbeat; membership.ts tableChangedAt), or
   * after the latest UDP flow entry stored here (such entries are refreshed while their flows live,
   * so this outlasts a change by as long as the flows it left behind, and tells a restarted
   * instance what it never saw). While it is > 0 a packet with no local state may belong to a
   * flow another instance pinned: the data plane asks its owner, UDP included.
   */
  changeRecentMs(lifetimeMs: number): number {
    let last = this.#membership.tableChangedAt ?? -Infinity;
    const put = this.#sync.lastUdpFlowEntryAt;
    if (put !== undefined && put > last) last = put;
    return Math.max(0, Math.ceil(last + lifetimeMs - this.#mono()));
  }

  /** Subscribe to table changes (here: peerId is this instance's id, or at a peer); returns the unsubscribe function. */
  onTableChange(cb: (peerId: string) => void): () => void {
    return this.#membership.onTableChange(cb);
  }

  /** Sorted ids of the live instances, this one included. */
  liveInstances(): string[] {
    return [...this.#membership.live()];
  }

  /** Owner then replica of a key (4-byte token, 13- or 37-byte flow key, 14- or 38-byte fragment key) in the current view. */
  owners(keyBytes: Uint8Array): string[] {
    if (kindOfKey(keyBytes) === undefined) throw new RangeError(`key of ${keyBytes.length} bytes: expected 4 (token), 13 or 37 (flow), 14 or 38 (fragment)`);
    return this.#sync.owners(keyBytes);
  }

  /** Subscribe to live-set changes; returns the unsubscribe function. */
  onLiveChange(cb: (live: readonly string[]) => void): () => void {
    return this.#membership.onChange(cb);
  }

  /** What this instance holds for a key, without asking anyone. */
  lookupLocal(kind: EntryKind, key: Uint8Array): StoredEntry | undefined {
    return this.#store.lookup(kind, key, this.#mono());
  }

  /** The entries held as owner/replica (for listings; not for hot paths). */
  storedEntries(): IterableIterator<StoredEntry> {
    return this.#store.values();
  }

  /** The bound socket address ("host:port"). */
  address(): { address: string; port: number } {
    return this.#transport.address();
  }

  get counters(): ControlCounters {
    const t = this.#transport.counters;
    const { latency, ...sync } = this.#sync.counters;
    const st = this.#store.counters;
    return {
      ...t,
      messagesIn: { ...t.messagesIn },
      messagesOut: { ...t.messagesOut },
      rejected: { ...t.rejected },
      ...sync,
      peersUp: this.#membership.live().length - 1,
      entriesOwned: this.#store.size,
      storeInserts: st.inserts,
      storeEvictions: st.evictions,
      storeExpirations: st.expirations,
      queryLatency: { bucketsMs: latency.bucketsMs, counts: [...latency.counts], sumMs: latency.sumMs, count: latency.count },
    };
  }

  status(): ControlPlaneStatus {
    const now = this.#mono();
    const mine = this.#membership.backendSetHash;
    const queues = new Map(this.#transport.peerQueues().map((q) => [q.id, q]));
    const peers: PeerStatus[] = this.#membership.peers().map((p) => ({
      id: p.id,
      address: this.#peerAddress.get(p.id) ?? '',
      up: p.up,
      lastHeartbeatAgeMs: p.lastHeartbeatAt === undefined ? null : Math.max(0, Math.round(now - p.lastHeartbeatAt)),
      generation: p.generation ?? null,
      backendSetHash: p.backendSetHash === undefined ? null : hex64(p.backendSetHash),
      generationMismatch: p.backendSetHash !== undefined && p.backendSetHash !== mine,
      sameView: this.#membership.sameView(p.id),
      downs: p.downs,
      restarts: p.restarts,
      inFlight: queues.get(p.id)?.inFlight ?? 0,
      queueDrops: queues.get(p.id)?.queueDrops ?? 0,
    }));
    let listen = this.#cluster.listen;
    if (this.#started) {
      const a = this.#transport.address();
      listen = a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    }
    return {
      instanceId: this.instanceId,
      incarnation: hex64(this.#transport.incarnation),
      started: this.#started,
      listen,
      generation: this.#membership.generation,
      backendSetHash: hex64(mine),
      live: this.liveInstances(),
      peers,
      generationMismatch: this.#membership.generationMismatch().map((m) => m.id),
      store: { entries: this.#store.size, capacity: this.#store.capacity },
      outstandingQueries: this.#sync.outstandingQueries,
      pendingPublish: this.#sync.pendingPublish,
      counters: this.counters,
    };
  }
}
