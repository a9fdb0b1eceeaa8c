/**
 * The data-plane process: owns the packet workers (worker-pool.ts: one in this thread, or one
 * worker thread each, sharing the interface through PACKET_FANOUT) and dispatches the control
 * process's messages to them (who sends what, and which get an answer: the header of
 * contract/messages.ts). Started by the control process (src/runtime/supervisor.ts) so that
 * packet work never delays metrics, the admin API, health checks or the cluster, whatever the
 * capture engine does to its event loop.
 *
 * It runs in a session of its own and listens on the abstract socket of its capture interface
 * (contract/handover.ts): when the control process dies it forwards on with the generation it
 * has, and the next control process connects and adopts it. It stops on `shutdown` (a clean stop
 * of Sluice), on `handover` (a replacement takes its flow tables), or on SIGTERM.
 *
 * Usage: node worker.js --listen <abstract socket name> [--loaded-fd 3]
 */
import { closeSync, writeSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { FromDataplane, ToDataplane } from './contract/messages.js';
import type { DataplaneSpec } from './contract/spec.js';
import { CONTRACT_VERSION, buildIdentity, initSettings, type DataplaneHello, type DataplaneIds } from './contract/handover.js';
import { SocketChannel } from './contract/socket-channel.js';
import { COUNTER_PUBLISH_MS } from './contract/limits.js';
import { peerCredentials } from '../observe/peer-credentials.js';
import { WorkerPool } from './worker-pool.js';
import { tuneMalloc } from '../runtime/malloc-tuning.js';
import { failpointOn, unknownFailpoints } from './failpoints.js';

let pool: WorkerPool | null = null;
let ready = false;
let captureInterface: string | null = null;
let settings = '';
let flowTableFile: string | null = null;
/** The connected control process; null while there is none (it died, or is restarting). */
let control: SocketChannel<ToDataplane, FromDataplane> | null = null;
let server: Server | null = null;
let stopping = false;
let outliveControl = true;
let counterTimer: NodeJS.Timeout | null = null;

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
  if (!pool || !ready || countersInFlight || !ch) return;
  countersInFlight = true;
  ch.send(pool.snapshot(), () => {
    countersInFlight = false;
  });
}

function start(msg: Extract<ToDataplane, { type: 'init' }>): void {
  const init = msg.init;
  if (pool) throw new Error(`this data plane (pid ${process.pid}) is already running: adopt it instead`);
  captureInterface = init.interface;
  settings = initSettings(init);
  outliveControl = init.outliveControl !== false;
  flowTableFile = init.flowTable?.path ?? null;
  const p = new WorkerPool(init.workers ?? 1, {
    up: (m) => {
      if (m.type === 'ready') {
        ready = true;
        counterTimer = setInterval(publishCounters, COUNTER_PUBLISH_MS);
      }
      send(m);
      if (m.type === 'fatal') shutdown(1);
    },
    note: (text) => process.stderr.write(`sluice data plane: ${text}\n`),
  });
  pool = p;
  p.start(init);
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
  const spec = pool?.spec ?? null;
  return {
    type: 'hello',
    pid: process.pid,
    build: buildIdentity(),
    contract: CONTRACT_VERSION,
    interface: captureInterface,
    engine: ready ? (pool?.engine ?? null) : null,
    generation: spec?.generation ?? 0,
    flowTable: flowTableFile,
    flows: pool?.flows ?? 0,
    ids: idsOf(spec),
    settings,
  };
}

function onMessage(msg: ToDataplane): void {
  try {
    switch (msg.type) {
      case 'hello':
        send(hello());
        break;
      case 'init':
        start(msg);
        break;
      case 'shutdown':
        shutdown(0);
        break;
      case 'handover':
        handOver();
        break;
      case 'generation':
        if (!pool || !ready) return;
        pool.request(msg);
        break;
      case 'publish':
        if (!pool || !ready) return;
        pool.request(msg);
        break;
      default:
        if (!pool || !ready) {
          if (msg.type === 'explain') send({ type: 'explain-failed', requestId: msg.requestId, message: 'the data plane has no forwarder yet' });
          return;
        }
        pool.request(msg);
        break;
    }
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    if (msg.type === 'init') {
      send({ type: 'fatal', message });
      // A second init (a control process that took this running data plane for a new one) must not stop forwarding.
      if (!pool) shutdown(1);
    } else if (msg.type === 'generation') {
      send({ type: 'apply-failed', requestId: msg.requestId, generation: msg.spec.generation, message });
    }
  }
}

/** Stop every worker's packet work (capture, timers: no table write after `done`). */
function stopPacketWork(done: (flows: number) => void): void {
  if (counterTimer) clearInterval(counterTimer);
  counterTimer = null;
  if (!pool) {
    done(0);
    return;
  }
  pool.stop(done);
}

function shutdown(code: number): void {
  if (stopping) return;
  stopping = true;
  server?.close();
  stopPacketWork(() => {
    // Let the last messages drain before leaving.
    setTimeout(() => process.exit(code), 20);
  });
}

/**
 * A replacement data plane takes the flow tables: stop capturing and every timer in every worker
 * (no write to a table after this), stop listening so the replacement can take the socket name,
 * say so, exit. The table files stay.
 */
function handOver(): void {
  if (stopping) return;
  stopping = true;
  stopPacketWork((flows) => {
    // Closing the listener frees the name at once (close's callback would wait for this very connection).
    server?.close();
    server = null;
    control?.send({ type: 'handed-over', flows });
    control?.end();
    setTimeout(() => process.exit(0), 20);
  });
}

/** The control process went away: forward on, but hold no packets for owner answers nobody will send. */
function controlGone(): void {
  if (stopping) return;
  if (!pool || !outliveControl) {
    // Never initialised (nobody will come back for it), or told to live no longer than its control process.
    shutdown(0);
    return;
  }
  pool.request({ type: 'owner-queries', enabled: false, holdPackets: 0 });
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
  tuneMalloc();
  for (const f of unknownFailpoints()) process.stderr.write(`sluice data plane: SLUICE_FAILPOINTS names "${f}", which this build does not know\n`);
  if (failpointOn('worker-crash')) {
    process.on('SIGUSR2', () => {
      const crashed = pool?.crashLastWorker() ?? false;
      process.stderr.write(`sluice data plane: failpoint worker-crash: ${crashed ? 'ended the last worker thread' : 'no worker thread to end'}\n`);
    });
  }
  signalLoaded();
  listen(name, Date.now() + LISTEN_RETRY_MS);
  setTimeout(() => {
    if (!pool) shutdown(1);
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
