/**
 * A packet worker in a thread of its own (dataplane.workers > 1): the pool in the data-plane
 * process's main thread (worker-pool.ts) posts it the control process's requests, and it posts
 * its answers back. Its capture socket is one member of the workers' PACKET_FANOUT group.
 */
import { parentPort } from 'node:worker_threads';
import { PacketWorker, type ToWorker } from './packet-worker.js';

const port = parentPort;
if (!port) throw new Error('worker-thread.js runs as a worker thread of the data-plane process');
const worker = new PacketWorker((msg) => port.postMessage(msg));
port.on('message', (msg: ToWorker) => worker.handle(msg));
