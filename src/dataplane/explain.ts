/**
 * `sluice explain`, the data-plane side: for one 5-tuple, what the Forwarder decides, read off
 * the same tables in the same order as Forwarder#pipeline (match -> flow lookup -> steer ->
 * next hop), WITHOUT side effects: every lookup is a peek (nothing expires, nothing is
 * refreshed, no counter moves). Control-side work (allocates), once per admin request.
 *
 * The tuple is written into a frame and parsed by the real parser, so the hash and the lookups
 * see exactly the bytes a packet of that flow would carry.
 */
import { DROP_REASONS, Drop } from '../packet/drop-reasons.js';
import { buildFrame } from '../packet/build.js';
import { parseFrame } from '../packet/parse.js';
import { ParsedPacket, TCP_ACK } from '../packet/parsed-packet.js';
import { normalizeAddress } from '../packet/address.js';
import { copyFlowKey, flowHash, fmix32, FLOW_KEY_MAX_BYTES } from '../hash/murmur3.js';
import { maskedSource } from './affinity-table.js';
import { FLOW_CLOSING } from './flow-table.js';
import { isPending } from './owner-hold.js';
import type { Forwarder } from './forwarder.js';
import type { ExplainDecision, ExplainQuery, ExplainTuple } from './contract/messages.js';

/** The client port explained when the query names none and the client has no tracked flow. */
export const REPRESENTATIVE_CLIENT_PORT = 40000;
/** Most tracked flows of one client explained in one answer. */
export const EXPLAIN_MAX_FLOWS = 64;

const dropName = (reason: number): string => DROP_REASONS[reason];

/**
 * Explain every flow the query names: its one 5-tuple; without a client port, each tracked flow
 * of that client on the VIP and port (at most EXPLAIN_MAX_FLOWS), else the table pick for
 * REPRESENTATIVE_CLIENT_PORT. Throws RangeError on an address that is not IPv4/IPv6 text.
 */
export function explainQuery(fwd: Forwarder, q: ExplainQuery, nowMs: number): ExplainDecision[] {
  const client = normalizeAddress(q.client);
  const vip = normalizeAddress(q.vip);
  if (client === undefined) throw new RangeError(`client ${JSON.stringify(q.client)} is not an IPv4 or IPv6 address`);
  if (vip === undefined) throw new RangeError(`VIP ${JSON.stringify(q.vip)} is not an IPv4 or IPv6 address`);
  if (client.includes(':') !== vip.includes(':')) throw new RangeError(`client ${client} and VIP ${vip} are of different address families`);
  const base = { protocol: q.protocol, client, vip, port: q.port };
  if (q.clientPort !== undefined) return [explainFlow(fwd, { ...base, clientPort: q.clientPort }, q.token, nowMs, 'given')];
  const ports: number[] = [];
  const proto = q.protocol === 'tcp' ? 6 : 17;
  fwd.flows.forEach(nowMs, (f) => {
    if (ports.length < EXPLAIN_MAX_FLOWS && f.protocol === proto && f.src === client && f.dst === vip && f.dstPort === q.port) ports.push(f.srcPort);
  });
  if (ports.length === 0) return [explainFlow(fwd, { ...base, clientPort: REPRESENTATIVE_CLIENT_PORT }, q.token, nowMs, 'representative')];
  return ports.map((clientPort) => explainFlow(fwd, { ...base, clientPort }, q.token, nowMs, 'tracked'));
}

/** One 5-tuple: what its next packet meets (and, for TCP, what a SYN and a mid-flow packet each get). */
export function explainFlow(fwd: Forwarder, t: ExplainTuple, token: number | undefined, nowMs: number, portSource: ExplainDecision['portSource']): ExplainDecision {
  const v6 = t.client.includes(':');
  const tcp = t.protocol === 'tcp';
  const ip = { src: t.client, dst: t.vip };
  const l4 = { sport: t.clientPort, dport: t.port };
  // A mid-flow segment (ACK): the packet whose fate depends on the flow table and the owners.
  const frame = buildFrame({ ...(v6 ? { ipv6: ip } : { ipv4: ip }), ...(tcp ? { tcp: { ...l4, flags: TCP_ACK } } : { udp: l4 }) });
  const p = new ParsedPacket();
  const out: ExplainDecision = {
    ...t,
    portSource,
    serviceId: null,
    hash: null,
    tableSize: null,
    tableSlot: null,
    tableBackendId: null,
    affinityBackendId: null,
    newFlowBackendId: null,
    tracked: null,
    mptcpToken: null,
    tokenBackendId: null,
    ownerKey: null,
    ownerQueries: false,
    next: { backendId: null, by: 'drop', drop: null },
    generation: 0,
  };
  const view = fwd.explainView();
  out.generation = view.generation;
  out.ownerQueries = view.ownerQueries;
  const parsed = parseFrame(frame, frame.length, p);
  if (parsed !== Drop.ok) {
    out.next.drop = dropName(parsed);
    return out;
  }
  const key = new Uint8Array(FLOW_KEY_MAX_BYTES);
  out.ownerKey = Buffer.from(key.subarray(0, copyFlowKey(frame, p, key))).toString('hex');
  const sid = view.match.match(frame, p.dstAddrOffset, p.addrLen, p.protocol, p.dstPort);
  if (sid < 0) {
    out.next.drop = dropName(Drop.no_service);
    return out;
  }
  out.serviceId = sid;
  const hash = flowHash(frame, p, view.hashSeed);
  out.hash = hash >>> 0;
  const table = view.services.tableOf(sid);
  if (table !== null) {
    out.tableSize = table.length;
    out.tableSlot = hash % table.length;
    out.tableBackendId = table[out.tableSlot];
  }
  // What a new flow of this tuple gets: client affinity if the service has it, else the slot.
  let pick = out.tableBackendId ?? -1;
  let pickBy: ExplainDecision['next']['by'] = 'table';
  if (table !== null && view.services.hasAffinity(sid)) {
    const k = new Uint32Array(4);
    maskedSource(frame, p.srcAddrOffset, p.addrLen, view.services.affinityPrefix(sid, p.addrLen), k);
    const h = fmix32(fmix32(fmix32(fmix32(fmix32(view.hashSeed ^ view.services.stableHash(sid)) ^ k[0]) ^ k[1]) ^ k[2]) ^ k[3]);
    const known = fwd.affinity.peek(sid, k, h, nowMs, view.services.affinityTimeoutMs(sid));
    out.affinityBackendId = known;
    pickBy = 'affinity';
    pick = known >= 0 && view.backends.belongsTo(known, sid) && view.backends.isServing(known) ? known : table[h % table.length];
  }
  out.newFlowBackendId = pick >= 0 ? pick : null;

  const slot = fwd.flows.peek(frame, p, hash, nowMs);
  let keeps = false;
  if (slot >= 0) {
    const be = fwd.flows.backendOf(slot);
    const pending = isPending(be);
    keeps = !pending && view.backends.keepsFlows(be, sid);
    out.tracked = {
      backendId: pending ? null : be,
      pendingOwnerQuery: pending,
      since: new Date(fwd.flows.createdOf(slot)).toISOString(),
      ageMs: nowMs - fwd.flows.createdOf(slot),
      idleMs: nowMs - fwd.flows.lastSeenOf(slot),
      state: fwd.flows.stateOf(slot) === FLOW_CLOSING ? 'closing' : 'active',
      generation: fwd.flows.generationOf(slot),
      keeps,
    };
    const held = view.flowTokens.tokenOf(slot);
    if (held >= 0) out.mptcpToken = held >>> 0;
    if (pending) {
      // A packet is held for its owner's answer (the entry does not say whether a flow's or a join's token's).
      out.next = { backendId: null, by: 'owner-query', drop: null };
      return out;
    }
  }
  const asked = token ?? out.mptcpToken ?? undefined;
  if (asked !== undefined) {
    out.mptcpToken = asked >>> 0;
    const ts = fwd.tokens.peekSlot(asked, nowMs);
    out.tokenBackendId = ts >= 0 ? fwd.tokens.backendAt(ts) : null;
  }
  if (keeps) {
    out.next = { backendId: out.tracked?.backendId ?? null, by: 'flow-entry', drop: null };
  } else if (token !== undefined && tcp && view.services.isMptcp(sid)) {
    // The query names an MP_JOIN SYN: it follows its connection's token.
    const owner = out.tokenBackendId ?? -1;
    if (owner >= 0 && view.backends.belongsTo(owner, sid)) out.next = { backendId: owner, by: 'mptcp-token', drop: null };
    else if (view.ownerQueries) out.next = { backendId: null, by: 'owner-query', drop: null, asks: 'token' };
    else if (!view.services.hashesUnknownJoins(sid)) out.next = { backendId: null, by: 'drop', drop: dropName(Drop.mptcp_join_unknown_token) };
    else out.next = newFlow(pick, pickBy);
  } else if (tcp && view.ownerQueries) {
    // An untracked mid-flow segment asks its owner (a SYN would take newFlowBackendId).
    out.next = { backendId: null, by: 'owner-query', drop: null, asks: 'flow' };
  } else out.next = newFlow(pick, pickBy);
  if (table === null && out.next.by !== 'flow-entry' && out.next.by !== 'owner-query' && out.next.by !== 'mptcp-token') out.next = { backendId: null, by: 'drop', drop: dropName(Drop.no_backend) };
  const be = out.next.backendId;
  if (be !== null && !view.backends.hasNextHop(be)) out.next = { backendId: be, by: out.next.by, drop: dropName(Drop.no_neighbor) };
  return out;
}

function newFlow(pick: number, by: ExplainDecision['next']['by']): ExplainDecision['next'] {
  return pick >= 0 ? { backendId: pick, by, drop: null } : { backendId: null, by: 'drop', drop: dropName(Drop.no_backend) };
}
