/**
 * How a control process finds, adopts or replaces a running data-plane process (supervisor.ts,
 * worker.ts), and where the state lives that a replacement takes over.
 *
 *   - The data plane listens on the abstract unix socket "@sluice/dataplane/<interface>": like the
 *     instance claim (runtime/instance-lock.ts), the name lives in the network namespace and
 *     vanishes with its holder, so a dead data plane never leaves a stale socket. Only a peer with
 *     the data plane's own uid (or root) is accepted, checked by SO_PEERCRED.
 *   - The flow table (flow-layout.ts: one versioned buffer, MPTCP tokens inside the entries) lives
 *     in a file beside the admin socket, mapped MAP_SHARED (shared-flow-table.ts). A replacement
 *     data plane maps the same file once the old one has stopped writing, and rebuilds the token
 *     index from the entries.
 *   - hello / handover / handed-over keep their shape in every build (HANDOVER_MESSAGES), so any
 *     build can hand over to any newer one; the other messages follow CONTRACT_VERSION.
 */
import { BUILD_INFO } from '../../version.js';
import type { DataplaneInit } from './spec.js';

/** Bump when a message of messages.ts other than hello/handover changes shape or meaning. */
export const CONTRACT_VERSION = 2;

/** Two builds with one identity run the same code: adopt. Any difference: replace (hand over the table). */
export function buildIdentity(): string {
  return `${BUILD_INFO.version}+${BUILD_INFO.commit}@${BUILD_INFO.builtAt}`;
}

/** Abstract socket name (without the leading NUL) of the data plane capturing on `iface`. */
export function dataplaneSocketName(iface: string, prefix = 'sluice/'): string {
  return `${prefix}dataplane/${iface}`;
}

/** The flow table's file for the instance whose admin socket is `adminSocket`. */
export function flowTablePath(adminSocket: string): string {
  return `${adminSocket}.flows`;
}

/** Most packet workers of one data plane (dataplane.workers). */
export const MAX_WORKERS = 64;

/** The flow table file of packet worker `index` (worker 0 keeps the file a single worker uses). */
export function workerFlowTablePath(path: string, index: number): string {
  return index === 0 ? path : `${path}.w${index}`;
}

/**
 * State handover (adoption, table kept across restarts) is on unless SLUICE_HANDOVER=off: then a
 * control process that stops or restarts stops its data plane too, and every data plane starts
 * with an empty table (the behaviour before handover existed, kept for comparison in tests).
 */
export function handoverEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.SLUICE_HANDOVER !== 'off';
}

/** What a data plane says about itself when a control process connects. */
export interface DataplaneHello {
  type: 'hello';
  pid: number;
  /** Build identity (version, commit, build time): another build is replaced, not adopted. */
  build: string;
  contract: number;
  /** Capture interface; null before init. */
  interface: string | null;
  /** Capture engine; null before init. */
  engine: string | null;
  /** Generation in force; 0 before init. */
  generation: number;
  /** The flow table's file, or null when the table is in private memory. */
  flowTable: string | null;
  /** Live flows, for the adopting control process's log. */
  flows: number;
  /** The ids of the generation in force: flows record them, so the next control process keeps them. */
  ids: DataplaneIds;
  /** initSettings() of the init it runs: another value (a restart-only setting changed) means replace, not adopt. */
  settings: string;
}

/**
 * The settings a data plane takes only at start (capture, interfaces, table sizes, timeouts), as
 * one comparable string. A control process whose config changed any of them replaces the running
 * data plane (the flow table is still handed over where its capacity allows) instead of adopting it.
 */
export function initSettings(init: DataplaneInit): string {
  return JSON.stringify([
    init.engine,
    init.interface,
    init.egressInterface,
    init.bufferBytes,
    init.batchSize,
    init.flowCapacity,
    init.tcpIdleMs,
    init.tcpClosingMs,
    init.udpIdleMs,
    init.halfOpenMs ?? null,
    init.tokenCapacity,
    init.workers ?? 1,
  ]);
}

/**
 * Service and backend ids as the generation in force numbers them. Flow entries and MPTCP tokens
 * record these numbers; a control process that adopts (or replaces) a data plane gives the same
 * services and backends the same ids, or every kept flow would name someone else.
 */
export interface DataplaneIds {
  generation: number;
  services: { name: string; id: number }[];
  backends: { service: string; address: string; id: number }[];
}

/** How a data plane's flow table came to be: attached to the previous one's, or new (and why). */
export interface FlowTableOrigin {
  attached: boolean;
  /** Live entries after attaching (0 for a new table). */
  flows: number;
  /** MPTCP tokens rebuilt from the entries. */
  tokens: number;
  /** Why a table was not attached: no file yet, handover off, or a refusal (layout version, capacity). */
  note: string;
}
