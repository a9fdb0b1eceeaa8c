/**
 * The client-affinity table, private and over a SharedArrayBuffer as the data-plane workers
 * share it (issue 11): the same behaviour either way, two tables over one buffer are one table,
 * and worker threads setting and reading at once lose, duplicate or tear no entry. The worker
 * threads run the compiled fixture (test/fixtures/shared-race.ts): run `npm run build` first.
 */
import { describe, expect, it } from 'vitest';
import { AffinityTable } from '../../src/dataplane/affinity-table.js';
import { AFFINITY_RACE_CAPACITY, RACE_IDLE_MS, RACE_NOW_MS, RACE_SID, affinityHash, allKeys, backendAllowed, runRace } from '../fixtures/shared-race.js';

const TIMEOUT = 1000;

function keyOf(a: number): Uint32Array {
  return Uint32Array.of(a, 0, 0, 0);
}

const MAKERS: Record<'private' | 'shared', () => [AffinityTable, AffinityTable]> = {
  private: () => {
    const t = new AffinityTable(1024);
    return [t, t];
  },
  shared: () => {
    const buffer = AffinityTable.sharedBuffer(1024);
    return [AffinityTable.over(buffer), AffinityTable.over(buffer)];
  },
};

/** Cases over a pair of tables: the same table twice (private) or two tables over one buffer (shared): the answers must be equal. */
const cases: { name: string; run: (a: AffinityTable, b: AffinityTable) => unknown[]; want: unknown[] }[] = [
  {
    name: 'a set key is found with its backend and refreshed by lookup',
    run: (a, b) => {
      a.set(1, keyOf(0x0a000001), 5, 3, 0);
      return [b.lookup(1, keyOf(0x0a000001), 5, 900, TIMEOUT), b.lookup(1, keyOf(0x0a000001), 5, 1800, TIMEOUT), a.size];
    },
    want: [3, 3, 1],
  },
  {
    name: 'another service or another prefix misses',
    run: (a, b) => {
      a.set(1, keyOf(0x0a000001), 5, 3, 0);
      return [b.lookup(2, keyOf(0x0a000001), 5, 1, TIMEOUT), b.lookup(1, keyOf(0x0a000002), 5, 1, TIMEOUT)];
    },
    want: [-1, -1],
  },
  {
    name: 'an entry idle for the timeout expires on lookup',
    run: (a, b) => {
      a.set(1, keyOf(7), 9, 2, 0);
      return [b.peek(1, keyOf(7), 9, TIMEOUT, TIMEOUT), a.size, b.lookup(1, keyOf(7), 9, TIMEOUT, TIMEOUT), a.size, a.expirations + (a === b ? 0 : b.expirations)];
    },
    want: [-1, 1, -1, 0, 1],
  },
  {
    name: 'setting a key again replaces its backend, one entry',
    run: (a, b) => {
      a.set(1, keyOf(7), 9, 2, 0);
      b.set(1, keyOf(7), 9, 4, 1);
      return [a.lookup(1, keyOf(7), 9, 2, TIMEOUT), a.size];
    },
    want: [4, 1],
  },
  {
    name: 'a full window evicts its least recently used entry',
    run: (a, b) => {
      for (let i = 0; i < 8; i++) a.set(1, keyOf(100 + i), 40, i, i);
      b.set(1, keyOf(200), 40, 99, 10);
      return [a.size, a.evictions + (a === b ? 0 : b.evictions), a.peek(1, keyOf(100), 40, 11, TIMEOUT), a.peek(1, keyOf(101), 40, 11, TIMEOUT), a.peek(1, keyOf(200), 40, 11, TIMEOUT)];
    },
    want: [8, 1, -1, 1, 99],
  },
  {
    name: 'sweeps take the service’s timeout and together cover the table',
    run: (a, b) => {
      for (let i = 0; i < 10; i++) a.set(i & 1, keyOf(i), i * 97, i, 0);
      const timeoutOf = (sid: number): number => (sid === 0 ? 100 : 10_000);
      let n = 0;
      for (let i = 0; i < 4; i++) n += (i & 1 ? a : b).sweep(500, 256, timeoutOf);
      return [n, a.size];
    },
    want: [5, 5],
  },
  {
    name: 'clear empties the table',
    run: (a, b) => {
      a.set(1, keyOf(7), 9, 2, 0);
      b.clear();
      return [a.size, a.peek(1, keyOf(7), 9, 1, TIMEOUT)];
    },
    want: [0, -1],
  },
];

for (const [mode, make] of Object.entries(MAKERS)) {
  describe(`AffinityTable over a ${mode} buffer`, () => {
    for (const c of cases) it(c.name, () => expect(c.run(...make())).toEqual(c.want));
  });
}

describe('AffinityTable: shared buffer construction', () => {
  const bad: { name: string; make: () => unknown }[] = [
    { name: 'a buffer not made by sharedBuffer()', make: () => AffinityTable.over(new SharedArrayBuffer(AffinityTable.bytesFor(1024))) },
    { name: 'a capacity other than the buffer’s', make: () => new AffinityTable(4096, { buffer: AffinityTable.sharedBuffer(1024) }) },
  ];
  for (const b of bad) it(`rejects ${b.name}`, () => expect(b.make).toThrow(RangeError));

  it('rounds a capacity up to a power of two of at least 1024, shared or not', () => {
    expect([new AffinityTable(10).capacity, AffinityTable.over(AffinityTable.sharedBuffer(3000)).capacity]).toEqual([1024, 4096]);
  });
});

describe('AffinityTable over a shared buffer: concurrent sets from worker threads', () => {
  const WRITERS = 4;
  const DISTINCT = 5000;
  const CONTESTED = 2000;

  async function race(unsafe: boolean): Promise<Record<string, number>> {
    const buffer = AffinityTable.sharedBuffer(AFFINITY_RACE_CAPACITY);
    const r = await runRace({ kind: 'affinity', buffer, writers: WRITERS, readers: 1, distinct: DISTINCT, contested: CONTESTED, unsafe, limitMs: 60_000 });
    const t = AffinityTable.over(buffer);
    const key = new Uint32Array(4);
    let lost = 0;
    let wrong = 0;
    let found = 0;
    for (const k of allKeys(WRITERS, DISTINCT, CONTESTED)) {
      key[0] = k;
      const be = t.peek(RACE_SID, key, affinityHash(k), RACE_NOW_MS, RACE_IDLE_MS);
      if (be < 0) lost++;
      else {
        found++;
        if (!backendAllowed(k, be, WRITERS)) wrong++;
      }
    }
    return {
      lost,
      wrongBackend: wrong,
      // Entries beyond one per key: duplicates or torn keys.
      extraEntries: t.size - found,
      wrongReads: r.readers.reduce((s, x) => s + x.wrong, 0),
      evictions: r.writers.reduce((s, x) => s + x.evictions, 0),
      lockTimeouts: r.writers.reduce((s, x) => s + x.lockTimeouts, 0),
      readerLookups: r.readers.reduce((s, x) => s + x.lookups, 0),
    };
  }

  it('4 writers (5000 own clients each, 2000 clients all set at once) and a reader: one entry per client, a backend set for it', async () => {
    const d = await race(false);
    console.log(`shared affinity table, locked: ${JSON.stringify(d)}`);
    const { readerLookups, ...damage } = d;
    expect(damage).toEqual({ lost: 0, wrongBackend: 0, extraEntries: 0, wrongReads: 0, evictions: 0, lockTimeouts: 0 });
    expect(readerLookups).toBeGreaterThan(0);
  });

  it('the same race without the lock and seqlock (test-only switch) shows what the checks catch', async () => {
    // Not asserted: an unlocked run may or may not be damaged on a given machine and schedule.
    const d = await race(true);
    const total = d.lost + d.wrongBackend + Math.abs(d.extraEntries) + d.wrongReads;
    console.log(`shared affinity table, UNLOCKED: ${JSON.stringify(d)}; ${total === 0 ? 'no damage this run' : `${total} damaged`}`);
    expect(d.readerLookups).toBeGreaterThanOrEqual(0);
  });
});
