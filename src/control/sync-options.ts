/**
 * What owner sync (sync.ts) is built from and what it reports: its transport and timer seams,
 * options and their defaults, counters, and the result of one publish().
 */
import type { EntryKind, MessageTypeName } from './codec.js';
import type { OwnerStore } from './owner-store.js';
import type { BodyWriter } from './transport.js';

export const DEFAULT_MAX_OUTSTANDING_QUERIES = 1024;
export const DEFAULT_MAX_PENDING_PUBLISH = 1 << 20;
export const DEFAULT_HANDOFF_SLICE = 4096;
export const MAX_HANDOFF_JOBS = 8;
/** Upper bounds (ms) of the query latency histogram buckets; one more bucket counts the rest. */
export const QUERY_LATENCY_BUCKETS_MS: readonly number[] = [0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50];

/** What sync needs from the transport (transport.ts implements it; tests fake it). */
export interface SyncTransport {
  send(peerId: string, type: MessageTypeName, writeBody: BodyWriter): boolean;
  kick(peerId: string): void;
  setBulkSource(source: ((peerId: string, out: Buffer, off: number, max: number) => number) | undefined): void;
}

export interface SyncTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
  /** Run fn soon, after pending I/O (handoff slices). */
  defer(fn: () => void): void;
}

export const defaultTimers: SyncTimers = {
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (h) => clearTimeout(h as ReturnType<typeof setTimeout>),
  defer: (fn) => void setImmediate(fn),
};

export interface SyncOptions {
  selfId: string;
  transport: SyncTransport;
  store: OwnerStore;
  /** Monotonic ms (expiry, latency). */
  now: () => number;
  replicas?: number;
  maxOutstandingQueries?: number;
  maxPendingPublish?: number;
  handoffSlice?: number;
  timers?: SyncTimers;
  /** How long a QUERY for each kind waits for an entry on its way (sync.ts AWAIT_PUBLISH_MS; {} waits for none). */
  awaitPublishMs?: Readonly<Partial<Record<EntryKind, number>>>;
}

export interface QueryLatency {
  /** Upper bounds in ms; counts has one more element, for slower answers. */
  bucketsMs: readonly number[];
  counts: number[];
  sumMs: number;
  count: number;
}

export interface SyncCounters {
  /** Entries accepted by publish(). */
  publishEntries: number;
  /** Entries publish() refused (bad key length, ttl, service name or address). */
  publishInvalid: number;
  /** Entry copies dropped because maxPendingPublish were already queued. */
  publishDropped: number;
  /** Entry copies stored locally because this instance is one of their owners. */
  publishLocal: number;
  /** Entry copies written into PUBLISH datagrams. */
  publishSent: number;
  /** Entries received in PUBLISH messages. */
  entriesReceived: number;
  /** Received entries with ttl 0 (withdrawals). */
  entriesWithdrawn: number;
  /** Received entries stored although this instance is not one of their owners in its view. */
  storedNotOwner: number;
  /** Entry copies queued to new owners after a view change or a peer restart. */
  handoffEntries: number;
  /** Handoff jobs dropped because MAX_HANDOFF_JOBS were running. */
  handoffJobsDropped: number;
  /** query() calls. */
  queries: number;
  /** query() answered from this instance's own store. */
  localHits: number;
  /** QUERY datagrams sent. */
  queriesSent: number;
  /** query() resolved with a backend (local or remote). */
  hits: number;
  /** query() resolved null because every owner said NOT FOUND (or no other owner exists). */
  misses: number;
  /** query() resolved null on timeout. */
  timeouts: number;
  /** Misses answered from this instance's store alone: it holds every entry and its view is settled (no peer asked). */
  settledMisses: number;
  /** QUERY datagrams sent again (same id) to owners still silent at the query's resend time. */
  queryResends: number;
  /**
   * FOUND answers that arrived after their query had timed out: an owner held an entry, but the
   * packets that asked had already taken the table's pick (also counted in unmatchedAnswers).
   */
  lateFound: number;
  /** query() resolved null at once: maxOutstandingQueries were waiting. */
  queryOverflow: number;
  /** query() resolved null at once: no QUERY could be queued (invalid key or full queues). */
  queryFailed: number;
  /** ANSWERs for no waiting query (late, duplicate, or not matching what was asked). */
  unmatchedAnswers: number;
  /** QUERYs answered for peers. */
  answersServed: number;
  /** ... of which FOUND. */
  answersFound: number;
  /** FOUND answers stored locally because this instance is an owner that lacked the entry. */
  readRepairs: number;
  /** Peer QUERYs for an awaited kind (a token) not held here yet: held until its PUBLISH or AWAIT_PUBLISH_MS. */
  awaited: number;
  /** ... answered FOUND when the entry arrived. */
  awaitedFound: number;
  /** ... answered NOT FOUND when the wait ended. */
  awaitedExpired: number;
  /** Peer QUERYs answered NOT FOUND at once because MAX_AWAITING were already held. */
  awaitOverflow: number;
  /** This instance's own queries settled by a PUBLISH that reached it before any owner's answer. */
  awaitedSelfFound: number;
  latency: QueryLatency;
}

export interface PublishResult {
  /** Entries accepted. */
  accepted: number;
  /** Entries refused (see counters.publishInvalid). */
  invalid: number;
  /** Entry copies dropped on a full pending queue. */
  dropped: number;
  /** Entry copies stored locally. */
  local: number;
  /** Entry copies queued for peers. */
  queued: number;
}
