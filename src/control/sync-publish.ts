/**
 * Entry copies waiting to be published to peers: one queue per destination, bounded in total
 * (maxPendingPublish, drops counted), drained into PUBLISH bodies as the transport has buffers
 * (transport.ts BulkSource). OwnerSync decides where entries go; this only queues and packs.
 */
import { PublishBodyWriter, type SyncEntry } from './codec.js';
import type { SyncCounters, SyncTransport } from './sync-options.js';

interface EntryQueue {
  items: SyncEntry[];
  head: number;
}

export class PublishQueues {
  readonly #pending = new Map<string, EntryQueue>();
  readonly #writer = new PublishBodyWriter();
  #pendingTotal = 0;

  constructor(
    private readonly transport: SyncTransport,
    private readonly counters: SyncCounters,
    private readonly maxPending: number,
  ) {}

  /** Entry copies queued for peers. */
  get total(): number {
    return this.#pendingTotal;
  }

  /** Queue one entry copy for a peer; false (counted as publishDropped) when the bound is reached. */
  enqueue(peer: string, e: SyncEntry): boolean {
    if (this.#pendingTotal >= this.maxPending) {
      this.counters.publishDropped++;
      return false;
    }
    let q = this.#pending.get(peer);
    if (q === undefined) {
      q = { items: [], head: 0 };
      this.#pending.set(peer, q);
    }
    q.items.push(e);
    this.#pendingTotal++;
    if (q.items.length - q.head === 1) this.transport.kick(peer);
    return true;
  }

  /**
   * Empty the queues of peers no longer in `live` and hand each of their entries to `reroute`
   * (which may enqueue them again, for live peers).
   */
  dropPeersNotIn(live: ReadonlySet<string>, reroute: (e: SyncEntry, leftPeer: string) => void): void {
    for (const [peer, q] of this.#pending) {
      if (live.has(peer)) continue;
      const orphans = q.items.slice(q.head);
      this.#pending.delete(peer);
      this.#pendingTotal -= orphans.length;
      for (const e of orphans) reroute(e, peer);
    }
  }

  /** BulkSource: the next PUBLISH body for a peer, or 0. */
  fill(peerId: string, out: Buffer, off: number, max: number): number {
    const q = this.#pending.get(peerId);
    if (q === undefined || q.head >= q.items.length) return 0;
    const w = this.#writer;
    w.begin(out, off, max);
    const start = q.head;
    while (q.head < q.items.length && w.add(q.items[q.head])) q.head++;
    const n = q.head - start;
    this.#pendingTotal -= n;
    this.counters.publishSent += n;
    if (q.head >= q.items.length) this.#pending.delete(peerId);
    else if (q.head >= 4096 && q.head * 2 >= q.items.length) {
      q.items = q.items.slice(q.head);
      q.head = 0;
    }
    return n > 0 ? w.finish() : 0;
  }
}
