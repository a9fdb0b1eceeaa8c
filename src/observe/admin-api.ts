/**
 * The admin API's requests and answers (JSON over the admin unix socket), written once: the
 * daemon's routes (observe/admin.ts) produce these types, the CLI (src/cli.ts) and the tests read
 * them. A field added here appears in `sluice status --json` / `backends --json` / `flows --json`.
 *
 *   GET  /status                                   -> StatusReport
 *   GET  /backends                                 -> BackendsReport
 *   GET  /flows?vip=&backend=&client=&limit=       -> FlowsReport          (limit 1..10000, default 100;
 *                                                     404 if vip or backend is not configured)
 *   GET  /explain?vip=&port=&protocol=&client=&clientPort=&token=
 *                                                  -> ExplainReport        (404 if no service has the VIP)
 *   POST /backends/{drain|undrain|weight}?address=&service=&weight=
 *                                                  -> OperateResult        (404 if no backend matched)
 *   POST /reload                                   -> ReloadResult         (409 if refused)
 *   POST /restart                                  -> RestartResult        (202; the control process then exits, the data plane forwards on)
 *   POST /instance/{drain|undrain}                 -> InstanceResult       (409 without an "announce" section)
 *   anything wrong with the request                -> AdminError           (400, 404; 500 on a failure)
 */
import type { WorkerFigures } from '../dataplane/contract/counters.js';
import type { AnnounceStatus } from '../announce/announcer.js';
import type { Forwarding, Protocol } from '../config/types.js';
import type { ControlCounters, ControlPlaneStatus } from '../control/index.js';
import type { ExplainDecision, ExplainQuery, FlowRow } from '../dataplane/contract/messages.js';

export interface AdminError {
  error: string;
  /** not-configured: the request names a VIP, backend or service the config does not have (the CLI exits 2). */
  code?: 'not-configured';
}

/** The outcome of the last reload (file change, SIGHUP or POST /reload), null before the first. */
export interface LastReload {
  at: string;
  ok: boolean;
  message: string;
}

/** One backend of a service in /status: its place in the current generation and its counters. */
export interface ServiceBackendReport {
  address: string;
  /** Effective weight (operator overrides applied). */
  weight: number;
  /** What the current generation does with it: serving, spare-serving, spare-standby, draining, down, unresolved. */
  status: string;
  mac: string | null;
  /** Why its next hop is unresolved, if it is. */
  problem: string | null;
  packets: number;
  bytes: number;
  flowsCreated: number;
}

export interface ServiceReport {
  name: string;
  vip: string;
  port: number | 'all';
  protocol: Protocol;
  forwarding: Forwarding;
  backends: ServiceBackendReport[];
}

/** The cluster as /status shows it: the control plane's status, latency histogram left to /metrics. */
export type ClusterReport = Omit<ControlPlaneStatus, 'counters'> & {
  sync: boolean;
  counters: Omit<ControlCounters, 'queryLatency'>;
};

export interface StatusReport {
  version: string;
  startedAt: string;
  config: string;
  /** The control process's current generation. */
  generation: number;
  /** generation: the one the data plane last reported running. */
  /** origin: started by this control process, adopted (found running), or replaced (another build's flow table taken over); keptFlows: flows it kept then. */
  /** workers: each packet worker's own figures (dataplane.workers), worker 0 first; absent before the first counters arrive. */
  dataplane: { engine: string; up: boolean; pid: number | null; restarts: number; generation: number; origin?: string; keptFlows?: number; workers?: WorkerFigures[] };
  interface: string;
  egressInterface: string;
  lastReload: LastReload | null;
  cluster: ClusterReport | null;
  /** BGP announcement of the VIPs; null without an "announce" section. */
  announce: AnnounceStatus | null;
  /** active: every live flow (closing ones included); closing: of those, TCP flows after FIN/RST (absent if the data plane did not answer). */
  flows: { active: number; closing?: number; capacity: number; created: number; evictions: number };
  traffic: { rxFrames: number; rxBytes?: number; txFrames: number; txBytes?: number; txErrors: number; captureDropped: number };
  /** Non-zero drop counters by reason (packet/drop-reasons.ts). */
  drops: Record<string, number>;
  services: ServiceReport[];
}

export interface BackendHealthReport {
  check: string;
  state: string;
  lastError: string | null;
  lastChange: string | null;
  /** When the last probe ended (ISO time); absent or null before the first. */
  lastCheck?: string | null;
  /** How long the last probe took, in ms; absent or null before the first. */
  latencyMs?: number | null;
}

/** One backend of one service in /backends. */
export interface BackendStatus {
  service: string;
  address: string;
  weight: number;
  state: 'active' | 'draining';
  role: 'primary' | 'spare';
  /** What the current generation does with it (as in ServiceBackendReport). */
  status: string;
  /** An operator drain or weight is in force. */
  overridden: boolean;
  health: BackendHealthReport | null;
  mac: string | null;
  problem: string | null;
  /** Live flows on it (closing ones included). */
  activeFlows: number;
  /** Of activeFlows, the TCP-closing ones. */
  closingFlows?: number;
  flowsCreated: number;
  packets: number;
  bytes: number;
}

export interface BackendsReport {
  backends: BackendStatus[];
}

export interface FlowQuery {
  vip?: string;
  /** A backend address (every service's backend at it). */
  backend?: string;
  client?: string;
  limit: number;
}

/** A flow-table row with its backend and service by name. */
export type FlowReportRow = FlowRow & { backend: string; service: string };

export interface FlowsReport {
  rows: FlowReportRow[];
  /** Matching flows, of which at most `limit` are in rows. */
  total: number;
}

/** What the cluster knows of a flow key (or a join's token): its owner and replica instances, and what they hold. */
export interface ExplainCluster {
  /** The key asked about: the flow's, or the MPTCP token of a join SYN the data plane would ask for. */
  kind: 'flow' | 'token';
  /** Rendezvous owner then replica over the live instances (instance ids). */
  owner: string | null;
  replica: string | null;
  self: string;
  /** This instance's own entry for the key (it holds one only as owner or replica), "service/address". */
  heldHere: string | null;
  /**
   * The owner's (or replica's) answer to a query for the key, "service/address" or null if neither
   * holds it; not asked when this instance is the owner or the replica and holds the entry
   * (heldHere says), as the data plane's own query would not ask.
   */
  heldByOwners: string | null;
  asked: boolean;
}

/** One explained flow: the data plane's decision with its ids turned into names. */
export interface ExplainFlowReport extends ExplainDecision {
  service: string | null;
  tableBackend: string | null;
  affinityBackend: string | null;
  newFlowBackend: string | null;
  trackedBackend: string | null;
  tokenBackend: string | null;
  /**
   * The backend the flow's next packet goes to: null if dropped; with next.by "owner-query", the
   * backend the cluster's answer gives it (the owner's entry, else the table's pick), null
   * without a cluster or when the answer drops it.
   */
  nextBackend: string | null;
  /** Null without a cluster. */
  cluster: ExplainCluster | null;
}

export interface ExplainReport {
  query: ExplainQuery;
  flows: ExplainFlowReport[];
}

export type OperateAction = 'drain' | 'undrain' | 'weight';

export interface OperateRequest {
  action: OperateAction;
  address: string;
  /** Only in this service; default every service that has the address. */
  service?: string;
  /** For 'weight': 0..1000. */
  weight?: number;
}

export interface OperateResult {
  ok: boolean;
  message: string;
  /** Services whose backend changed. */
  matched: string[];
}

export interface ReloadResult {
  ok: boolean;
  message: string;
}

export type InstanceAction = 'drain' | 'undrain';

/** The answer to an instance drain or undrain, with the announcement state after it settled. */
export interface InstanceResult {
  ok: boolean;
  message: string;
  announce: AnnounceStatus | null;
}

/** Most rows a /flows answer carries. */
export const FLOW_LIST_MAX = 10_000;
/** Highest weight an operator may set. */
export const MAX_OPERATOR_WEIGHT = 1000;

/** POST /restart: this control process hands over and exits (`sluice restart`). */
export interface RestartResult {
  /** The control process that is leaving. */
  pid: number;
  /** The data plane that forwards on (null: none is running). */
  dataplanePid: number | null;
  /** false with SLUICE_HANDOVER=off: the data plane stops too. */
  handover: boolean;
}
