/**
 * The operator's two HTTP doors: the metrics listener (GET /metrics, the status page at / and
 * /status.json), and the admin API
 * on its unix socket (routes and answer types in admin-api.ts). The routes check the request
 * and turn it into a typed call; the views turn the control process's facts and the data plane's
 * counters into the answers. Everything they read comes through AdminSources, so this file knows
 * nothing of how the control process is put together.
 */
import type { Server, ServerResponse } from 'node:http';
import type { ServiceConfig, SluiceConfig } from '../config/types.js';
import type { ControlPlaneStatus } from '../control/index.js';
import { ENTITY, G, backendCounter } from '../dataplane/contract/counters.js';
import { VERSION } from '../version.js';
import {
  FLOW_LIST_MAX,
  MAX_OPERATOR_WEIGHT,
  type AdminError,
  type BackendHealthReport,
  type BackendStatus,
  type ClusterReport,
  type FlowQuery,
  type FlowsReport,
  type LastReload,
  type OperateAction,
  type OperateRequest,
  type OperateResult,
  type ReloadResult,
  type RestartResult,
  type StatusReport,
  type InstanceAction,
  type InstanceResult,
  type ExplainReport,
} from './admin-api.js';
import type { ExplainQuery } from '../dataplane/contract/messages.js';
import type { WorkerFigures } from '../dataplane/contract/counters.js';
import { normalizeAddress } from '../packet/address.js';
import type { AnnounceStatus } from '../announce/announcer.js';
import { hardenedServer, listenTcp, sendJson } from './http.js';
import { serveAdmin } from './admin-server.js';
import { HttpCounters } from './http-counters.js';
import type { Logger } from './log.js';
import type { BackendGaugeRow, Metrics } from './metrics.js';
import { renderStatusPage } from './status-page.js';
import { RateBase, nonZeroDrops, serviceHead, statusView } from './status-view.js';

/** One backend of one service as the control process knows it, before counters are added. */
export interface BackendFacts {
  address: string;
  weight: number;
  state: 'active' | 'draining';
  role: 'primary' | 'spare';
  status: string;
  /** Local backend id (its counter block), -1 if it has none. */
  id: number;
  mac: string | null;
  problem: string | null;
  overridden: boolean;
  health: BackendHealthReport | null;
}

/** Live flows per backend id, and of those the TCP-closing ones. */
export interface FlowStates {
  counts: Map<number, number>;
  closing: Map<number, number>;
}

const sum = (m: ReadonlyMap<number, number>): number => {
  let n = 0;
  for (const v of m.values()) n += v;
  return n;
};

/** What the admin API reads and does; the control process's composition root provides it. */
export interface AdminSources {
  readonly configPath: string;
  readonly startedAt: string;
  readonly metrics: Metrics;
  config(): SluiceConfig;
  generation(): number;
  dataplane(): { engine: string; up: boolean; pid: number | null; restarts: number; origin?: string; keptFlows?: number; workers?: WorkerFigures[] };
  lastReload(): LastReload | null;
  cluster(): { status: ControlPlaneStatus; sync: boolean } | null;
  /** Every backend of `s` in the current generation (effective weight, status, next hop, health). */
  backendFacts(s: ServiceConfig): BackendFacts[];
  /** A counter snapshot taken now (or the latest, if the data plane does not answer at once). */
  freshCounters(): Promise<Float64Array>;
  /** Live flows per local backend id; empty if the data plane does not answer. */
  flowCounts(): Promise<Map<number, number>>;
  /** Live and TCP-closing flows per local backend id; null if the data plane does not answer. */
  flowStates(): Promise<FlowStates | null>;
  /** `sluice explain`: the data plane's decision for a flow, named, with the cluster's owners. */
  explain(q: ExplainQuery): Promise<ExplainReport>;
  flows(q: FlowQuery): Promise<FlowsReport>;
  operate(op: OperateRequest): Promise<OperateResult>;
  reload(): Promise<ReloadResult>;
  /** Hand over and exit soon after answering (`sluice restart`); null when this process cannot restart (not run from the CLI). */
  restart(): RestartResult | null;
  /** The BGP announcement's state; null without an "announce" section. */
  announce(): Promise<AnnounceStatus | null>;
  /** Instance drain/undrain; null without an "announce" section. */
  instance(action: InstanceAction): Promise<InstanceResult | null>;
}

export interface AdminApiOptions {
  sources: AdminSources;
  log: Logger;
  metricsListen: string;
  adminSocket: string;
  /** Raised when a server cannot listen (the daemon makes it a start-up error). */
  listenError: (what: string, e: Error) => Error;
}

/** A counter of a snapshot (0 where the snapshot is shorter: ids above the data plane's highest). */
const counterOf = (c: Float64Array, i: number): number => (i < c.length ? c[i] : 0);

function withCounters(b: BackendFacts, c: Float64Array): { packets: number; bytes: number; flowsCreated: number } {
  if (b.id < 0) return { packets: 0, bytes: 0, flowsCreated: 0 };
  return {
    packets: counterOf(c, backendCounter(b.id, ENTITY.packets)),
    bytes: counterOf(c, backendCounter(b.id, ENTITY.bytes)),
    flowsCreated: counterOf(c, backendCounter(b.id, ENTITY.flowsCreated)),
  };
}

export function clusterReport(status: ControlPlaneStatus, sync: boolean): ClusterReport {
  const { counters, ...rest } = status;
  const { queryLatency: _latency, ...plain } = counters;
  return { ...rest, sync, counters: plain };
}

/** GET /status. states: the live/closing split, when the data plane answered for it. */
export function statusReport(src: AdminSources, c: Float64Array, announce: AnnounceStatus | null, states: FlowStates | null = null): StatusReport {
  const at = (i: number): number => counterOf(c, i);
  const config = src.config();
  const drops = nonZeroDrops(c);
  const cluster = src.cluster();
  return {
    version: VERSION,
    startedAt: src.startedAt,
    config: src.configPath,
    generation: src.generation(),
    dataplane: { ...src.dataplane(), generation: at(G.generation) },
    interface: config.interface,
    egressInterface: config.egressInterface,
    lastReload: src.lastReload(),
    cluster: cluster ? clusterReport(cluster.status, cluster.sync) : null,
    announce,
    flows: { active: at(G.flowsActive), ...(states ? { closing: sum(states.closing) } : {}), capacity: at(G.flowCapacity), created: at(G.flowsCreated), evictions: at(G.flowEvictions) },
    traffic: { rxFrames: at(G.rxFrames), rxBytes: at(G.rxBytes), txFrames: at(G.txFrames), txBytes: at(G.txBytes), txErrors: at(G.txErrors), captureDropped: at(G.captureDropped) },
    drops,
    services: config.services.map((s) => ({
      ...serviceHead(s),
      // Effective weight and status (operator overrides, health, spares), as /backends reports them.
      backends: src.backendFacts(s).map((b) => ({ address: b.address, weight: b.weight, status: b.status, mac: b.mac, problem: b.problem, ...withCounters(b, c) })),
    })),
  };
}

/** GET /backends: every backend of every service, with its live flows. */
export function backendStatuses(src: AdminSources, c: Float64Array, activeFlows: ReadonlyMap<number, number>, closingFlows?: ReadonlyMap<number, number>): BackendStatus[] {
  const out: BackendStatus[] = [];
  for (const s of src.config().services) {
    for (const b of src.backendFacts(s)) {
      const { packets, bytes, flowsCreated } = withCounters(b, c);
      out.push({
        service: s.name,
        address: b.address,
        weight: b.weight,
        state: b.state,
        role: b.role,
        status: b.status,
        overridden: b.overridden,
        health: b.health,
        mac: b.mac,
        problem: b.problem,
        activeFlows: b.id >= 0 ? (activeFlows.get(b.id) ?? 0) : 0,
        ...(closingFlows ? { closingFlows: b.id >= 0 ? (closingFlows.get(b.id) ?? 0) : 0 } : {}),
        flowsCreated,
        packets,
        bytes,
      });
    }
  }
  return out;
}

/** The message for a /flows filter that names no configured VIP or backend, else null. */
export function unconfigured(config: SluiceConfig, q: FlowQuery): string | null {
  if (q.vip !== undefined) {
    const vip = normalizeAddress(q.vip) ?? q.vip;
    const vips = [...new Set(config.services.map((s) => s.vip))];
    if (!vips.includes(vip)) return `no service has VIP ${q.vip} (configured VIPs: ${vips.join(', ') || 'none'})`;
  }
  if (q.backend !== undefined) {
    const backend = normalizeAddress(q.backend) ?? q.backend;
    if (!config.services.some((s) => s.backends.some((b) => b.address === backend))) return `no service has backend ${q.backend}`;
  }
  return null;
}

/** GET /explain's query string, checked: the query, or what is wrong with it. */
export function explainQueryOf(q: URLSearchParams): ExplainQuery | string {
  const protocol = q.get('protocol') ?? 'tcp';
  if (protocol !== 'tcp' && protocol !== 'udp') return `protocol must be tcp or udp, got ${JSON.stringify(protocol)}`;
  const vip = q.get('vip');
  const client = q.get('client');
  if (!vip) return 'vip is required';
  if (!client) return 'client is required';
  if (normalizeAddress(client) === undefined) return `client ${JSON.stringify(client)} is not an IPv4 or IPv6 address`;
  const port = portOf(q.get('port'));
  if (port === null) return 'port must be an integer 0..65535';
  const cp = q.get('clientPort');
  const clientPort = cp === null ? undefined : portOf(cp);
  if (clientPort === null) return 'clientPort must be an integer 0..65535';
  const t = q.get('token');
  let token: number | undefined;
  if (t !== null) {
    if (!/^(0x)?[0-9a-f]{1,8}$/i.test(t)) return 'token must be up to 8 hex digits (the MPTCP connection token)';
    token = parseInt(t.replace(/^0x/i, ''), 16);
  }
  return { protocol, vip, port, client, ...(clientPort !== undefined ? { clientPort } : {}), ...(token !== undefined ? { token } : {}) };
}

function portOf(v: string | null): number | null {
  if (v === null || !/^\d{1,5}$/.test(v)) return null;
  const n = Number(v);
  return n <= 65535 ? n : null;
}

const OPERATE_PATH = /^\/backends\/(drain|undrain|weight)$/;

/** The admin routes: check the request, make the typed call, answer with its admin-api type. */
const INSTANCE_PATH = /^\/instance\/(drain|undrain)$/;

export async function routeAdmin(src: AdminSources, method: string, url: URL, res: ServerResponse): Promise<void> {
  const fail = (status: number, error: string): void => sendJson(res, status, { error } satisfies AdminError);
  const notConfigured = (error: string): void => sendJson(res, 404, { error, code: 'not-configured' } satisfies AdminError);
  const q = url.searchParams;
  if (method === 'GET' && url.pathname === '/status') {
    const counters = await src.freshCounters();
    return sendJson(res, 200, statusReport(src, counters, await src.announce(), await src.flowStates()));
  }
  if (method === 'GET' && url.pathname === '/flows') {
    const limit = Number(q.get('limit') ?? 100);
    if (!Number.isInteger(limit) || limit < 1) return fail(400, 'limit must be a positive integer');
    const query: FlowQuery = { vip: q.get('vip') ?? undefined, backend: q.get('backend') ?? undefined, client: q.get('client') ?? undefined, limit: Math.min(FLOW_LIST_MAX, limit) };
    // A filter naming nothing configured is a mistake, not an empty answer.
    const unknown = unconfigured(src.config(), query);
    if (unknown) return notConfigured(unknown);
    return sendJson(res, 200, await src.flows(query));
  }
  if (method === 'GET' && url.pathname === '/backends') {
    const counters = await src.freshCounters();
    const states = await src.flowStates();
    return sendJson(res, 200, { backends: backendStatuses(src, counters, states?.counts ?? new Map<number, number>(), states?.closing) });
  }
  if (method === 'GET' && url.pathname === '/explain') {
    const parsed = explainQueryOf(q);
    if (typeof parsed === 'string') return fail(400, parsed);
    const vips = [...new Set(src.config().services.map((s) => s.vip))];
    const vip = normalizeAddress(parsed.vip);
    if (vip === undefined || !vips.includes(vip)) return notConfigured(`no service has VIP ${parsed.vip} (configured VIPs: ${vips.join(', ') || 'none'})`);
    try {
      return sendJson(res, 200, await src.explain({ ...parsed, vip }));
    } catch (e) {
      return fail(e instanceof RangeError ? 400 : 500, (e as Error).message);
    }
  }
  const op = OPERATE_PATH.exec(url.pathname);
  if (method === 'POST' && op) {
    const address = q.get('address');
    if (!address) return fail(400, 'address is required');
    const action = op[1] as OperateAction;
    let weight: number | undefined;
    if (action === 'weight') {
      weight = Number(q.get('weight'));
      if (!Number.isInteger(weight) || weight < 0 || weight > MAX_OPERATOR_WEIGHT) return fail(400, `weight must be an integer 0..${MAX_OPERATOR_WEIGHT}`);
    }
    const r = await src.operate({ action, address, service: q.get('service') ?? undefined, weight });
    return sendJson(res, r.ok ? 200 : 404, r);
  }
  if (method === 'POST' && url.pathname === '/restart') {
    const r = src.restart();
    if (r === null) return fail(409, 'this process cannot restart itself (not started by `sluice run`)');
    return sendJson(res, 202, r);
  }
  if (method === 'POST' && url.pathname === '/reload') {
    const r = await src.reload();
    return sendJson(res, r.ok ? 200 : 409, r);
  }
  const instance = INSTANCE_PATH.exec(url.pathname);
  if (method === 'POST' && instance) {
    // Withdraw (or re-announce) this instance's VIPs; flows that still arrive are forwarded.
    const r = await src.instance(instance[1] as InstanceAction);
    if (r === null) return fail(409, 'no "announce" section in the config: routes to this instance are not Sluice\'s to withdraw');
    return sendJson(res, 200, r);
  }
  return fail(404, `no such endpoint: ${method} ${url.pathname}`);
}

/** The per-backend gauges' rows: every backend of every service, with its live flows. */
export function backendGaugeRows(src: AdminSources, activeFlows: ReadonlyMap<number, number>): BackendGaugeRow[] {
  const out: BackendGaugeRow[] = [];
  for (const s of src.config().services) {
    for (const b of src.backendFacts(s)) {
      out.push({
        service: s.name,
        backend: b.address,
        weight: b.weight,
        status: b.status,
        health: b.health?.state ?? null,
        activeFlows: b.id >= 0 ? (activeFlows.get(b.id) ?? 0) : 0,
      });
    }
  }
  return out;
}

/**
 * The metrics listener's routes, all read-only (the server admits GET and HEAD only):
 * /metrics for Prometheus, / the status page, /status.json its data.
 */
export async function routeMetricsListener(src: AdminSources, rates: RateBase, url: URL, res: ServerResponse): Promise<void> {
  const path = url.pathname;
  if (path === '/metrics') {
    await src.freshCounters();
    src.metrics.setBackendRows(backendGaugeRows(src, await src.flowCounts()));
    const body = await src.metrics.registry.metrics();
    res.writeHead(200, { 'content-type': src.metrics.registry.contentType });
    res.end(body);
    return;
  }
  if (path === '/' || path === '/status.json') {
    const counters = await src.freshCounters();
    const now = new Date();
    const view = statusView(src, counters, await src.flowCounts(), await src.announce(), rates.advance(counters, now.getTime()), now);
    if (path === '/status.json') return sendJson(res, 200, view);
    res.writeHead(200, {
      'content-type': 'text/html; charset=utf-8',
      'cache-control': 'no-store',
      // Nothing on the page runs or loads from elsewhere; say so to the browser too.
      'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'",
      'x-content-type-options': 'nosniff',
    });
    res.end(renderStatusPage(view));
    return;
  }
  return sendJson(res, 404, { error: 'try / (status page), /status.json or /metrics' } satisfies AdminError);
}

/** The metrics and admin servers, as one part of the control process. */
export class AdminApi {
  readonly name = 'metrics and admin API';
  readonly #opts: AdminApiOptions;
  #servers: Server[] = [];
  /** The status page's older counter snapshot (its rates are differences over time). */
  readonly #rates = new RateBase();

  constructor(opts: AdminApiOptions) {
    this.#opts = opts;
  }

  /** Listens on both; a bad address is an error before any packet is captured. */
  async start(): Promise<void> {
    const { sources, log, metricsListen, adminSocket, listenError } = this.#opts;
    // Both doors are the hardened server (http.ts): no request, however malformed, reaches past it.
    const counters = new HttpCounters(sources.metrics.registry);
    const metrics = hardenedServer({
      listener: 'metrics',
      methods: ['GET', 'HEAD'],
      log,
      onReject: counters.onReject('metrics'),
      handler: (_req, url, res) => routeMetricsListener(sources, this.#rates, url, res),
    });
    this.#servers.push(metrics);
    await listenTcp(metrics, metricsListen).catch((e: Error) => {
      throw listenError(`cannot serve metrics on ${metricsListen}`, e);
    });
    // The socket's mode, group and per-request credential checks live in admin-server.ts.
    const admin = await serveAdmin({
      admin: () => sources.config().admin,
      log,
      counters,
      handler: (req, url, res) => routeAdmin(sources, req.method ?? 'GET', url, res),
    }).catch((e: Error) => {
      throw listenError(`cannot serve the admin API on ${adminSocket}`, e);
    });
    this.#servers.push(admin);
  }

  async stop(): Promise<void> {
    await Promise.all(this.#servers.map((s) => new Promise<void>((r) => (s.listening ? s.close(() => r()) : r()))));
  }
}
