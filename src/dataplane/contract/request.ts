/**
 * The one request/response correlator of the control process's end of the pipe (messages.ts
 * draws which messages are requests). Each request gets an id and a timer from
 * REQUEST_TIMEOUT_MS; the timer is cleared on every way out (answer, timeout, send refused,
 * process gone), so a finished request leaves nothing behind. An answer nobody waits for (it
 * came after its timeout) is ignored.
 */
import {
  REPLY_TYPES,
  REQUEST_TIMEOUT_MS,
  type DataplaneReply,
  type DataplaneRequest,
  type ReplyOf,
  type RequestBody,
  type RequestType,
  type ToDataplane,
} from './messages.js';

/** The data plane did not answer in time. */
export class RequestTimeout extends Error {
  constructor(readonly requestType: RequestType, readonly timeoutMs: number) {
    super(`the data plane did not answer a ${requestType} request within ${timeoutMs} ms`);
  }
}

/** There is no data-plane process to ask (not started, restarting, or it exited while asked). */
export class DataplaneGone extends Error {}

interface Pending {
  timer: NodeJS.Timeout;
  /** Takes the answer if it is of the kind this request expects; false if not. */
  settle: (reply: DataplaneReply) => boolean;
  reject: (e: Error) => void;
}

function answers<K extends RequestType>(type: K, reply: DataplaneReply): reply is ReplyOf[K] {
  return (REPLY_TYPES[type] as readonly string[]).includes(reply.type);
}

export class RequestTracker {
  #lastId = 0;
  readonly #pending = new Map<number, Pending>();

  /** Requests waiting for an answer now. */
  get outstanding(): number {
    return this.#pending.size;
  }

  /**
   * Sends `body` with a fresh id through `send` (false = nothing to send it to) and resolves with
   * its answer; rejects with RequestTimeout or DataplaneGone.
   */
  request<K extends RequestType>(body: RequestBody<K>, send: (msg: ToDataplane) => boolean): Promise<ReplyOf[K]> {
    // Ids wrap long before they could collide with one still outstanding.
    this.#lastId = (this.#lastId % 0x7fffffff) + 1;
    const requestId = this.#lastId;
    const timeoutMs = REQUEST_TIMEOUT_MS[body.type];
    return new Promise<ReplyOf[K]>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(requestId);
        reject(new RequestTimeout(body.type, timeoutMs));
      }, timeoutMs);
      this.#pending.set(requestId, {
        timer,
        reject,
        settle: (reply) => {
          if (!answers(body.type, reply)) return false;
          resolve(reply);
          return true;
        },
      });
      const msg = { ...body, requestId } as DataplaneRequest;
      if (!send(msg)) this.#finish(requestId)?.reject(new DataplaneGone('the data-plane process is not running'));
    });
  }

  /** Hands an answer to its request. False if nobody waits for it (late, or of the wrong kind). */
  settle(reply: DataplaneReply): boolean {
    const p = this.#pending.get(reply.requestId);
    if (!p || !p.settle(reply)) return false;
    this.#finish(reply.requestId);
    return true;
  }

  /** The data-plane process went away: every outstanding request fails now, not at its timeout. */
  failAll(reason: string): void {
    for (const id of [...this.#pending.keys()]) this.#finish(id)?.reject(new DataplaneGone(reason));
  }

  #finish(requestId: number): Pending | undefined {
    const p = this.#pending.get(requestId);
    if (!p) return undefined;
    clearTimeout(p.timer);
    this.#pending.delete(requestId);
    return p;
  }
}
