/**
 * The forwarder's fragments branch. A first fragment is steered like any packet and records its
 * datagram's backend here (fragment-table.ts); a later fragment has no ports and follows that
 * record, or waits (fragment-hold.ts) until its first fragment comes, then leaves right behind it.
 * With several instances (owner sync on) the datagram is also an owned key of the cluster
 * (fragment-owner.ts): a first fragment publishes its backend, and later fragments of a datagram
 * this instance never saw ask the owners and leave on the answer.
 * Everything is preallocated: no allocation, promise or closure per packet.
 */
import { Drop } from '../packet/drop-reasons.js';
import type { ParsedPacket } from '../packet/parsed-packet.js';
import { parseFrame } from '../packet/parse.js';
import { DROPS_BASE, G } from './contract/counters.js';
import type { DataplaneSpec } from './contract/spec.js';
import type { BackendSlots } from './backend-slots.js';
import { DEFAULT_FRAGMENT_CAPACITY, DEFAULT_FRAGMENT_TIMEOUT_MS, FRAGMENT_KEY_WORDS, FragmentTable, datagramKey } from './fragment-table.js';
import { DEFAULT_FRAGMENT_HOLD_MS, FragmentHold } from './fragment-hold.js';
import type { OwnerQueryFn, PublishNowFn, SendFn } from './owner-hold.js';
import { FragmentOwner } from './fragment-owner.js';

/** What the fragments branch needs of the forwarder it serves. */
export interface FragmentPathHost {
  readonly counters: Float64Array;
  readonly backends: BackendSlots;
  /** The forwarder's shared parsed-packet view; a released fragment is re-parsed into it. */
  readonly parsed: ParsedPacket;
  /** The forwarder's last step: toward backend `be` of service `sid`, counted; returns bytes written to tx, or 0. */
  send(rx: Buffer, len: number, p: ParsedPacket, sid: number, be: number, tx: Buffer, hash: number, nowMs: number): number;
}

export class FragmentPath {
  readonly #host: FragmentPathHost;
  // Datagram -> backend (first fragment decides), early fragments waiting for it.
  #fragments = new FragmentTable(DEFAULT_FRAGMENT_CAPACITY, DEFAULT_FRAGMENT_TIMEOUT_MS);
  #fragHold = new FragmentHold(DEFAULT_FRAGMENT_HOLD_MS);
  readonly #datagram = new Uint32Array(FRAGMENT_KEY_WORDS);
  #datagramHash = 0;
  /** Where released early fragments are written and how they are sent (set by the worker); null: they wait for their deadline. */
  #releaseTx: Buffer | null = null;
  #releaseSend: SendFn | null = null;
  /** The cluster side: publish first fragments' datagrams, ask about unknown ones. */
  readonly #owner = new FragmentOwner();
  readonly #answerKey = new Uint32Array(FRAGMENT_KEY_WORDS);

  constructor(host: FragmentPathHost) {
    this.#host = host;
  }

  /** Datagrams recorded in the table. */
  get size(): number {
    return this.#fragments.size;
  }

  /** Early fragments are waiting for their first fragment. */
  get holding(): boolean {
    return this.#fragHold.count > 0;
  }

  /** The generation's `fragments` config: tables are rebuilt only when their size or times change. */
  configure(fc: DataplaneSpec['fragments']): void {
    if (fc !== undefined && (fc.capacity !== this.#fragments.capacity || fc.timeoutMs !== this.#fragments.timeoutMs)) {
      this.#fragments = new FragmentTable(fc.capacity, fc.timeoutMs);
    }
    if (fc !== undefined && fc.holdMs !== this.#fragHold.holdMs && this.#fragHold.count === 0) this.#fragHold = new FragmentHold(fc.holdMs);
    // Datagrams in flight keep their entries: a later fragment checks that its backend still belongs to the service.
  }

  /** Where early fragments go when their first fragment arrives: written to `tx`, sent by `send` at once. */
  setRelease(tx: Buffer | null, send: SendFn | null): void {
    this.#releaseTx = tx;
    this.#releaseSend = send;
  }

  /** Owner queries for unknown datagrams on (fn) or off (null); the answer comes back through answer(). */
  setOwnerQuery(fn: OwnerQueryFn | null): void {
    this.#owner.setAsk(fn);
  }

  /** Publishing each first fragment's datagram to its owners on (fn) or off (null). */
  setPublishNow(fn: PublishNowFn | null): void {
    this.#owner.setPublish(fn);
  }

  /** A first fragment was steered to `be`: remember it for the datagram. False: the table window is full. */
  record(rx: Buffer, p: ParsedPacket, sid: number, be: number, hash: number, nowMs: number): boolean {
    const key = this.#datagram;
    const h = datagramKey(rx, p, key);
    this.#datagramHash = h;
    if (this.#fragments.insert(key, h, nowMs, be, sid, hash) < 0) {
      this.#host.counters[G.fragOverflow]++;
      return false;
    }
    this.#host.counters[G.fragDatagrams]++;
    if (this.#owner.publish(key, be)) this.#host.counters[G.fragOwnerPublished]++;
    return true;
  }

  /** A fragment without ports: to its datagram's backend, or held until its first fragment comes. */
  later(rx: Buffer, len: number, p: ParsedPacket, tx: Buffer, nowMs: number): number {
    const host = this.#host;
    const key = this.#datagram;
    const h = datagramKey(rx, p, key);
    const slot = this.#fragments.lookup(key, h, nowMs);
    if (slot < 0) {
      if (!this.#fragHold.hold(rx, len, key, h, nowMs)) return this.#drop(Drop.fragment_hold_full);
      host.counters[G.fragHeld]++;
      // Its first fragment may have reached another instance: ask the datagram's owners (once per datagram).
      if (this.#owner.ask(key, h, nowMs, this.#fragHold.holdMs) === 1) host.counters[G.fragOwnerQueries]++;
      return 0;
    }
    const be = this.#fragments.backendOf(slot);
    const sid = this.#fragments.serviceOf(slot);
    if (!host.backends.belongsTo(be, sid)) return this.#drop(Drop.no_backend);
    host.counters[G.fragMatched]++;
    return host.send(rx, len, p, sid, be, tx, this.#fragments.flowHashOf(slot), nowMs);
  }

  /**
   * The first fragment just left for `be`: the datagram's early fragments follow it, sent at once
   * through the release sink (the first fragment's output is already written).
   */
  release(sid: number, be: number, hash: number, nowMs: number): void {
    // record() left the datagram's key and hash in #datagram / #datagramHash.
    this.#releaseDatagram(this.#datagram, this.#datagramHash, sid, be, hash, nowMs);
  }

  /**
   * The owners' answer to fragment query `queryId`: backend `be` of this instance, or -1 (not
   * known: the held fragments wait out their hold). On an answer the datagram is recorded and
   * its held fragments leave through the release sink.
   */
  answer(queryId: number, be: number, nowMs: number): void {
    const key = this.#answerKey;
    const h = this.#owner.settle(queryId, key);
    if (h < 0) return;
    const c = this.#host.counters;
    const sid = be >= 0 ? this.#host.backends.serviceOf(be) : -1;
    if (sid < 0) {
      c[G.fragOwnerMisses]++;
      return;
    }
    c[G.fragOwnerHits]++;
    if (this.#fragments.insert(key, h, nowMs, be, sid, h) < 0) c[G.fragOverflow]++;
    this.#releaseDatagram(key, h, sid, be, h, nowMs);
  }

  /** Fragment queries in flight. */
  get pendingQueries(): number {
    return this.#owner.pending;
  }

  /** Every held fragment of datagram `key` (hash h) to backend `be`, written to the release buffer and sent. Re-parses each into the shared ParsedPacket. */
  #releaseDatagram(key: Uint32Array, h: number, sid: number, be: number, hash: number, nowMs: number): void {
    const tx = this.#releaseTx;
    const send = this.#releaseSend;
    if (tx === null || send === null) return;
    const host = this.#host;
    const hold = this.#fragHold;
    let s = hold.nextMatch(key, h, 0);
    while (s >= 0) {
      const frame = hold.frame(s);
      const len = hold.length(s);
      hold.free(s);
      if (parseFrame(frame, len, host.parsed) === Drop.ok) {
        host.counters[G.fragReleased]++;
        const out = host.send(frame, len, host.parsed, sid, be, tx, hash, nowMs);
        if (out > 0) send(out);
      }
      s = hold.nextMatch(key, h, s + 1);
    }
  }

  /** Early fragments whose first fragment did not come within the hold time: counted drops. */
  expire(nowMs: number): void {
    const unanswered = this.#owner.expire(nowMs);
    if (unanswered > 0) this.#host.counters[G.fragOwnerMisses] += unanswered;
    const n = this.#fragHold.expire(nowMs);
    if (n === 0) return;
    this.#host.counters[G.fragExpired] += n;
    this.#host.counters[DROPS_BASE + Drop.fragment_unmatched] += n;
  }

  /** Timer work: forget datagrams past their timeout, a bounded slice at a time. */
  sweep(nowMs: number, slots: number): void {
    this.#fragments.sweep(nowMs, slots);
  }

  #drop(reason: number): number {
    this.#host.counters[DROPS_BASE + reason]++;
    return 0;
  }
}
