/**
 * Per flow: the MPTCP token of the flow's connection, if known. The token lives in the flow's own
 * entry of the flow table (flow-table.ts: state, token, last refresh); this is the forwarder's and
 * owner-hold's vocabulary for it. Allocation-free.
 *
 * A flow is in one of three states: no token learned yet, holds its connection's token (and keeps
 * it alive in the token table while the subflow lives), or its token collided with another
 * connection's (decided once: Linux repeats MP_CAPABLE until the server's first DSS).
 */
import { FLOW_TOKEN_COLLIDED, FLOW_TOKEN_HELD, FLOW_TOKEN_NONE, type FlowTable } from './flow-table.js';
import type { MptcpTokenTable } from './mptcp-tokens.js';

/** How often a flow that holds an MPTCP token refreshes it (the token lives while any subflow does). */
const TOKEN_TOUCH_MS = 1000;

export class FlowTokens {
  readonly #flows: FlowTable;

  constructor(flows: FlowTable) {
    this.#flows = flows;
  }

  /** A slot just filled: it holds `token` (a join steered to its connection), or none yet when token < 0. */
  reset(slot: number, token: number, nowMs: number): void {
    this.#flows.setToken(slot, token >= 0 ? FLOW_TOKEN_HELD : FLOW_TOKEN_NONE, token >= 0 ? token : 0, nowMs);
  }

  /** No token decided yet for this flow: its key-carrying ACK may teach one. */
  wantsToken(slot: number): boolean {
    return this.#flows.tokenStateOf(slot) === FLOW_TOKEN_NONE;
  }

  /** The flow's connection token was just learned (or collided with another connection's). */
  record(slot: number, token: number, collided: boolean, nowMs: number): void {
    this.#flows.setToken(slot, collided ? FLOW_TOKEN_COLLIDED : FLOW_TOKEN_HELD, token, nowMs);
  }

  /** The connection token the flow holds (a steered join's, or one learned from its key), or -1. */
  tokenOf(slot: number): number {
    return this.#flows.tokenStateOf(slot) === FLOW_TOKEN_NONE ? -1 : this.#flows.tokenOf(slot);
  }

  /** A packet of the flow went by: keep its connection's token alive, at most once per TOKEN_TOUCH_MS. */
  refresh(slot: number, nowMs: number, tokens: MptcpTokenTable): void {
    if (this.#flows.tokenRefreshDue(slot, nowMs, TOKEN_TOUCH_MS)) tokens.touch(this.#flows.tokenOf(slot), nowMs);
  }
}
