/**
 * The data-plane process: owns the capture handle, the forwarder and its tables, and dispatches
 * the control process's messages to them (who sends what, and which get an answer: the header
 * of contract/messages.ts). Forked by the control process (src/runtime/supervisor.ts) so that
 * packet work never delays metrics, the admin API, health checks or the cluster, whatever the
 * capture engine does to its event loop.
 */
import { Forwarder } from './forwarder.js';
import { explainQuery } from './explain.js';
import { FLOW_CLOSING } from './flow-table.js';
import { G, usedLength } from './contract/counters.js';
import { COUNTER_PUBLISH_MS, SWEEP_INTERVAL_MS, SWEEP_SLOTS_PER_TICK } from './contract/limits.js';
import type { CaptureEngine } from './engine.js';
import type { DataplaneInit } from './contract/spec.js';
import type { FlowRow, FromDataplane, OwnerEntry, ToDataplane } from './contract/messages.js';
import { BatchEngine } from './engine-batch.js';
import { CapEngine } from './engine-cap.js';
import { RingEngine } from './engine-ring.js';

let forwarder: Forwarder | null = null;
let engine: CaptureEngine | null = null;
let currentFilter = '';
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
  if (process.connected) process.send?.(msg);
}

/**
 * A counters snapshot is still on its way to the control process. The next one waits: a
 * control process that stops reading (SIGSTOP, a long pause) must not make this process queue
 * a snapshot every COUNTER_PUBLISH_MS without bound; the newest snapshot supersedes the others.
 */
let countersInFlight = false;

function publishCounters(): void {
  if (!forwarder || countersInFlight || !process.connected || !process.send) return;
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
  process.send(msg, undefined, undefined, () => {
    countersInFlight = false;
  });
}

function start(init: DataplaneInit): void {
  forwarder = new Forwarder({
    flowCapacity: init.flowCapacity,
    tcpIdleMs: init.tcpIdleMs,
    tcpClosingMs: init.tcpClosingMs,
    udpIdleMs: init.udpIdleMs,
    halfOpenIdleMs: init.halfOpenMs,
    tokenCapacity: init.tokenCapacity,
  });
  forwarder.apply(init.spec);
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
  send({ type: 'ready', engine: engine.name });
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
    }
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (msg.type === 'init') {
      send({ type: 'fatal', message });
      shutdown(1);
    } else if (msg.type === 'generation') {
      send({ type: 'apply-failed', requestId: msg.requestId, generation: msg.spec.generation, message });
    }
  }
}

function shutdown(code: number): void {
  for (const t of timers) clearInterval(t);
  try {
    engine?.close();
  } catch {
    // closing a handle that failed to open
  }
  engine = null;
  // Let the last IPC messages drain before leaving.
  setTimeout(() => process.exit(code), 20);
}

process.on('message', (m) => onMessage(m as ToDataplane));
process.on('disconnect', () => shutdown(0));
process.on('SIGTERM', () => shutdown(0));
process.on('SIGINT', () => {
  // The control process decides when we stop.
});
