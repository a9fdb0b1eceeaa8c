/**
 * The data-plane process: owns the capture handle, the forwarder and its tables, and dispatches
 * the control process's messages to them (who sends what, and which get an answer: the header
 * of contract/messages.ts). Started by the control process (src/runtime/supervisor.ts) so that
 * packet work never delays metrics, the admin API, health checks or the cluster, whatever the
 * capture engine does to its event loop.
 *
 * It runs in a session of its own and listens on the abstract socket of its capture interface
 * (contract/handover.ts): when the control process dies it forwards on with the generation it
 * has, and the next control process connects and adopts it. It stops on `shutdown` (a clean stop
 * of Sluice), on `handover` (a replacement takes its flow table), or on SIGTERM.
 *
 * Usage: node worker.js --listen <abstract socket name> [--loaded-fd 3]
 */
import { closeSync, writeSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { Forwarder } from './forwarder.js';
import { explainQuery } from './explain.js';
import { FLOW_CLOSING } from './flow-table.js';
import { G, usedLength } from './contract/counters.js';
import { COUNTER_PUBLISH_MS, SWEEP_INTERVAL_MS, SWEEP_SLOTS_PER_TICK } from './contract/limits.js';
import type { CaptureEngine } from './engine.js';
import type { DataplaneInit } from './contract/spec.js';
import type { FlowRow, FromDataplane, OwnerEntry, ToDataplane } from './contract/messages.js';
import type { DataplaneSpec } from './contract/spec.js';
import { CONTRACT_VERSION, buildIdentity, initSettings, type DataplaneHello, type DataplaneIds, type FlowTableOrigin } from './contract/handover.js';
import { SocketChannel } from './contract/socket-channel.js';
import { openSharedFlowTable } from './shared-flow-table.js';
import { rebuildTokenIndex } from './flow-token-index.js';
import { peerCredentials } from '../observe/peer-credentials.js';
import { BatchEngine } from './engine-batch.js';
import { CapEngine } from './engine-cap.js';
import { RingEngine } from './engine-ring.js';

let forwarder: Forwarder | null = null;
let engine: CaptureEngine | null = null;
let currentFilter = '';
let currentSpec: DataplaneSpec | null = null;
let captureInterface: string | null = null;
let settings = '';
let flowTableFile: string | null = null;
/** The connected control process; null while there is none (it died, or is restarting). */
let control: SocketChannel<ToDataplane, FromDataplane> | null = null;
let server: Server | null = null;
let stopping = false;
let outliveControl = true;
const timers: NodeJS.Timeout[] = [];
/** Where frames released after an owner query are built before they are sent. */
const replayTx = Buffer.alloc(10240);
/** Sends frames written to `buf`, counted as the engines count theirs. */
const senderOf =
  (buf: Buffer) =>
  (len: number): void => {
    const c = forwarder?.counters;
    if (!c || !engine) return;
    if (engine.sendFrame(buf, len)) {
      c[G.txFrames]++;
      c[G.txBytes] += len;
    } else {
      c[G.txErrors]++;
    }
  };
const replaySend = senderOf(replayTx);
/**
 * Early fragments released by their first fragment: a buffer of their own, since the first
 * fragment may itself be a replayed frame whose output sits in replayTx until it is sent.
 */
const fragmentTx = Buffer.alloc(10240);
const fragmentSend = senderOf(fragmentTx);
const PUBLISH_CHUNK = 2000;
const QUERY_EXPIRY_TICK_MS = 5;

/** Entries to publish at once (learned tokens, steered joins), sent together after this turn's frames. */
let soon: OwnerEntry[] = [];
let soonScheduled = false;
function publishSoon(kind: number, key: Uint8Array, backendId: number): void {
  soon.push({ kind, key, backendId });
  if (soonScheduled) return;
  soonScheduled = true;
  setImmediate(() => {
    soonScheduled = false;
    const entries = soon;
    soon = [];
    if (entries.length > 0) send({ type: 'owner-entries', entries });
  });
}

function publishOwners(): void {
  if (!forwarder) return;
  let chunk: OwnerEntry[] = [];
  forwarder.publishable(Date.now(), (kind, key, backendId) => {
    chunk.push({ kind, key, backendId });
    if (chunk.length >= PUBLISH_CHUNK) {
      send({ type: 'owner-entries', entries: chunk });
      chunk = [];
    }
  });
  if (chunk.length > 0) send({ type: 'owner-entries', entries: chunk });
}

function send(msg: FromDataplane): void {
  control?.send(msg);
}

/**
 * A counters snapshot is still on its way to the control process. The next one waits: a
 * control process that stops reading (SIGSTOP, a long pause) must not make this process queue
 * a snapshot every COUNTER_PUBLISH_MS without bound; the newest snapshot supersedes the others.
 */
let countersInFlight = false;

function publishCounters(): void {
  const ch = control;
  if (!forwarder || countersInFlight || !ch) return;
  const c = forwarder.counters;
  if (engine) {
    const s = engine.stats();
    c[G.captureReceived] = s.received;
    c[G.captureDropped] = s.dropped;
    c[G.captureIfDropped] = s.ifDropped;
  }
  const mem = process.memoryUsage.rss();
  const cpu = process.cpuUsage();
  c[G.dataplaneRssBytes] = mem;
  c[G.dataplaneCpuUserUs] = cpu.user;
  c[G.dataplaneCpuSystemUs] = cpu.system;
  countersInFlight = true;
  const msg: FromDataplane = { type: 'counters', counters: c.slice(0, usedLength(forwarder.maxBackendId)) };
  ch.send(msg, () => {
    countersInFlight = false;
  });
}

/** The flow table: the shared file's (kept across restarts) or private memory. */
function openFlows(init: DataplaneInit, nowMs: number): { flows: Forwarder['flows'] | undefined; origin: FlowTableOrigin } {
  if (!init.flowTable) return { flows: undefined, origin: { attached: false, flows: 0, tokens: 0, note: 'private memory (handover off)' } };
  flowTableFile = init.flowTable.path;
  const { flows, origin } = openSharedFlowTable({
    path: init.flowTable.path,
    attach: init.flowTable.attach,
    capacity: init.flowCapacity,
    timeouts: { tcpIdleMs: init.tcpIdleMs, tcpClosingMs: init.tcpClosingMs, udpIdleMs: init.udpIdleMs, halfOpenMs: init.halfOpenMs },
    hashSeed: init.spec.hashSeed,
    floodProtection: init.floodProtection,
    nowMs,
  });
  return { flows, origin };
}

function start(init: DataplaneInit): void {
  if (forwarder) throw new Error(`this data plane (pid ${process.pid}) is already running: adopt it instead`);
  const now = Date.now();
  const opened = openFlows(init, now);
  forwarder = new Forwarder({
    flows: opened.flows,
    flowCapacity: init.flowCapacity,
    tcpIdleMs: init.tcpIdleMs,
    tcpClosingMs: init.tcpClosingMs,
    udpIdleMs: init.udpIdleMs,
    halfOpenIdleMs: init.halfOpenMs,
    floodProtection: init.floodProtection,
    tokenCapacity: init.tokenCapacity,
  });
  forwarder.apply(init.spec);
  currentSpec = init.spec;
  captureInterface = init.interface;
  settings = initSettings(init);
  outliveControl = init.outliveControl !== false;
  // MP_JOINs of connections that crossed a restart find their backend through the index.
  if (opened.origin.attached) opened.origin.tokens = rebuildTokenIndex(forwarder.flows, forwarder.tokens, now);
  // Early fragments released by their first fragment leave at once.
  forwarder.setFragmentRelease(fragmentTx, fragmentSend);
  currentFilter = init.spec.filter;
  const opts = {
    forwarder,
    interface: init.interface,
    egressInterface: init.egressInterface,
    filter: init.spec.filter,
    bufferBytes: init.bufferBytes,
    batchSize: init.batchSize,
  };
  engine = init.engine === 'cap' ? new CapEngine(opts) : init.engine === 'batch' ? new BatchEngine(opts) : new RingEngine(opts);
  engine.start();
  const fwd = forwarder;
  timers.push(setInterval(() => fwd.tick(Date.now(), SWEEP_SLOTS_PER_TICK), SWEEP_INTERVAL_MS));
  timers.push(setInterval(publishCounters, COUNTER_PUBLISH_MS));
  // Owner answers normally arrive well within the deadline; this catches the ones that do not.
  // After a stall of this loop (a generation apply, a publish scan), timers run before pending IPC
  // is read: skip one tick so answers already waiting in the pipe settle their queries first.
  // One tick at most: on a starved machine every tick comes late, and skipping each one held
  // frames for seconds (TCP stalls) instead of at most the query deadline.
  let lastExpiry = Date.now();
  let skipped = false;
  timers.push(
    setInterval(() => {
      const now = Date.now();
      const stalled = now - lastExpiry > 4 * QUERY_EXPIRY_TICK_MS;
      lastExpiry = now;
      if (stalled && !skipped) {
        skipped = true;
        return;
      }
      skipped = false;
      fwd.expireQueries(now, replayTx, replaySend);
    }, QUERY_EXPIRY_TICK_MS),
  );
  send({ type: 'ready', engine: engine.name, flowTable: opened.origin });
}

function idsOf(spec: DataplaneSpec | null): DataplaneIds {
  if (!spec) return { generation: 0, services: [], backends: [] };
  const names = new Map(spec.services.map((s) => [s.id, s.name]));
  return {
    generation: spec.generation,
    services: spec.services.map((s) => ({ name: s.name, id: s.id })),
    backends: spec.backends.map((b) => ({ service: names.get(b.serviceId) ?? '', address: b.address, id: b.id })),
  };
}

function hello(): DataplaneHello {
  return {
    type: 'hello',
    pid: process.pid,
    build: buildIdentity(),
    contract: CONTRACT_VERSION,
    interface: captureInterface,
    engine: engine?.name ?? null,
    generation: currentSpec?.generation ?? 0,
    flowTable: flowTableFile,
    flows: forwarder?.flows.size ?? 0,
    ids: idsOf(currentSpec),
    settings,
  };
}

function listFlows(msg: Extract<ToDataplane, { type: 'flows' }>): void {
  const rows: FlowRow[] = [];
  let total = 0;
  const ids = msg.backendIds ? new Set(msg.backendIds) : null;
  forwarder?.flows.forEach(Date.now(), (f) => {
    if (msg.vip && f.dst !== msg.vip) return;
    if (msg.client && f.src !== msg.client) return;
    if (ids && !ids.has(f.backendId)) return;
    total++;
    if (rows.length < msg.limit) {
      rows.push({
        protocol: f.protocol === 6 ? 'tcp' : 'udp',
        client: f.src,
        clientPort: f.srcPort,
        vip: f.dst,
        port: f.dstPort,
        backendId: f.backendId,
        serviceId: f.serviceIndex,
        ageMs: f.ageMs,
        idleMs: f.idleMs,
        state: f.state,
      });
    }
  });
  send({ type: 'flows', requestId: msg.requestId, rows, total });
}

/** Live flows per backend id, and how many of them are TCP-closing. */
function countFlows(requestId: number): void {
  const counts = new Map<number, number>();
  const closing = new Map<number, number>();
  const flows = forwarder?.flows;
  flows?.forEachSlot((slot) => {
    const b = flows.backendOf(slot);
    counts.set(b, (counts.get(b) ?? 0) + 1);
    if (flows.stateOf(slot) === FLOW_CLOSING) closing.set(b, (closing.get(b) ?? 0) + 1);
  }, Date.now());
  send({ type: 'flow-counts', requestId, counts, closing });
}

/** `sluice explain`: the forwarder's decision for a tuple, read without side effects. */
function explain(msg: Extract<ToDataplane, { type: 'explain' }>): void {
  if (!forwarder) {
    send({ type: 'explain-failed', requestId: msg.requestId, message: 'the data plane has no forwarder yet' });
    return;
  }
  try {
    send({ type: 'explain', requestId: msg.requestId, decisions: explainQuery(forwarder, msg.query, Date.now()) });
  } catch (e) {
    send({ type: 'explain-failed', requestId: msg.requestId, message: e instanceof Error ? e.message : String(e) });
  }
}

function onMessage(msg: ToDataplane): void {
  try {
    switch (msg.type) {
      case 'hello':
        send(hello());
        break;
      case 'init':
        start(msg.init);
        break;
      case 'generation':
        if (!forwarder || !engine) return;
        if (msg.spec.filter !== currentFilter) {
          engine.setFilter(msg.spec.filter);
          currentFilter = msg.spec.filter;
        }
        forwarder.apply(msg.spec);
        currentSpec = msg.spec;
        publishCounters();
        send({ type: 'applied', requestId: msg.requestId, generation: msg.spec.generation });
        break;
      case 'flows':
        listFlows(msg);
        break;
      case 'flow-counts':
        countFlows(msg.requestId);
        break;
      case 'explain':
        explain(msg);
        break;
      case 'publish':
        publishCounters();
        break;
      case 'owner-queries':
        forwarder?.setOwnerQuery(msg.enabled ? (qid, kind, key, waitMs) => send({ type: 'owner-query', qid, kind, key, waitMs }) : null, msg.holdPackets);
        forwarder?.setPublishNow(msg.enabled ? publishSoon : null);
        break;
      case 'owner-recent':
        forwarder?.setChangeRecent(msg.forMs > 0 ? Date.now() + msg.forMs : 0);
        break;
      case 'owner-answer':
        forwarder?.answer(msg.qid, msg.backendId, Date.now(), replayTx, replaySend);
        break;
      case 'publish-owners':
        publishOwners();
        break;
      case 'shutdown':
        shutdown(0);
        break;
      case 'handover':
        handOver();
        break;
    }
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (msg.type === 'init') {
      send({ type: 'fatal', message });
      // A second init (a control process that took this running data plane for a new one) must not stop forwarding.
      if (!forwarder || !engine) shutdown(1);
    } else if (msg.type === 'generation') {
      send({ type: 'apply-failed', requestId: msg.requestId, generation: msg.spec.generation, message });
    }
  }
}

function stopPacketWork(): void {
  for (const t of timers) clearInterval(t);
  timers.length = 0;
  try {
    engine?.close();
  } catch {
    // closing a handle that failed to open
  }
  engine = null;
}

function shutdown(code: number): void {
  if (stopping) return;
  stopping = true;
  stopPacketWork();
  server?.close();
  // Let the last messages drain before leaving.
  setTimeout(() => process.exit(code), 20);
}

/**
 * A replacement data plane takes the flow table: stop capturing and every timer (no write to the
 * table after this), stop listening so the replacement can take the socket name, say so, exit.
 * The table file stays.
 */
function handOver(): void {
  if (stopping) return;
  stopping = true;
  stopPacketWork();
  const flows = forwarder?.flows.size ?? 0;
  // Closing the listener frees the name at once (close's callback would wait for this very connection).
  server?.close();
  server = null;
  control?.send({ type: 'handed-over', flows });
  control?.end();
  setTimeout(() => process.exit(0), 20);
}

/** The control process went away: forward on, but hold no packets for owner answers nobody will send. */
function controlGone(): void {
  if (stopping) return;
  if (!forwarder || !outliveControl) {
    // Never initialised (nobody will come back for it), or told to live no longer than its control process.
    shutdown(0);
    return;
  }
  forwarder.setOwnerQuery(null, 0);
  forwarder.setPublishNow(null);
}

function accept(socket: Socket): void {
  // Only this process's own user (or root) may drive it: the kernel says who connected.
  const creds = peerCredentials(socket);
  const uid = process.getuid?.() ?? 0;
  if (!creds || (creds.uid !== 0 && creds.uid !== uid)) {
    socket.destroy();
    return;
  }
  // A new control process supersedes the old connection (a restart adopting this data plane);
  // the old one is told, so it does not fight back by reconnecting.
  if (control) {
    control.send({ type: 'superseded', by: creds.pid });
    control.end();
  }
  const ch = new SocketChannel<ToDataplane, FromDataplane>(socket);
  control = ch;
  countersInFlight = false;
  ch.onMessage(onMessage);
  ch.onClose(() => {
    if (control !== ch) return;
    control = null;
    controlGone();
  });
}

/** Listen on the abstract name; a predecessor handing over may hold it for a moment yet. */
function listen(name: string, deadline: number): void {
  const s = createServer(accept);
  s.once('error', (e: NodeJS.ErrnoException) => {
    if (e.code === 'EADDRINUSE' && Date.now() < deadline) {
      setTimeout(() => listen(name, deadline), 20);
      return;
    }
    process.stderr.write(`sluice data plane: cannot listen on @${name}: ${e.message}\n`);
    process.exit(1);
  });
  s.listen({ path: `\0${name}`, exclusive: true }, () => {
    server = s;
  });
}

function argValue(flag: string): string | null {
  const i = process.argv.indexOf(flag);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1] : null;
}

/** A replacement starts while its predecessor still holds the name (until it hands over, at most 5 s). */
const LISTEN_RETRY_MS = 15_000;
/** Before any control process connected and sent init: a data plane nobody drives exits. */
const FIRST_CONTACT_MS = 30_000;

/** Tell whoever started this process that its code is loaded (a replacement is then quick to take over). */
function signalLoaded(): void {
  const fd = Number(argValue('--loaded-fd'));
  if (!Number.isInteger(fd) || fd < 3) return;
  try {
    writeSync(fd, 'loaded\n');
    closeSync(fd);
  } catch {
    // the starter went away: nothing to tell
  }
}

const name = argValue('--listen');
if (!name) {
  process.stderr.write('sluice data plane: usage: worker.js --listen <abstract socket name>\n');
  process.exit(2);
} else {
  signalLoaded();
  listen(name, Date.now() + LISTEN_RETRY_MS);
  setTimeout(() => {
    if (!forwarder) shutdown(1);
  }, FIRST_CONTACT_MS).unref();
}
// Its stdout and stderr may be a pipe or a journal socket the dead control process held: a write
// that fails must not end forwarding.
process.stdout.on('error', () => undefined);
process.stderr.on('error', () => undefined);
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => {
  // The control process decides when we stop.
});
process.on('SIGHUP', () => {
  // The terminal of whoever started the control process is no concern of the data plane.
});
