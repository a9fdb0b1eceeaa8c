/**
 * Owner sync: who holds a flow's state, sending it there, and asking for it.
 *
 * Ownership (sync-ownership.ts): the owners of a key are the top `replicas` live instances by
 * rendezvous hashing of the key over the sorted live set.
 *
 * publish(entries): each entry goes to its owners; the ones that are this instance are stored
 * at once, the others are queued per destination (bounded, counted; sync-publish.ts) and packed
 * into PUBLISH datagrams as the transport has buffers (transport.ts BulkSource).
 *
 * query(kind, key): this instance's own store first if it is an owner; then QUERY to the other
 * owners in parallel; the first FOUND answer wins; null when every asked owner answered NOT
 * FOUND, on timeout, or at once when maxOutstandingQueries are already waiting (counted).
 *
 * Queries for an entry that is on its way (the kinds in AWAIT_PUBLISH_MS: MPTCP tokens): a join's token is
 * published by the instance that saw the connection's third ACK at about the moment the client
 * sent the join, so the join's QUERY can reach an owner before the PUBLISH does. An owner that
 * lacks such an entry holds the QUERY (at most AWAIT_PUBLISH_MS, MAX_AWAITING of them) and answers
 * FOUND the moment the entry is stored, NOT FOUND when the wait ends; a querier that is itself an
 * owner is settled the same way by a PUBLISH that reaches it first. Asking again on NOT FOUND
 * could only poll: a publish slower than the polls lost the join's SYN (a 1 s retransmission).
 *
 * Receiving PUBLISH: entries are stored even when this instance is not one of their owners in
 * its current view (counted as storedNotOwner). During a view change the publisher's view and
 * ours can differ for a heartbeat or two; the querier's view then matches the publisher's more
 * often than ours, so dropping such entries would lose exactly the state the design exists to
 * keep. The store is bounded and entries expire, so keeping them costs little.
 *
 * View changes: entries this instance holds are handed to owners that are new in the view
 * (and to a peer that restarted while up, having lost its store), in slices per event-loop turn
 * (sync-handoff.ts).
 */
import { rendezvousOwners } from '../hash/rendezvous.js';
import {
  MAX_TTL_MS,
  checkEntry,
  validKeyLength,
  writeAnswerBody,
  writeQueryBody,
  type AnswerBody,
  type BackendIdentity,
  type ControlMessage,
  type EntryKind,
  type PublishBody,
  type QueryBody,
  type SyncEntry,
} from './codec.js';
import { storeKey, type OwnerStore } from './owner-store.js';
import { HandoffJobs, type HandoffHost } from './sync-handoff.js';
import {
  DEFAULT_HANDOFF_SLICE,
  DEFAULT_MAX_OUTSTANDING_QUERIES,
  DEFAULT_MAX_PENDING_PUBLISH,
  QUERY_LATENCY_BUCKETS_MS,
  defaultTimers,
  type PublishResult,
  type SyncCounters,
  type SyncOptions,
  type SyncTimers,
  type SyncTransport,
} from './sync-options.js';
import { DEFAULT_REPLICAS, ownerKeyHash, ownersOf } from './sync-ownership.js';
import { PublishQueues } from './sync-publish.js';
import type { BodyWriter } from './transport.js';

export { DEFAULT_REPLICAS, OWNER_KEY_SEED, ownerKeyHash, ownersOf } from './sync-ownership.js';
// Every name sync.ts exported before it was split stays importable from here.
export { DEFAULT_HANDOFF_SLICE, DEFAULT_MAX_OUTSTANDING_QUERIES, DEFAULT_MAX_PENDING_PUBLISH, MAX_HANDOFF_JOBS, QUERY_LATENCY_BUCKETS_MS } from './sync-options.js';
export type { PublishResult, QueryLatency, SyncCounters, SyncOptions, SyncTimers, SyncTransport } from './sync-options.js';

/** Timed-out queries remembered (oldest forgotten first) so that a FOUND answer arriving later is counted as lateFound and kept. */
const MAX_TIMED_OUT_REMEMBERED = 4096;
/** A live set unchanged this long (and the instance up as long) has every entry handed over: see #holdsEverything. */
const SETTLED_MS = 3000;
/** How long a late FOUND answer is kept in the store (for the data plane's second ask), at most. */
const LATE_ANSWER_KEEP_MS = 5000;
/**
 * Kinds whose entry another instance creates at about the moment it is first asked for, and how
 * long a query for one waits for its PUBLISH (below the data plane's hold of a join,
 * owner-hold.ts TOKEN_QUERY_DEADLINE_MS, less the IPC and network hops). Flows are published
 * when created, long before a moved packet asks; fragments poll within their own hold
 * (owner-bridge.ts).
 */
export const AWAIT_PUBLISH_MS: Readonly<Partial<Record<EntryKind, number>>> = { token: 100 };
/** Peer QUERYs held for an entry on its way, at most; beyond them NOT FOUND is answered at once (counted). */
export const MAX_AWAITING = 1024;

/** How one query waits: resendMs (below its timeout) sends the QUERY again to the owners still silent; onTimeout runs if nobody answered in time. */
export interface QueryOptions {
  resendMs?: number;
  onTimeout?: () => void;
}

interface PendingQuery {
  id: number;
  kind: EntryKind;
  key: Uint8Array;
  asked: string[];
  selfOwner: boolean;
  startedAt: number;
  timer: unknown;
  resend: unknown;
  /** storeKey of an awaited kind: a PUBLISH of this entry reaching this instance settles the query. */
  awaitKey: string | undefined;
  resolve: (b: BackendIdentity | null) => void;
}

/** A peer's QUERY for an entry not here yet, held until it is stored or the wait ends. */
interface AwaitingQuery {
  peerId: string;
  body: QueryBody;
  timer: unknown;
}

/** A flow key (hash/murmur3.ts copyFlowKey: addresses, ports, then the protocol byte) of a UDP flow. */
function isUdpFlow(kind: EntryKind, key: Uint8Array): boolean {
  return kind === 'flow' && key.length > 0 && key[key.length - 1] === 17;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

export class OwnerSync {
  readonly counters: SyncCounters;
  readonly selfId: string;
  readonly replicas: number;
  readonly #transport: SyncTransport;
  readonly #store: OwnerStore;
  readonly #now: () => number;
  readonly #timers: SyncTimers;
  readonly #maxOutstanding: number;
  readonly #awaitMs: Readonly<Partial<Record<EntryKind, number>>>;
  readonly #outstanding = new Map<number, PendingQuery>();
  /** Queries that timed out, by id, oldest first (at most MAX_TIMED_OUT_REMEMBERED): their late FOUND answers are counted and kept. */
  readonly #timedOut = new Map<number, { kind: EntryKind; key: Uint8Array }>();
  /** Peer QUERYs waiting for their entry, by storeKey (at most MAX_AWAITING in all). */
  readonly #awaitingPeers = new Map<string, AwaitingQuery[]>();
  #awaitingPeerCount = 0;
  /** This instance's own queries that a stored entry settles, by storeKey. */
  readonly #awaitingSelf = new Map<string, PendingQuery[]>();
  /** Monotonic ms of this instance's start or its last live-set change (settledMs). */
  #liveChangedAt: number;
  /** Monotonic ms of the last UDP flow entry stored here (from a peer or this instance), or undefined. */
  #lastUdpFlowEntryAt: number | undefined;
  readonly #queues: PublishQueues;
  readonly #handoff: HandoffJobs;
  readonly #ownerIdx: Int32Array;
  readonly #validBackends = new WeakSet<BackendIdentity>();
  #nextQueryId = 1;
  #liveIds: readonly string[];
  #liveHashes: Uint32Array;
  #stopped = false;

  constructor(opts: SyncOptions) {
    this.selfId = opts.selfId;
    this.replicas = opts.replicas ?? DEFAULT_REPLICAS;
    this.#transport = opts.transport;
    this.#store = opts.store;
    this.#now = opts.now;
    this.#timers = opts.timers ?? defaultTimers;
    this.#liveChangedAt = this.#now();
    this.#maxOutstanding = opts.maxOutstandingQueries ?? DEFAULT_MAX_OUTSTANDING_QUERIES;
    this.#awaitMs = opts.awaitPublishMs ?? AWAIT_PUBLISH_MS;
    if (!Number.isInteger(this.replicas) || this.replicas < 1 || this.replicas > 8) throw new RangeError(`replicas ${this.replicas}: must be 1..8`);
    this.#ownerIdx = new Int32Array(this.replicas);
    this.#liveIds = [opts.selfId];
    this.#liveHashes = new Uint32Array(0);
    this.counters = {
      publishEntries: 0,
      publishInvalid: 0,
      publishDropped: 0,
      publishLocal: 0,
      publishSent: 0,
      entriesReceived: 0,
      entriesWithdrawn: 0,
      storedNotOwner: 0,
      handoffEntries: 0,
      handoffJobsDropped: 0,
      queries: 0,
      localHits: 0,
      queriesSent: 0,
      hits: 0,
      misses: 0,
      timeouts: 0,
      settledMisses: 0,
      queryResends: 0,
      lateFound: 0,
      queryOverflow: 0,
      queryFailed: 0,
      unmatchedAnswers: 0,
      answersServed: 0,
      answersFound: 0,
      readRepairs: 0,
      awaited: 0,
      awaitedFound: 0,
      awaitedExpired: 0,
      awaitOverflow: 0,
      awaitedSelfFound: 0,
      latency: { bucketsMs: QUERY_LATENCY_BUCKETS_MS, counts: new Array<number>(QUERY_LATENCY_BUCKETS_MS.length + 1).fill(0), sumMs: 0, count: 0 },
    };
    this.#queues = new PublishQueues(this.#transport, this.counters, opts.maxPendingPublish ?? DEFAULT_MAX_PENDING_PUBLISH);
    const host: HandoffHost = {
      now: () => this.#now(),
      owners: (key) => this.owners(key),
      enqueue: (peer, e) => this.#queues.enqueue(peer, e),
    };
    this.#handoff = new HandoffJobs(host, this.#timers, this.counters, opts.handoffSlice ?? DEFAULT_HANDOFF_SLICE);
    this.#transport.setBulkSource((peerId, out, off, max) => this.#queues.fill(peerId, out, off, max));
  }

  /** Queries waiting for an answer. */
  get outstandingQueries(): number {
    return this.#outstanding.size;
  }

  /**
   * Monotonic ms of the last UDP flow entry stored here, or undefined. Flow entries exist only
   * for flows whose backend differs from the table's pick, and are refreshed while those flows
   * live: a recent UDP one says such UDP flows still exist in the cluster (a restarted instance
   * learns it from the entries handed to it, not from a change it never saw). TCP entries (an
   * MPTCP join's subflow, a connection pinned by a change) say nothing UDP needs: a TCP non-SYN
   * asks anyway.
   */
  get lastUdpFlowEntryAt(): number | undefined {
    return this.#lastUdpFlowEntryAt;
  }

  /** Entry copies queued for peers. */
  get pendingPublish(): number {
    return this.#queues.total;
  }

  /**
   * The live set changed (sorted ids and their hashInstanceId values, this instance included).
   * Re-routes queued entries of instances that left and hands stored entries to new owners.
   */
  setLive(ids: readonly string[], hashes: Uint32Array): void {
    this.#liveChangedAt = this.#now();
    const oldIds = this.#liveIds;
    const oldHashes = this.#liveHashes;
    this.#liveIds = ids.slice();
    this.#liveHashes = Uint32Array.from(hashes);
    const live = new Set(ids);
    this.#queues.dropPeersNotIn(live, (e, leftPeer) => this.#route(e, leftPeer));
    if (this.#store.size === 0 || oldHashes.length === 0) return;
    const self = this.selfId;
    this.#handoff.add({
      iterator: this.#store.values(),
      targets: (entry, owners) => {
        const before = ownersOf(entry.key, oldIds, oldHashes, this.replicas);
        return owners.filter((o) => o !== self && !before.includes(o));
      },
    });
  }

  /** A peer restarted while up: give it back the entries it owns. */
  peerRestarted(peerId: string): void {
    if (this.#store.size === 0 || !this.#liveIds.includes(peerId)) return;
    this.#handoff.add({ iterator: this.#store.values(), targets: (_e, owners) => (owners.includes(peerId) ? [peerId] : []) });
  }

  /** Owners of a key in the current view, best first. */
  owners(key: Uint8Array): string[] {
    if (this.#liveHashes.length === 0) return [this.selfId];
    return ownersOf(key, this.#liveIds, this.#liveHashes, this.replicas);
  }

  /** True if this instance is one of the key's owners in the current view. */
  isOwner(key: Uint8Array): boolean {
    if (this.#liveHashes.length === 0) return true;
    const k = rendezvousOwners(ownerKeyHash(key), this.#liveHashes, this.replicas, this.#ownerIdx);
    for (let i = 0; i < k; i++) if (this.#liveIds[this.#ownerIdx[i]] === this.selfId) return true;
    return false;
  }

  /** Send each entry to its owners (storing it here if this instance is one). */
  publish(entries: Iterable<SyncEntry>): PublishResult {
    const res: PublishResult = { accepted: 0, invalid: 0, dropped: 0, local: 0, queued: 0 };
    for (const e of entries) {
      if (!this.#valid(e)) {
        res.invalid++;
        this.counters.publishInvalid++;
        continue;
      }
      res.accepted++;
      this.counters.publishEntries++;
      this.#route(e, undefined, res);
    }
    return res;
  }

  /**
   * The backend of record for a key: from this instance's store if it owns the key, else from
   * the other owners. Never rejects. With o.resendMs below timeoutMs, the QUERY goes again (same
   * id) to the owners that have not answered by then: a datagram lost, or an answer from an owner
   * and a replica both slow, gets a second chance; either copy's answer settles the query.
   */
  query(kind: EntryKind, key: Uint8Array, timeoutMs: number, o: QueryOptions = {}): Promise<BackendIdentity | null> {
    const c = this.counters;
    c.queries++;
    if (this.#stopped || !validKeyLength(kind, key.length)) {
      c.queryFailed++;
      return Promise.resolve(null);
    }
    const owners = this.owners(key);
    const remote: string[] = [];
    let selfOwner = false;
    for (const o of owners) {
      if (o === this.selfId) selfOwner = true;
      else remote.push(o);
    }
    {
      // This instance's own copy: as an owner, or a late answer kept for a second ask.
      const e = this.#store.lookup(kind, key, this.#now());
      if (e !== undefined) {
        c.hits++;
        c.localHits++;
        return Promise.resolve(e.backend);
      }
    }
    const awaitMs = this.#awaitMs[kind] ?? 0;
    const settled = remote.length === 0 || this.#holdsEverything();
    if (settled && awaitMs === 0) {
      c.misses++;
      if (remote.length > 0) c.settledMisses++;
      return Promise.resolve(null);
    }
    if (this.#outstanding.size >= this.#maxOutstanding) {
      c.queryOverflow++;
      return Promise.resolve(null);
    }
    let id = this.#nextQueryId;
    while (this.#outstanding.has(id)) id = (id + 1) >>> 0 || 1;
    this.#nextQueryId = (id + 1) >>> 0 || 1;
    this.#timedOut.delete(id);
    const body: QueryBody = { queryId: id, kind, key };
    const write: BodyWriter = (out, off) => writeQueryBody(out, off, body);
    const asked: string[] = [];
    if (!settled) for (const peer of remote) if (this.#transport.send(peer, 'QUERY', write)) asked.push(peer);
    c.queriesSent += asked.length;
    if (asked.length === 0 && !settled) {
      c.queryFailed++;
      return Promise.resolve(null);
    }
    return new Promise<BackendIdentity | null>((resolve) => {
      const awaitKey = awaitMs > 0 ? storeKey(kind, key) : undefined;
      const q: PendingQuery = { id, kind, key: Uint8Array.from(key), asked, selfOwner, startedAt: this.#now(), timer: undefined, resend: undefined, awaitKey, resolve };
      if (settled) {
        // No peer to ask: only a PUBLISH on its way here can still answer.
        q.timer = this.#timers.setTimeout(() => {
          if (this.#outstanding.get(id) !== q) return;
          c.misses++;
          if (remote.length > 0) c.settledMisses++;
          this.#finish(q, null);
        }, Math.min(timeoutMs, awaitMs));
        this.#outstanding.set(id, q);
        this.#awaitSelf(q);
        return;
      }
      q.timer = this.#timers.setTimeout(() => {
        if (this.#outstanding.get(id) !== q) return;
        this.#outstanding.delete(id);
        this.#unawaitSelf(q);
        if (q.resend !== undefined) this.#timers.clearTimeout(q.resend);
        c.timeouts++;
        this.#rememberTimedOut(q);
        o.onTimeout?.();
        resolve(null);
      }, timeoutMs);
      const resendMs = o.resendMs ?? 0;
      if (resendMs > 0 && resendMs < timeoutMs) {
        q.resend = this.#timers.setTimeout(() => {
          q.resend = undefined;
          if (this.#outstanding.get(id) !== q) return;
          for (const peer of q.asked) if (this.#transport.send(peer, 'QUERY', write)) c.queryResends++;
        }, resendMs);
      }
      this.#outstanding.set(id, q);
      this.#awaitSelf(q);
    });
  }

  /** An authenticated PUBLISH, QUERY or ANSWER from a peer. */
  handle(peerId: string, m: ControlMessage): void {
    switch (m.type) {
      case 'PUBLISH':
        this.#onPublish(m.body);
        break;
      case 'QUERY':
        this.#onQuery(peerId, m.body);
        break;
      case 'ANSWER':
        this.#onAnswer(peerId, m.body);
        break;
      case 'HEARTBEAT':
        break;
    }
  }

  /** Resolve every waiting query with null and stop handoff work. */
  stop(): void {
    this.#stopped = true;
    for (const q of this.#outstanding.values()) {
      this.#timers.clearTimeout(q.timer);
      if (q.resend !== undefined) this.#timers.clearTimeout(q.resend);
      q.resolve(null);
    }
    this.#outstanding.clear();
    this.#awaitingSelf.clear();
    for (const list of this.#awaitingPeers.values()) for (const a of list) this.#timers.clearTimeout(a.timer);
    this.#awaitingPeers.clear();
    this.#awaitingPeerCount = 0;
    this.#handoff.stop();
    this.#transport.setBulkSource(undefined);
  }

  #valid(e: SyncEntry): boolean {
    if (e === null || typeof e !== 'object' || !(e.key instanceof Uint8Array) || !validKeyLength(e.kind, e.key.length)) return false;
    if (!Number.isInteger(e.ttlMs) || e.ttlMs < 0 || e.ttlMs > 0xffffffff) return false;
    if (typeof e.backend === 'object' && e.backend !== null && this.#validBackends.has(e.backend)) return true;
    if (checkEntry(e) !== undefined) return false;
    this.#validBackends.add(e.backend);
    return true;
  }

  /** Store locally and/or queue for the entry's owners (skipping `except`). */
  #route(e: SyncEntry, except: string | undefined, res?: PublishResult): void {
    const owners = this.owners(e.key);
    for (const o of owners) {
      if (o === except) continue;
      if (o === this.selfId) {
        this.#storeEntry(e);
        this.counters.publishLocal++;
        if (res) res.local++;
      } else if (this.#queues.enqueue(o, e)) {
        if (res) res.queued++;
      } else if (res) {
        res.dropped++;
      }
    }
  }

  #storeEntry(e: SyncEntry): void {
    if (e.ttlMs === 0) this.#store.remove(e.kind, e.key);
    else {
      if (isUdpFlow(e.kind, e.key)) this.#lastUdpFlowEntryAt = this.#now();
      this.#store.put(e.kind, e.key, e.backend, Math.min(e.ttlMs, MAX_TTL_MS), this.#now());
      this.#arrived(e);
    }
  }

  #onPublish(body: PublishBody): void {
    const c = this.counters;
    for (const e of body.entries) {
      c.entriesReceived++;
      if (e.ttlMs === 0) {
        c.entriesWithdrawn++;
        this.#store.remove(e.kind, e.key);
        continue;
      }
      if (!this.isOwner(e.key)) c.storedNotOwner++;
      if (isUdpFlow(e.kind, e.key)) this.#lastUdpFlowEntryAt = this.#now();
      this.#store.put(e.kind, e.key, e.backend, Math.min(e.ttlMs, MAX_TTL_MS), this.#now());
      this.#arrived(e);
    }
  }

  /** An entry was stored: answer the peer QUERYs and settle this instance's queries waiting for it. */
  #arrived(e: SyncEntry): void {
    if (this.#awaitingPeers.size === 0 && this.#awaitingSelf.size === 0) return;
    if (this.#awaitMs[e.kind] === undefined) return;
    const k = storeKey(e.kind, e.key);
    const peers = this.#awaitingPeers.get(k);
    if (peers !== undefined) {
      this.#awaitingPeers.delete(k);
      for (const a of peers) {
        this.#timers.clearTimeout(a.timer);
        this.#awaitingPeerCount--;
        this.counters.awaitedFound++;
        this.#answer(a.peerId, a.body);
      }
    }
    const own = this.#awaitingSelf.get(k);
    if (own !== undefined) {
      this.#awaitingSelf.delete(k);
      for (const q of own) {
        if (this.#outstanding.get(q.id) !== q) continue;
        q.awaitKey = undefined;
        this.counters.hits++;
        this.counters.awaitedSelfFound++;
        this.#finish(q, e.backend);
      }
    }
  }

  #awaitSelf(q: PendingQuery): void {
    if (q.awaitKey === undefined) return;
    const list = this.#awaitingSelf.get(q.awaitKey);
    if (list === undefined) this.#awaitingSelf.set(q.awaitKey, [q]);
    else list.push(q);
  }

  #unawaitSelf(q: PendingQuery): void {
    const k = q.awaitKey;
    if (k === undefined) return;
    q.awaitKey = undefined;
    const list = this.#awaitingSelf.get(k);
    if (list === undefined) return;
    const at = list.indexOf(q);
    if (at >= 0) list.splice(at, 1);
    if (list.length === 0) this.#awaitingSelf.delete(k);
  }

  #onQuery(peerId: string, body: QueryBody): void {
    const awaitMs = this.#awaitMs[body.kind] ?? 0;
    if (awaitMs > 0 && this.#store.lookup(body.kind, body.key, this.#now()) === undefined) {
      const k = storeKey(body.kind, body.key);
      const list = this.#awaitingPeers.get(k);
      // A resend of a QUERY already held (same peer, same id) changes nothing.
      if (list?.some((a) => a.peerId === peerId && a.body.queryId === body.queryId)) return;
      if (this.#awaitingPeerCount < MAX_AWAITING) {
        const a: AwaitingQuery = { peerId, body, timer: undefined };
        a.timer = this.#timers.setTimeout(() => {
          const now = this.#awaitingPeers.get(k);
          const at = now === undefined ? -1 : now.indexOf(a);
          if (now === undefined || at < 0) return;
          now.splice(at, 1);
          if (now.length === 0) this.#awaitingPeers.delete(k);
          this.#awaitingPeerCount--;
          this.counters.awaitedExpired++;
          this.#answer(peerId, body);
        }, awaitMs);
        if (list === undefined) this.#awaitingPeers.set(k, [a]);
        else list.push(a);
        this.#awaitingPeerCount++;
        this.counters.awaited++;
        return;
      }
      this.counters.awaitOverflow++;
    }
    this.#answer(peerId, body);
  }

  /** ANSWER a peer's QUERY from the store as it is now. */
  #answer(peerId: string, body: QueryBody): void {
    const now = this.#now();
    const e = this.#store.lookup(body.kind, body.key, now);
    const answer: AnswerBody =
      e === undefined
        ? { queryId: body.queryId, kind: body.kind, key: body.key, found: false, ttlMs: 0 }
        : { queryId: body.queryId, kind: body.kind, key: body.key, found: true, backend: e.backend, ttlMs: Math.max(1, Math.ceil(e.expiresAt - now)) };
    this.counters.answersServed++;
    if (answer.found) this.counters.answersFound++;
    this.#transport.send(peerId, 'ANSWER', (out, off) => writeAnswerBody(out, off, answer));
  }

  #onAnswer(peerId: string, body: AnswerBody): void {
    const c = this.counters;
    const q = this.#outstanding.get(body.queryId);
    const at = q === undefined ? -1 : q.asked.indexOf(peerId);
    if (q === undefined || at < 0 || q.kind !== body.kind || !sameBytes(q.key, body.key)) {
      c.unmatchedAnswers++;
      const gaveUp = q === undefined ? this.#timedOut.get(body.queryId) : undefined;
      if (gaveUp !== undefined && body.found && body.backend !== undefined && gaveUp.kind === body.kind && sameBytes(gaveUp.key, body.key)) {
        this.#timedOut.delete(body.queryId);
        c.lateFound++;
        // Kept for a moment: the data plane asks once more for a flow whose first query went
        // unanswered, and this answer settles that at once (stored like a replica's copy).
        this.#store.put(body.kind, body.key, body.backend, Math.min(body.ttlMs > 0 ? body.ttlMs : LATE_ANSWER_KEEP_MS, LATE_ANSWER_KEEP_MS), this.#now());
      }
      return;
    }
    if (body.found && body.backend !== undefined) {
      this.#finish(q, body.backend);
      c.hits++;
      if (q.selfOwner && body.ttlMs > 0) {
        this.#store.put(q.kind, q.key, body.backend, Math.min(body.ttlMs, MAX_TTL_MS), this.#now());
        c.readRepairs++;
        this.#arrived({ kind: q.kind, key: q.key, backend: body.backend, ttlMs: body.ttlMs });
      }
      return;
    }
    q.asked.splice(at, 1);
    if (q.asked.length === 0) {
      this.#finish(q, null);
      c.misses++;
    }
  }

  /**
   * Every live instance is an owner of every key (replicas >= the live set) and the view has been
   * settled SETTLED_MS: every entry published or handed over is here, so a local miss is a NOT
   * FOUND, answered at once. Asking the peers anyway only loaded their control processes: on a
   * busy machine those answers came after the data plane gave up, for nothing. Right after a
   * start or a view change (handoffs in flight) the peers are still asked.
   */
  #holdsEverything(): boolean {
    return this.replicas >= this.#liveIds.length && this.#now() - this.#liveChangedAt >= SETTLED_MS;
  }

  #rememberTimedOut(q: PendingQuery): void {
    if (this.#timedOut.size >= MAX_TIMED_OUT_REMEMBERED) {
      const oldest = this.#timedOut.keys().next();
      if (!oldest.done) this.#timedOut.delete(oldest.value);
    }
    this.#timedOut.set(q.id, { kind: q.kind, key: q.key });
  }

  #finish(q: PendingQuery, result: BackendIdentity | null): void {
    this.#outstanding.delete(q.id);
    this.#unawaitSelf(q);
    this.#timers.clearTimeout(q.timer);
    if (q.resend !== undefined) this.#timers.clearTimeout(q.resend);
    const ms = this.#now() - q.startedAt;
    const lat = this.counters.latency;
    let b = 0;
    while (b < lat.bucketsMs.length && ms > lat.bucketsMs[b]) b++;
    lat.counts[b]++;
    lat.sumMs += ms;
    lat.count++;
    q.resolve(result);
  }
}
