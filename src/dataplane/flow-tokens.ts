/**
 * Per flow slot: the MPTCP token of the flow's connection, if known. Side arrays indexed by the
 * flow table's slot (reset whenever a slot is filled), kept apart from FlowTable until the token
 * fields move into it. Allocation-free.
 *
 * A slot is in one of three states: no token learned yet, holds its connection's token (and keeps
 * it alive in the token table while the subflow lives), or its token collided with another
 * connection's (decided once: Linux repeats MP_CAPABLE until the server's first DSS).
 */
import type { MptcpTokenTable } from './mptcp-tokens.js';

const TOKEN_NONE = 0;
const TOKEN_HELD = 1;
const TOKEN_COLLIDED = 2;

/** How often a flow that holds an MPTCP token refreshes it (the token lives while any subflow does). */
const TOKEN_TOUCH_MS = 1000;

export class FlowTokens {
  readonly #state: Uint8Array;
  readonly #token: Uint32Array;
  readonly #touched: Float64Array;

  constructor(flowCapacity: number) {
    this.#state = new Uint8Array(flowCapacity);
    this.#token = new Uint32Array(flowCapacity);
    this.#touched = new Float64Array(flowCapacity);
  }

  /** A slot just filled: it holds `token` (a join steered to its connection), or none yet when token < 0. */
  reset(slot: number, token: number, nowMs: number): void {
    this.#state[slot] = token >= 0 ? TOKEN_HELD : TOKEN_NONE;
    this.#token[slot] = token >= 0 ? token : 0;
    this.#touched[slot] = nowMs;
  }

  /** No token decided yet for this flow: its key-carrying ACK may teach one. */
  wantsToken(slot: number): boolean {
    return this.#state[slot] === TOKEN_NONE;
  }

  /** The flow's connection token was just learned (or collided with another connection's). */
  record(slot: number, token: number, collided: boolean, nowMs: number): void {
    this.#state[slot] = collided ? TOKEN_COLLIDED : TOKEN_HELD;
    this.#token[slot] = token;
    this.#touched[slot] = nowMs;
  }

  /** The connection token the flow holds (a steered join's, or one learned from its key), or -1. */
  tokenOf(slot: number): number {
    return this.#state[slot] === TOKEN_NONE ? -1 : this.#token[slot];
  }

  /** A packet of the flow went by: keep its connection's token alive, at most once per TOKEN_TOUCH_MS. */
  refresh(slot: number, nowMs: number, tokens: MptcpTokenTable): void {
    if (this.#state[slot] === TOKEN_HELD && nowMs - this.#touched[slot] >= TOKEN_TOUCH_MS) {
      tokens.touch(this.#token[slot], nowMs);
      this.#touched[slot] = nowMs;
    }
  }
}
