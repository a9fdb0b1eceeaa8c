/**
 * The MPTCP token table (mptcp-tokens.ts) is an index over the tokens the flow entries hold
 * (flow-tokens.ts): every flow with a held token names its connection's backend. A data plane
 * that attached to its predecessor's flow table rebuilds the index from the entries, so an
 * MP_JOIN after a restart or an upgrade still reaches the connection's backend. Config time.
 */
import { FLOW_TOKEN_HELD, type FlowTable } from './flow-table.js';
import { LEARN_NEW, type MptcpTokenTable } from './mptcp-tokens.js';

/**
 * The MPTCP version is not kept per flow; entries are rebuilt as version 1 (RFC 8684), which
 * only labels the entry: steering reads the token and backend.
 */
const REBUILT_VERSION = 1;

/** Learn every held token of `flows` into `tokens`; returns how many entries it added. */
export function rebuildTokenIndex(flows: FlowTable, tokens: MptcpTokenTable, nowMs: number): number {
  let added = 0;
  flows.forEachSlot((slot) => {
    if (flows.tokenStateOf(slot) !== FLOW_TOKEN_HELD) return;
    const backend = flows.backendOf(slot);
    // Below 0: an owner query was in flight; its answer went to the previous process.
    if (backend < 0) return;
    if (tokens.learn(flows.tokenOf(slot), backend, flows.serviceOf(slot), REBUILT_VERSION, nowMs) === LEARN_NEW) added++;
  }, nowMs);
  return added;
}
