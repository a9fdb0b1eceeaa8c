/**
 * The writer lock of a table the packet workers share (mptcp-tokens.ts, affinity-table.ts): one
 * Int32 word of the table's header holding the id of the writer that has it (0: free), so that
 * after a worker thread dies its lock can be told apart and freed (`release`). Readers never take
 * it: they use each slot's seqlock; `repairMidWrite` empties what a dead writer left half done.
 *
 * The holder keeps the lock for one probe window (well under a microsecond), so spinning is the
 * common wait; past SPINS the writer sleeps in short timed waits (worker threads may block; never
 * without a timeout) because the holder may have been descheduled. After WAITS it gives up and
 * the write is counted as a lock timeout: forwarding never stalls on a lock.
 */
const SPINS = 256;
const WAITS = 2000;
const WAIT_MS = 0.05;

export class TableLock {
  readonly #words: Int32Array;
  readonly #at: number;
  readonly #writerId: number;
  /** Atomics.wait needs a shared Int32Array; a private table is never contended. */
  readonly #canWait: boolean;
  #timeouts = 0;

  /** `words[at]` is the lock word; `writerId` (1..2^31-1) marks it while this writer holds it. */
  constructor(words: Int32Array, at: number, writerId: number, what: string) {
    if (!Number.isInteger(writerId) || writerId < 1 || writerId > 0x7fffffff) throw new RangeError(`${what}: writerId must be an integer in 1..2^31-1, got ${writerId}`);
    this.#words = words;
    this.#at = at;
    this.#writerId = writerId;
    this.#canWait = words.buffer instanceof SharedArrayBuffer;
  }

  /** Writes given up because another writer held the lock past the bound. */
  get timeouts(): number {
    return this.#timeouts;
  }

  /** Take the lock if it is free right now; never waits. */
  tryLock(): boolean {
    return Atomics.compareExchange(this.#words, this.#at, 0, this.#writerId) === 0;
  }

  /** Take the lock, waiting a bounded time; false (counted) if another writer kept it. */
  lock(): boolean {
    return this.tryLock() || this.#contended();
  }

  #contended(): boolean {
    const words = this.#words;
    const at = this.#at;
    for (let i = 0; i < SPINS + WAITS; i++) {
      const holder = Atomics.load(words, at);
      if (holder === 0 && Atomics.compareExchange(words, at, 0, this.#writerId) === 0) return true;
      if (i >= SPINS && this.#canWait && holder !== 0) Atomics.wait(words, at, holder, WAIT_MS);
    }
    this.#timeouts++;
    return false;
  }

  unlock(): void {
    Atomics.store(this.#words, this.#at, 0);
  }

  /** Whether writer `writerId` holds the lock in `words[at]` (a dead worker's, say). */
  static heldBy(words: Int32Array, at: number, writerId: number): boolean {
    return Atomics.load(words, at) === writerId;
  }

  /** Free the lock if `writerId` holds it; true if it did. */
  static release(words: Int32Array, at: number, writerId: number): boolean {
    return Atomics.compareExchange(words, at, writerId, 0) === writerId;
  }
}

/**
 * Under the lock of a writer that died: empty every slot it left mid-write (odd sequence) and
 * return the live slots (occupied[s] !== 0) for the table's count. O(capacity).
 */
export function repairMidWrite(seq: Int32Array, occupied: Int32Array, capacity: number): number {
  let live = 0;
  for (let s = 0; s < capacity; s++) {
    const q = seq[s];
    if ((q & 1) !== 0) {
      occupied[s] = 0;
      Atomics.store(seq, s, q + 1);
    }
    if (occupied[s] !== 0) live++;
  }
  return live;
}
