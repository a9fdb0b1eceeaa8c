/**
 * The messages between the control process (src/runtime/, supervisor.ts is its end of the pipe)
 * and the data-plane process (src/dataplane/worker.ts), framed on a unix socket
 * (socket-channel.ts, v8 structured clone), so typed arrays, Maps and Uint8Arrays cross as they
 * are. The data plane outlives its control process; finding and adopting it: handover.ts.
 *
 *   control process                                       data-plane process
 *   ---------------                                       ------------------
 *   hello {contract}                ---- on connect ----->  (every build keeps hello's shape)
 *                                   <-- hello {pid, build, interface, generation, ...}
 *   init {DataplaneInit}            ---- once, new dp --->  maps or attaches the flow table,
 *                                                           opens capture, applies spec
 *                                   <-- ready {engine} ---  or fatal {message}, then exits
 *                                                           (answer within START_TIMEOUT_MS 15 s,
 *                                                            else the child is killed)
 *   owner-queries {enabled, hold}   ---- after ready ---->  (cluster with sync only; no answer)
 *
 *   generation {requestId, spec}    ---- each reload ---->  Forwarder.apply(spec)
 *                                   <-- applied | apply-failed {requestId, generation}
 *   flows {requestId, filter}       ---- admin /flows --->  one flow-table scan
 *                                   <-- flows {requestId, rows, total}
 *   flow-counts {requestId}         ---- admin /backends >  one flow-table scan
 *                                   <-- flow-counts {requestId, counts, closing}  (per backend id)
 *   explain {requestId, query}      ---- admin /explain ->  peeks only (dataplane/explain.ts)
 *                                   <-- explain {requestId, decisions} | explain-failed {message}
 *     (these four are the requests: src/dataplane/contract/request.ts gives each a requestId,
 *      waits REQUEST_TIMEOUT_MS below and always clears its timer; a late answer is dropped)
 *
 *   publish                         ---- before a scrape >  (answered by the next counters)
 *                                   <-- counters {Float64Array}   every COUNTER_PUBLISH_MS too
 *
 *   (cluster with sync only)
 *                                   <-- owner-query {qid, kind, key}   a flow or MP_JOIN nobody
 *                                                           here knows; its frames are held
 *   owner-answer {qid, backendId}   ---- asap ----------->  releases the held frames; the data
 *                                                           plane expires the query itself after
 *                                                           QUERY_DEADLINE_MS (50 ms; a token's
 *                                                           150 ms), so the
 *                                                           control process keeps no timer
 *                                   <-- owner-entries {entries}   learned tokens and flows to
 *                                                           publish to their owners (no answer)
 *   owner-recent {forMs}            ---- on a change ---->  a table change is recent in the
 *                                                           cluster for forMs more (UDP asks too)
 *   publish-owners                  ---- every 10 s ----->  answered by owner-entries chunks
 *
 *   shutdown                        ---- on stop -------->  closes capture, exits (SIGKILL
 *                                                           after 3 s if it does not)
 *   handover                        ---- on replace ----->  closes capture, stops writing the
 *                                   <-- handed-over ------  table, stops listening, exits; the
 *                                                           new data plane attaches the table
 *   (the control process closing its end stops nothing: the data plane forwards on with the
 *    generation it has, and the next control process adopts it with a generation request)
 */
import type { DataplaneInit, DataplaneSpec } from './spec.js';
import type { DataplaneHello, FlowTableOrigin } from './handover.js';

/** Owner-entry kinds as the forwarder numbers them (the cluster codec names them 'flow'/'token'/'fragment'). */
export const OWNER_KIND = { flow: 0, token: 1, fragment: 2 } as const;

/** One entry learned by the data plane for the owners: kind (OWNER_KIND), key bytes, local backend id. */
export interface OwnerEntry {
  kind: number;
  key: Uint8Array;
  backendId: number;
}

/** The filter of a `flows` request (backend addresses already turned into local backend ids). */
export interface FlowFilter {
  limit: number;
  vip?: string;
  backendIds?: number[];
  client?: string;
}

/** Control process -> data-plane process. */
export type ToDataplane =
  | { type: 'hello'; contract: number }
  | { type: 'init'; init: DataplaneInit }
  | { type: 'generation'; requestId: number; spec: DataplaneSpec }
  | ({ type: 'flows'; requestId: number } & FlowFilter)
  | { type: 'flow-counts'; requestId: number }
  | { type: 'explain'; requestId: number; query: ExplainQuery }
  /** Cluster with sync: turn owner queries on (holdPackets per flow) or off. */
  | { type: 'owner-queries'; enabled: boolean; holdPackets: number }
  /** The owner's answer to an owner-query: a local backend id, -1 (no owner holds it), or -2 (no owner answered in time). */
  | { type: 'owner-answer'; qid: number; backendId: number }
  /**
   * Cluster with sync: a table change is recent in the cluster for forMs more (0: not). Until
   * then a UDP packet with no local flow asks its owner. Sent on each change and when the
   * window's end moves (owner-bridge.ts).
   */
  | { type: 'owner-recent'; forMs: number }
  /** Send the publishable entries now (after a generation change, and on the refresh timer). */
  | { type: 'publish-owners' }
  /** Send a counters snapshot now. */
  | { type: 'publish' }
  | { type: 'shutdown' }
  /** Stop capturing and writing the flow table, answer handed-over, exit: a new data plane takes over. */
  | { type: 'handover' };

export interface FlowRow {
  protocol: 'tcp' | 'udp';
  client: string;
  clientPort: number;
  vip: string;
  port: number;
  backendId: number;
  serviceId: number;
  ageMs: number;
  idleMs: number;
  state: 'active' | 'closing';
  /** The packet worker whose table holds the flow (dataplane.workers; the fanout hash put it there). */
  worker?: number;
}

/** The flow `sluice explain` asks about (addresses as text; the data plane parses them). */
export interface ExplainTuple {
  protocol: 'tcp' | 'udp';
  client: string;
  clientPort: number;
  vip: string;
  port: number;
}

/** An explain request: without clientPort, every tracked flow of the client on vip:port. */
export type ExplainQuery = Omit<ExplainTuple, 'clientPort'> & {
  clientPort?: number;
  /** Explain an MP_JOIN SYN carrying this connection token. */
  token?: number;
};

/** How a flow's next packet is decided (the order of Forwarder#pipeline). */
export type ExplainBy = 'flow-entry' | 'mptcp-token' | 'owner-query' | 'affinity' | 'table' | 'drop';

/** What the data plane decides for one 5-tuple, read without side effects (dataplane/explain.ts). */
export interface ExplainDecision extends ExplainTuple {
  /** given: the query's port; tracked: a tracked flow of the client; representative: no port was given and none is tracked. */
  portSource: 'given' | 'tracked' | 'representative';
  generation: number;
  serviceId: number | null;
  /** Flow hash (murmur3 of the canonical key under the generation's seed), unsigned. */
  hash: number | null;
  tableSize: number | null;
  /** hash % tableSize: the Maglev slot. */
  tableSlot: number | null;
  /** The backend id in that slot in this generation (-1: no backend takes new flows). */
  tableBackendId: number | null;
  /** The client-affinity entry's backend (-1: none live); null when the service has no affinity. */
  affinityBackendId: number | null;
  /** The backend a new flow (a SYN, a first UDP datagram) of this tuple would get. */
  newFlowBackendId: number | null;
  tracked: {
    /** null while an owner query for it is in flight. */
    backendId: number | null;
    pendingOwnerQuery: boolean;
    since: string;
    ageMs: number;
    idleMs: number;
    state: 'active' | 'closing';
    generation: number;
    /** The entry still decides (its backend is in the service and not down). */
    keeps: boolean;
  } | null;
  /** The MPTCP token the flow holds, or the one asked about. */
  mptcpToken: number | null;
  /** The token table's backend for that token, if it has a live entry. */
  tokenBackendId: number | null;
  /** Canonical flow key (hex), for the cluster's owner and replica. */
  ownerKey: string | null;
  /** Owner queries are on (cluster with sync). */
  ownerQueries: boolean;
  /** What the next mid-flow packet (TCP ACK, UDP datagram) meets: its backend and how it was chosen, or the drop reason it gets. */
  next: {
    backendId: number | null;
    by: ExplainBy;
    drop: string | null;
    /** With by "owner-query": what the data plane asks the cluster about (an untracked join SYN asks for its token). */
    asks?: 'flow' | 'token';
  };
}

/** Data-plane process -> control process. */
export type FromDataplane =
  | DataplaneHello
  | { type: 'ready'; engine: string; flowTable: FlowTableOrigin }
  | { type: 'handed-over'; flows: number }
  /** Another control process connected and drives this data plane now (sent to the old one before its channel is closed). */
  | { type: 'superseded'; by: number }
  | { type: 'fatal'; message: string }
  | { type: 'applied'; requestId: number; generation: number }
  | { type: 'apply-failed'; requestId: number; generation: number; message: string }
  /** workers: per-worker figures (worker-pool.ts WORKER_FIGURE, WORKER_FIGURES per worker); absent from older builds. */
  | { type: 'counters'; counters: Float64Array; workers?: Float64Array }
  | { type: 'flows'; requestId: number; rows: FlowRow[]; total: number }
  /** counts: live flows per backend id; closing: of those, the TCP-closing ones (ids with none absent). */
  | { type: 'flow-counts'; requestId: number; counts: Map<number, number>; closing?: Map<number, number> }
  | { type: 'explain'; requestId: number; decisions: ExplainDecision[] }
  | { type: 'explain-failed'; requestId: number; message: string }
  /** waitMs: how long the control process may wait for the owners (the data plane holds the frames a little longer). */
  | { type: 'owner-query'; qid: number; kind: number; key: Uint8Array; waitMs?: number }
  | { type: 'owner-entries'; entries: OwnerEntry[] };

/** The messages that expect an answer, by type. */
export type DataplaneRequest = Extract<ToDataplane, { requestId: number }>;
export type RequestType = DataplaneRequest['type'];
/** A request as its sender writes it: the request helper adds the id. */
export type RequestBody<K extends RequestType> = Omit<Extract<DataplaneRequest, { type: K }>, 'requestId'> & { type: K };

/** The answers, and which answers which request. */
export type DataplaneReply = Extract<FromDataplane, { requestId: number }>;
export interface ReplyOf {
  generation: Extract<FromDataplane, { type: 'applied' | 'apply-failed' }>;
  flows: Extract<FromDataplane, { type: 'flows' }>;
  'flow-counts': Extract<FromDataplane, { type: 'flow-counts' }>;
  explain: Extract<FromDataplane, { type: 'explain' | 'explain-failed' }>;
}
export const REPLY_TYPES: { readonly [K in RequestType]: readonly ReplyOf[K]['type'][] } = {
  generation: ['applied', 'apply-failed'],
  flows: ['flows'],
  'flow-counts': ['flow-counts'],
  explain: ['explain', 'explain-failed'],
};

/**
 * How long the control process waits for each answer. An apply builds Maglev tables and may
 * reopen the capture filter; the two scans walk the whole flow table on the packet loop.
 */
export const REQUEST_TIMEOUT_MS: { readonly [K in RequestType]: number } = {
  generation: 10_000,
  flows: 2_000,
  'flow-counts': 2_000,
  explain: 2_000,
};

/** The messages the data plane sends unasked (everything but answers and the start handshake). */
export type DataplaneNotice = Exclude<FromDataplane, DataplaneReply | { type: 'ready' | 'fatal' | 'hello' | 'handed-over' | 'superseded' }>;
