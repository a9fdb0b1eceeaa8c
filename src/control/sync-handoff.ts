/**
 * Handing stored entries to their new owners after a view change or a peer restart: jobs walk
 * the store in slices of `slice` entries per event-loop turn so queries keep being answered. A
 * newer job does not cancel an older one; at most MAX_HANDOFF_JOBS run, the oldest is dropped
 * beyond that (counted as handoffJobsDropped).
 */
import { MAX_TTL_MS, type SyncEntry } from './codec.js';
import type { StoredEntry } from './owner-store.js';
import { MAX_HANDOFF_JOBS, type SyncCounters, type SyncTimers } from './sync-options.js';

export interface HandoffJob {
  iterator: IterableIterator<StoredEntry>;
  /** Destinations for one entry given its owners in the current view. */
  targets: (entry: StoredEntry, owners: readonly string[]) => readonly string[];
}

/** How a handoff reaches the rest of owner sync. */
export interface HandoffHost {
  /** Monotonic ms. */
  now(): number;
  /** Owners of a key in the current view, best first. */
  owners(key: Uint8Array): string[];
  /** Queue an entry copy for a peer; false if dropped. */
  enqueue(peer: string, e: SyncEntry): boolean;
}

export class HandoffJobs {
  #jobs: HandoffJob[] = [];
  #jobScheduled = false;
  #stopped = false;

  constructor(
    private readonly host: HandoffHost,
    private readonly timers: SyncTimers,
    private readonly counters: SyncCounters,
    private readonly slice: number,
  ) {}

  add(job: HandoffJob): void {
    if (this.#stopped) return;
    this.#jobs.push(job);
    if (this.#jobs.length > MAX_HANDOFF_JOBS) {
      this.#jobs.shift();
      this.counters.handoffJobsDropped++;
    }
    this.#scheduleJobs();
  }

  /** Drop every job; a slice already deferred does nothing. */
  stop(): void {
    this.#stopped = true;
    this.#jobs = [];
  }

  #scheduleJobs(): void {
    if (this.#jobScheduled || this.#jobs.length === 0) return;
    this.#jobScheduled = true;
    this.timers.defer(() => {
      this.#jobScheduled = false;
      this.#runJobs();
    });
  }

  /** One slice of the oldest handoff job. */
  #runJobs(): void {
    const job = this.#jobs[0];
    if (job === undefined || this.#stopped) return;
    const now = this.host.now();
    for (let n = 0; n < this.slice; n++) {
      const next = job.iterator.next();
      if (next.done) {
        this.#jobs.shift();
        break;
      }
      const e = next.value;
      const ttl = Math.ceil(e.expiresAt - now);
      if (ttl <= 0) continue;
      for (const peer of job.targets(e, this.host.owners(e.key))) {
        if (this.host.enqueue(peer, { kind: e.kind, key: e.key, backend: e.backend, ttlMs: Math.min(ttl, MAX_TTL_MS) })) this.counters.handoffEntries++;
      }
    }
    this.#scheduleJobs();
  }
}
