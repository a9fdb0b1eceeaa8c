/**
 * The admin API's routes and views (src/observe/admin.ts) over a fake AdminSources: each request
 * (sent with the CLI's own client over a unix socket in a temp dir) is checked for its status, its
 * answer, and the typed call it made. No root, no network, no data plane.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import type { Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/load.js';
import type { ServiceConfig } from '../../src/config/types.js';
import { DROPS_BASE, ENTITY, G, backendCounter, usedLength } from '../../src/dataplane/contract/counters.js';
import type { FlowQuery, OperateRequest, StatusReport, BackendsReport } from '../../src/observe/admin-api.js';
import { routeAdmin, type AdminSources, type BackendFacts } from '../../src/observe/admin.js';
import { adminRequest } from '../../src/observe/admin-client.js';
import { hardenedServer } from '../../src/observe/http.js';
import { createLogger } from '../../src/observe/log.js';
import { Metrics } from '../../src/observe/metrics.js';
import { DROP_REASONS } from '../../src/packet/drop-reasons.js';

const CONFIG = parseConfig(
  JSON.stringify({
    interface: 'eth0',
    services: [
      { name: 'web', vip: '198.51.100.10', port: 80, protocol: 'tcp', forwarding: 'dsr-l2', backends: [{ address: '10.1.0.11' }, { address: '10.1.0.12' }] },
      { name: 'any', vip: '198.51.100.11', port: 'all', protocol: 'udp', forwarding: 'ipip', backends: [{ address: '10.1.0.21' }] },
    ],
  }),
);

/** Backend facts by address: 10.1.0.12 has no id yet (no counters, no flows). */
const FACTS: Record<string, BackendFacts> = {
  '10.1.0.11': { address: '10.1.0.11', weight: 1, state: 'active', role: 'primary', status: 'serving', id: 0, mac: '02:00:00:00:00:11', problem: null, overridden: false, health: null },
  '10.1.0.12': { address: '10.1.0.12', weight: 1, state: 'active', role: 'primary', status: 'unresolved', id: -1, mac: null, problem: 'no neighbour entry', overridden: false, health: null },
  '10.1.0.21': { address: '10.1.0.21', weight: 2, state: 'draining', role: 'primary', status: 'draining', id: 2, mac: '02:00:00:00:00:21', problem: null, overridden: true, health: { check: 'tcp', state: 'up', lastError: null, lastChange: null } },
};

const MALFORMED = DROP_REASONS.indexOf('truncated_ipv4');

function counters(): Float64Array {
  const c = new Float64Array(usedLength(2));
  c[G.generation] = 4;
  c[G.rxFrames] = 100;
  c[G.flowsActive] = 3;
  c[DROPS_BASE + MALFORMED] = 5;
  c[backendCounter(0, ENTITY.packets)] = 70;
  c[backendCounter(0, ENTITY.bytes)] = 7000;
  c[backendCounter(0, ENTITY.flowsCreated)] = 7;
  c[backendCounter(2, ENTITY.packets)] = 20;
  return c;
}

interface Calls {
  flows: FlowQuery[];
  operate: OperateRequest[];
  reloads: number;
}

function fakeSources(calls: Calls, answers: { operateOk: boolean; reloadOk: boolean }): AdminSources {
  return {
    configPath: '/etc/sluice/sluice.json',
    startedAt: '2026-01-02T03:04:05.000Z',
    metrics: new Metrics(),
    config: () => CONFIG,
    generation: () => 5,
    dataplane: () => ({ engine: 'batch', up: true, pid: 42, restarts: 0 }),
    lastReload: () => null,
    cluster: () => null,
    backendFacts: (s: ServiceConfig) => s.backends.map((b) => FACTS[b.address]),
    freshCounters: async () => counters(),
    flowCounts: async () => new Map([[0, 3], [2, 1]]),
    flowStates: async () => ({ counts: new Map([[0, 3], [2, 1]]), closing: new Map([[0, 1]]) }),
    explain: async (q) => ({ query: q, flows: [] }),
    flows: async (q) => {
      calls.flows.push(q);
      return { rows: [], total: 0 };
    },
    operate: async (op) => {
      calls.operate.push(op);
      return answers.operateOk ? { ok: true, message: `${op.action} ${op.address}`, matched: ['web'] } : { ok: false, message: `no backend ${op.address}`, matched: [] };
    },
    reload: async () => {
      calls.reloads++;
      return answers.reloadOk ? { ok: true, message: 'no changes' } : { ok: false, message: 'these settings change only with a restart: hashSeed' };
    },
    restart: () => null,
    // No "announce" section: no announcement state, and instance drain is refused (409).
    announce: async () => null,
    instance: async () => null,
  };
}

describe('admin routes and views (observe/admin.ts)', () => {
  let dir: string;
  let socket: string;
  let server: Server;
  let calls: Calls;
  const answers = { operateOk: true, reloadOk: true };

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-admin-'));
    socket = join(dir, 'admin.sock');
    server = hardenedServer({
      listener: 'admin',
      methods: ['GET', 'POST'],
      log: createLogger('silent'),
      handler: (req, url, res) => routeAdmin(fakeSources(calls, answers), req.method ?? 'GET', url, res),
    });
    await new Promise<void>((resolve, reject) => server.once('error', reject).listen(socket, () => resolve()));
  });
  beforeEach(() => {
    calls = { flows: [], operate: [], reloads: 0 };
    answers.operateOk = true;
    answers.reloadOk = true;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  it('GET /status: counters by name, only non-zero drops, port 0 as "all", per-backend counters (none without an id)', async () => {
    const { status, body } = await adminRequest(socket, 'GET', '/status');
    expect(status).toBe(200);
    const s = body as StatusReport;
    expect(s.generation).toBe(5);
    expect(s.dataplane).toEqual({ engine: 'batch', up: true, pid: 42, restarts: 0, generation: 4 });
    expect(s.traffic.rxFrames).toBe(100);
    expect(s.flows.active).toBe(3);
    expect(s.drops).toEqual({ truncated_ipv4: 5 });
    expect(s.cluster).toBeNull();
    expect(s.services.map((x) => [x.name, x.port, x.protocol, x.forwarding])).toEqual([
      ['web', 80, 'tcp', 'dsr-l2'],
      ['any', 'all', 'udp', 'ipip'],
    ]);
    expect(s.services[0].backends).toEqual([
      { address: '10.1.0.11', weight: 1, status: 'serving', mac: '02:00:00:00:00:11', problem: null, packets: 70, bytes: 7000, flowsCreated: 7 },
      { address: '10.1.0.12', weight: 1, status: 'unresolved', mac: null, problem: 'no neighbour entry', packets: 0, bytes: 0, flowsCreated: 0 },
    ]);
  });

  it('GET /backends: one row per backend of each service, active flows by backend id', async () => {
    const { status, body } = await adminRequest(socket, 'GET', '/backends');
    expect(status).toBe(200);
    const rows = (body as BackendsReport).backends;
    expect(rows.map((b) => [b.service, b.address, b.status, b.overridden, b.activeFlows, b.packets])).toEqual([
      ['web', '10.1.0.11', 'serving', false, 3, 70],
      ['web', '10.1.0.12', 'unresolved', false, 0, 0],
      ['any', '10.1.0.21', 'draining', true, 1, 20],
    ]);
    expect(rows[2].health).toEqual({ check: 'tcp', state: 'up', lastError: null, lastChange: null });
  });

  const refused: { name: string; method: string; path: string; status: number; error: string }[] = [
    { name: 'limit 0', method: 'GET', path: '/flows?limit=0', status: 400, error: 'limit must be a positive integer' },
    { name: 'limit not a number', method: 'GET', path: '/flows?limit=ten', status: 400, error: 'limit must be a positive integer' },
    { name: 'drain without address', method: 'POST', path: '/backends/drain', status: 400, error: 'address is required' },
    { name: 'weight above 1000', method: 'POST', path: '/backends/weight?address=10.1.0.11&weight=1001', status: 400, error: 'weight must be an integer 0..1000' },
    { name: 'weight not an integer', method: 'POST', path: '/backends/weight?address=10.1.0.11&weight=1.5', status: 400, error: 'weight must be an integer 0..1000' },
    { name: 'unknown path', method: 'GET', path: '/nope', status: 404, error: 'no such endpoint: GET /nope' },
    { name: 'wrong method', method: 'GET', path: '/reload', status: 404, error: 'no such endpoint: GET /reload' },
    { name: 'instance drain without an announce section', method: 'POST', path: '/instance/drain', status: 409, error: 'no "announce" section in the config: routes to this instance are not Sluice\'s to withdraw' },
    { name: 'instance action that does not exist', method: 'POST', path: '/instance/reboot', status: 404, error: 'no such endpoint: POST /instance/reboot' },
  ];
  it.each(refused)('refused: $name -> $status, nothing called', async ({ method, path, status, error }) => {
    const r = await adminRequest(socket, method, path);
    expect(r.status).toBe(status);
    expect(r.body).toEqual({ error });
    expect(calls).toEqual({ flows: [], operate: [], reloads: 0 });
  });

  const calling: { name: string; method: string; path: string; status: number; expected: Partial<Calls>; operateOk?: boolean; reloadOk?: boolean }[] = [
    { name: 'flows with filters', method: 'GET', path: '/flows?vip=198.51.100.10&backend=10.1.0.11&client=192.0.2.7&limit=5', status: 200, expected: { flows: [{ vip: '198.51.100.10', backend: '10.1.0.11', client: '192.0.2.7', limit: 5 }] } },
    { name: 'flows: limit defaults to 100', method: 'GET', path: '/flows', status: 200, expected: { flows: [{ vip: undefined, backend: undefined, client: undefined, limit: 100 }] } },
    { name: 'flows: limit capped at 10000', method: 'GET', path: '/flows?limit=50000', status: 200, expected: { flows: [{ vip: undefined, backend: undefined, client: undefined, limit: 10000 }] } },
    { name: 'drain', method: 'POST', path: '/backends/drain?address=10.1.0.11', status: 200, expected: { operate: [{ action: 'drain', address: '10.1.0.11', service: undefined, weight: undefined }] } },
    { name: 'undrain in one service', method: 'POST', path: '/backends/undrain?address=10.1.0.21&service=any', status: 200, expected: { operate: [{ action: 'undrain', address: '10.1.0.21', service: 'any', weight: undefined }] } },
    { name: 'weight 0', method: 'POST', path: '/backends/weight?address=10.1.0.11&weight=0', status: 200, expected: { operate: [{ action: 'weight', address: '10.1.0.11', service: undefined, weight: 0 }] } },
    { name: 'drain of no backend -> 404', method: 'POST', path: '/backends/drain?address=10.9.9.9', status: 404, operateOk: false, expected: { operate: [{ action: 'drain', address: '10.9.9.9', service: undefined, weight: undefined }] } },
    { name: 'reload', method: 'POST', path: '/reload', status: 200, expected: { reloads: 1 } },
    { name: 'reload refused -> 409', method: 'POST', path: '/reload', status: 409, reloadOk: false, expected: { reloads: 1 } },
  ];
  it.each(calling)('$name -> $status, one typed call', async ({ method, path, status, expected, operateOk, reloadOk }) => {
    answers.operateOk = operateOk ?? true;
    answers.reloadOk = reloadOk ?? true;
    const r = await adminRequest(socket, method, path);
    expect(r.status, JSON.stringify(r.body)).toBe(status);
    expect(calls).toEqual({ flows: [], operate: [], reloads: 0, ...expected });
  });
});
