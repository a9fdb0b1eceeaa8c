// A worker thread of the shared-table race (test/fixtures/shared-race.ts), run from the
// compiled dist (npm run build first): it races on the SharedArrayBuffer in workerData and
// posts its report.
import { parentPort, workerData } from 'node:worker_threads';

const { raceWorker } = await import(new URL('../../dist/test/fixtures/shared-race.js', import.meta.url).href);
parentPort.postMessage(raceWorker(workerData));
