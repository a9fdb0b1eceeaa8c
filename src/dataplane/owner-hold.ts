/**
 * Owner queries and held frames (several instances with owner sync). A packet that belongs to an
 * existing connection but finds no flow here (a TCP non-SYN that ECMP moved, an MP_JOIN with an
 * unknown token) asks the flow's owner through the control process; its frames wait here until
 * the answer, or the deadline, decides the backend. Then the flow is recorded and the held frames
 * go through the forwarder's pipeline once more (their arrival was counted when they came).
 *
 *   forwarder miss --ask()--> query slot q, flow recorded as PENDING - q --OwnerQueryFn--> control
 *   later frames of the flow --hold()--> hold slots tagged q (bounded per query and overall)
 *   control --answer(qid)--> settle q: flow -> backend, replay held frames -> send()
 *   timer --expire(now)--> settle every query past its deadline (QUERY_DEADLINE_MS; a token's
 *                          TOKEN_QUERY_DEADLINE_MS) with the table's answer
 *
 * Who asks: a TCP non-SYN and an MP_JOIN with no local state always (flow-steer.ts); a UDP packet
 * with no local state only while a table change is recent in the cluster (setChangeRecent, told
 * by the control process): UDP has no first packet that tells a new flow from a moved one, and
 * outside such a window every instance's table picks a flow's backend of record anyway, so
 * steady-state UDP asks no one. Asking is bounded twice: MAX_PENDING_QUERIES at once, and
 * QUERY_BUDGET_PER_S a second (beyond it the table decides, counted ownerQueriesOverBudget), so
 * a burst of moved flows cannot feed an overloaded control plane without end.
 *
 * An unanswered flow query (NO_ANSWER from the control process, which waits almost the whole
 * deadline and asks again on the way, or the deadline here) is asked once more, its frames still
 * held, with a longer deadline (RETRY_DEADLINE_MS); also when no change is known yet: a silence
 * comes with a busy control process, typically one applying a reload whose change the data plane
 * has not heard of. A flow
 * waits at most 170 ms, below TCP's 200 ms minimum retransmission timeout (an answer that arrived
 * late for the first query is kept by the control process and answers the second at once). Counted as
 * ownerRetried; once per flow in RETRY_MEMORY_MS and at most MAX_RETRIES_PER_S a second. A second
 * silence, or a retry beyond those bounds, takes the table's pick, counted as ownerUnanswered. Held frames are
 * never dropped for silence: that turned slow answers into TCP retransmission backoff (stalls
 * > 1 s) and new queries that fed the overload. An answer naming a backend that comes after its
 * query settled is counted as ownerLateAnswers.
 *
 * Everything is preallocated: query and hold slots are typed arrays and one hold buffer. The only
 * allocation is the key copy handed to the control process, once per query (per flow miss).
 */
import { Drop } from '../packet/drop-reasons.js';
import type { ParsedPacket } from '../packet/parsed-packet.js';
import { writeTokenKey } from '../packet/token-key.js';
import { copyBytes } from '../packet/copy-bytes.js';
import { copyFlowKey, FLOW_KEY_MAX_BYTES } from '../hash/murmur3.js';
import { DROPS_BASE, G } from './contract/counters.js';
import { DEFAULT_HOLD_PACKETS } from './contract/limits.js';
import type { FlowTable } from './flow-table.js';
import type { MptcpTokenTable } from './mptcp-tokens.js';
import type { FlowTokens } from './flow-tokens.js';
import type { ServiceRecords } from './service-records.js';
import type { BackendSlots } from './backend-slots.js';
import { slotViews } from './slot-views.js';

/** Owner queries in flight at once, frames held for them, and the longest a frame waits. */
export const MAX_PENDING_QUERIES = 256;
export const HOLD_SLOTS = 1024;
const HOLD_SLOT_BYTES = 2048;
export const QUERY_DEADLINE_MS = 50;
/**
 * An MP_JOIN SYN waits longer for its token's owner: its token is published by the instance that
 * saw the connection's third ACK at about the moment the join was sent, and on a loaded host that
 * publish can take longer than 50 ms to reach the owner (which holds the query until it does,
 * src/control/sync.ts). A join dropped for an unknown token costs the client a SYN retransmission
 * (1 s); one held 150 ms costs 150 ms, and no other frame of that subflow exists yet to be delayed.
 */
export const TOKEN_QUERY_DEADLINE_MS = 150;
/**
 * The second ask's deadline (after an unanswered first while a change is recent): longer, since
 * the first showed the answer path slow (a starved CPU). 50 + 120 ms stays below TCP's 200 ms
 * minimum retransmission timeout, so a held connection sees delay, not a retransmission.
 */
export const RETRY_DEADLINE_MS = 120;
/** What the control process may spend of a deadline: the IPC hop each way comes off it. */
const CONTROL_MARGIN_MS = 6;
/** Most frames held per query, whatever the cluster config asks. */
const MAX_HOLD_PER_QUERY = 64;
/** Query kinds: who owns this flow (key: canonical 5-tuple), who owns this MPTCP token (key: 4 bytes). */
export const QUERY_FLOW = 0;
export const QUERY_TOKEN = 1;
/** A flow whose owner is being asked records backend PENDING - q (always < -1). */
const PENDING = -2;
/** The control process's "no owner answered in time" (-1 is "no owner holds it"). */
export const NO_ANSWER = -2;
/** Owner queries per second at most (flow and token); beyond it the table decides (counted). */
export const QUERY_BUDGET_PER_S = 2048;
/** Flows asked a second time after an unanswered query: remembered this long (and at most RETRY_SLOTS of them), at most MAX_RETRIES_PER_S a second. */
const RETRY_MEMORY_MS = 5000;
const RETRY_SLOTS = 1024;
export const MAX_RETRIES_PER_S = 256;
/** Query ids are seq * MAX_PENDING_QUERIES + slot; seq wraps here (ids stay exact integers). */
const QUERY_SEQ_MASK = 0x3fffff;

/** How the data plane asks the control plane who owns a flow or a token (set by the worker); the answer names queryId. */
export type OwnerQueryFn = (queryId: number, kind: number, key: Uint8Array, waitMs: number) => void;
/**
 * How the data plane hands the control plane an entry other instances need at once, not at the
 * next generation change or refresh: an MPTCP token just learned (its joins arrive ~1 ms later,
 * usually at other instances) and a join subflow just steered (its 5-tuple says nothing of its
 * backend). Once per MPTCP connection or subflow, never per packet.
 */
export type PublishNowFn = (kind: number, key: Uint8Array, backendId: number) => void;
/** Transmits the frame just written to the replay buffer (`len` bytes). */
export type SendFn = (len: number) => void;

/** True if a flow's recorded backend says "its owner is being asked". */
export function isPending(backend: number): boolean {
  return backend <= PENDING;
}

/** The query slot a pending flow waits on. */
export function pendingQuery(backend: number): number {
  return PENDING - backend;
}

/** What the hold needs of the forwarder it serves: its tables, and two steps of its pipeline. */
export interface OwnerHoldHost {
  readonly counters: Float64Array;
  readonly flows: FlowTable;
  readonly tokens: MptcpTokenTable;
  readonly flowTokens: FlowTokens;
  readonly services: ServiceRecords;
  readonly backends: BackendSlots;
  /** Count a flow just recorded on `be`; publish it when it is a join steered by its owner's answer. */
  flowCreated(slot: number, sid: number, be: number, publishJoin: boolean): void;
  /** Run a held frame through the pipeline after its arrival was counted; returns bytes written to tx, or 0. */
  replay(frame: Buffer, len: number, tx: Buffer, nowMs: number): number;
}

export class OwnerHold {
  readonly #host: OwnerHoldHost;
  #ask: OwnerQueryFn | null = null;
  #holdPerQuery = DEFAULT_HOLD_PACKETS;

  // Per query slot.
  readonly #active = new Uint8Array(MAX_PENDING_QUERIES);
  readonly #flowSlot = new Int32Array(MAX_PENDING_QUERIES);
  readonly #service = new Int32Array(MAX_PENDING_QUERIES);
  readonly #hash = new Uint32Array(MAX_PENDING_QUERIES);
  readonly #kind = new Uint8Array(MAX_PENDING_QUERIES);
  readonly #token = new Uint32Array(MAX_PENDING_QUERIES);
  readonly #deadline = new Float64Array(MAX_PENDING_QUERIES);
  readonly #held = new Int32Array(MAX_PENDING_QUERIES);
  /** Bumped on every reuse of the slot: a late answer for an earlier query of the slot is ignored. */
  readonly #seq = new Uint32Array(MAX_PENDING_QUERIES);
  /** 1 while the slot's query is a second ask: an answer to the first (seq - 1) still settles it. */
  readonly #retried = new Uint8Array(MAX_PENDING_QUERIES);
  #cursor = 0;
  #count = 0;
  /** Until when (data-plane clock, ms) a table change counts as recent in the cluster; 0: not. */
  #changeRecentUntil = 0;
  /** Queries asked in the second that began at #budgetSince (QUERY_BUDGET_PER_S). */
  #budgetSince = 0;
  #budgetUsed = 0;
  /** Flows (hash, service) whose unanswered query was asked again, and when (RETRY_MEMORY_MS); a ring. */
  readonly #retryHash = new Uint32Array(RETRY_SLOTS);
  readonly #retryService = new Int32Array(RETRY_SLOTS);
  readonly #retryAt = new Float64Array(RETRY_SLOTS).fill(-Infinity);
  #retryCursor = 0;
  #retrySince = 0;
  #retriesUsed = 0;

  // Per hold slot: the frame bytes, its length, and the query it waits on (-1: free).
  readonly #frames = Buffer.alloc(HOLD_SLOTS * HOLD_SLOT_BYTES);
  readonly #frameViews = slotViews(this.#frames, HOLD_SLOTS, HOLD_SLOT_BYTES);
  readonly #frameQuery = new Int32Array(HOLD_SLOTS).fill(-1);
  readonly #frameLen = new Int32Array(HOLD_SLOTS);
  #holdCursor = 0;
  readonly #keyScratch = new Uint8Array(FLOW_KEY_MAX_BYTES);

  constructor(host: OwnerHoldHost) {
    this.#host = host;
  }

  /** Turn owner queries on (fn) or off (null), holding up to holdPerQuery frames per query (1..64). */
  configure(fn: OwnerQueryFn | null, holdPerQuery: number): void {
    this.#ask = fn;
    this.#holdPerQuery = Math.max(1, Math.min(MAX_HOLD_PER_QUERY, holdPerQuery));
  }

  /** A table change is recent in the cluster until untilMs (data-plane clock); 0: not recent. */
  setChangeRecent(untilMs: number): void {
    this.#changeRecentUntil = untilMs;
  }

  /** Owner queries are on and a table change is recent: a flow with no local state may be pinned elsewhere, off the table's pick. */
  changeRecent(nowMs: number): boolean {
    return this.#ask !== null && nowMs < this.#changeRecentUntil;
  }

  /** Owner queries are on. */
  get enabled(): boolean {
    return this.#ask !== null;
  }

  /** Queries waiting for an answer. */
  get pending(): number {
    return this.#count;
  }

  /**
   * Record the packet's flow as pending and ask its owner (kind QUERY_FLOW) or its token's owner
   * (QUERY_TOKEN). Returns the query slot, or -1 when owner queries are off or every slot is busy.
   */
  ask(rx: Buffer, p: ParsedPacket, hash: number, sid: number, kind: number, token: number, generation: number, nowMs: number): number {
    const ask = this.#ask;
    if (ask === null || this.#count >= MAX_PENDING_QUERIES) return -1;
    if (nowMs - this.#budgetSince >= 1000) {
      this.#budgetSince = nowMs;
      this.#budgetUsed = 0;
    }
    if (this.#budgetUsed >= QUERY_BUDGET_PER_S) {
      this.#host.counters[G.ownerQueriesOverBudget]++;
      return -1;
    }
    this.#budgetUsed++;
    let q = this.#cursor;
    while (this.#active[q] === 1) q = (q + 1) % MAX_PENDING_QUERIES;
    this.#cursor = (q + 1) % MAX_PENDING_QUERIES;
    const host = this.#host;
    const slot = host.flows.insert(rx, p, hash, nowMs, PENDING - q, sid, generation);
    host.flowTokens.reset(slot, -1, nowMs);
    this.#active[q] = 1;
    this.#count++;
    this.#flowSlot[q] = slot;
    this.#service[q] = sid;
    this.#hash[q] = hash;
    this.#kind[q] = kind;
    this.#token[q] = token >>> 0;
    const deadlineMs = kind === QUERY_TOKEN ? TOKEN_QUERY_DEADLINE_MS : QUERY_DEADLINE_MS;
    this.#deadline[q] = nowMs + deadlineMs;
    this.#held[q] = 0;
    host.counters[G.ownerQueries]++;
    const key = this.#keyScratch;
    const keyLen = kind === QUERY_TOKEN ? writeTokenKey(token, key, 0) : copyFlowKey(rx, p, key);
    this.#seq[q] = (this.#seq[q] + 1) & QUERY_SEQ_MASK;
    this.#retried[q] = 0;
    // The control process gets a copy: once per flow miss, not per packet.
    ask(this.#seq[q] * MAX_PENDING_QUERIES + q, kind, key.slice(0, keyLen), deadlineMs - CONTROL_MARGIN_MS);
    return q;
  }

  /** Keep a frame until query q settles; bounded per query and overall, else a counted hold_overflow. Returns 0 (nothing to send now). */
  hold(rx: Buffer, len: number, q: number): number {
    if (this.#active[q] === 0 || this.#held[q] >= this.#holdPerQuery || len > HOLD_SLOT_BYTES) return this.#drop(Drop.hold_overflow);
    for (let i = 0; i < HOLD_SLOTS; i++) {
      const h = (this.#holdCursor + i) % HOLD_SLOTS;
      if (this.#frameQuery[h] < 0) {
        copyBytes(rx, 0, this.#frameViews[h], 0, len);
        this.#frameQuery[h] = q;
        this.#frameLen[h] = len;
        this.#holdCursor = (h + 1) % HOLD_SLOTS;
        this.#held[q]++;
        this.#host.counters[G.heldPackets]++;
        return 0;
      }
    }
    return this.#drop(Drop.hold_overflow);
  }

  /**
   * The owner's answer (a backend id of this instance, -1: no owner holds it, NO_ANSWER: no owner
   * answered in time): record the flow, then release every frame it held; `send` transmits each
   * one written to `tx`. An answer naming a backend for a query already settled is counted late.
   */
  answer(queryId: number, backendId: number, nowMs: number, tx: Buffer, send: SendFn): void {
    if (!Number.isInteger(queryId) || queryId < 0) return;
    const q = queryId % MAX_PENDING_QUERIES;
    const seq = Math.floor(queryId / MAX_PENDING_QUERIES);
    const current = seq === this.#seq[q];
    // The first ask's answer, late, while the same flow's second ask is out: it settles the flow too.
    const firstOfRetry = this.#retried[q] === 1 && seq === ((this.#seq[q] - 1) & QUERY_SEQ_MASK) && backendId >= 0;
    if (this.#active[q] === 0 || !(current || firstOfRetry)) {
      if (backendId >= 0) this.#host.counters[G.ownerLateAnswers]++;
      return;
    }
    this.#settle(q, backendId, nowMs, tx, send);
  }

  /** Queries past their deadline get the table's answer (the control plane did not reply in time). */
  expire(nowMs: number, tx: Buffer, send: SendFn): void {
    if (this.#count === 0) return;
    for (let q = 0; q < MAX_PENDING_QUERIES; q++) {
      if (this.#active[q] === 1 && nowMs >= this.#deadline[q]) {
        this.#host.counters[G.ownerQueryTimeouts]++;
        this.#settle(q, NO_ANSWER, nowMs, tx, send);
      }
    }
  }

  #settle(q: number, backendId: number, nowMs: number, tx: Buffer, send: SendFn): void {
    this.#active[q] = 0;
    this.#count--;
    const host = this.#host;
    const c = host.counters;
    const slot = this.#flowSlot[q];
    const sid = this.#service[q];
    const isToken = this.#kind[q] === QUERY_TOKEN;
    // The flow slot may have been evicted or reused while the query was out.
    const pendingHere = host.flows.backendOf(slot) === PENDING - q;
    let be = host.backends.belongsTo(backendId, sid) ? backendId : -1;
    const ask = this.#ask;
    if (backendId === NO_ANSWER && !isToken) {
      if (pendingHere && ask !== null && this.#mayAskAgain(this.#hash[q], sid, nowMs)) {
        // The table's pick may be wrong: ask once more, the frames still held (the key comes
        // from the pending flow's entry; one copy for the control process, as for the first ask).
        this.#active[q] = 1;
        this.#count++;
        this.#deadline[q] = nowMs + RETRY_DEADLINE_MS;
        this.#seq[q] = (this.#seq[q] + 1) & QUERY_SEQ_MASK;
        this.#retried[q] = 1;
        c[G.ownerRetried]++;
        const len = host.flows.keyOf(slot, this.#keyScratch);
        ask(this.#seq[q] * MAX_PENDING_QUERIES + q, QUERY_FLOW, this.#keyScratch.slice(0, len), RETRY_DEADLINE_MS - CONTROL_MARGIN_MS);
        return;
      }
      c[G.ownerUnanswered]++;
    }
    c[be >= 0 ? G.ownerHits : G.ownerMisses]++;
    let dropHeld = false;
    if (be < 0) {
      if (isToken) {
        c[G.mptcpJoinsUnknown]++;
        if (!host.services.hashesUnknownJoins(sid)) dropHeld = true;
      }
      const table = host.services.tableOf(sid);
      be = table === null ? -1 : table[this.#hash[q] % table.length];
      if (be < 0) dropHeld = true;
    } else if (isToken) {
      c[G.mptcpJoinsSteered]++;
      // Learn it here too, so the connection's next joins need no query.
      host.tokens.learn(this.#token[q], be, sid, 1, nowMs);
    }
    if (pendingHere) {
      if (dropHeld) {
        host.flows.remove(slot);
      } else {
        host.flows.setBackend(slot, be);
        if (isToken) host.flowTokens.reset(slot, this.#token[q], nowMs);
        host.flowCreated(slot, sid, be, isToken && backendId === be);
      }
    }
    const heldDrop = !dropHeld ? Drop.hold_overflow : isToken ? Drop.mptcp_join_unknown_token : Drop.no_backend;
    for (let h = 0; h < HOLD_SLOTS; h++) {
      if (this.#frameQuery[h] !== q) continue;
      this.#frameQuery[h] = -1;
      if (dropHeld || !pendingHere) {
        this.#drop(heldDrop);
        continue;
      }
      const out = host.replay(this.#frameViews[h], this.#frameLen[h], tx, nowMs);
      if (out > 0) send(out);
    }
  }

  /** True (and remembered) if this flow was not asked again in RETRY_MEMORY_MS and this second's budget allows it. */
  #mayAskAgain(hash: number, sid: number, nowMs: number): boolean {
    for (let i = 0; i < RETRY_SLOTS; i++) {
      if (this.#retryHash[i] === hash && this.#retryService[i] === sid && nowMs - this.#retryAt[i] < RETRY_MEMORY_MS) return false;
    }
    if (nowMs - this.#retrySince >= 1000) {
      this.#retrySince = nowMs;
      this.#retriesUsed = 0;
    }
    if (this.#retriesUsed >= MAX_RETRIES_PER_S) return false;
    this.#retriesUsed++;
    const r = this.#retryCursor;
    this.#retryCursor = (r + 1) % RETRY_SLOTS;
    this.#retryHash[r] = hash >>> 0;
    this.#retryService[r] = sid;
    this.#retryAt[r] = nowMs;
    return true;
  }

  #drop(reason: number): number {
    this.#host.counters[DROPS_BASE + reason]++;
    return 0;
  }
}

