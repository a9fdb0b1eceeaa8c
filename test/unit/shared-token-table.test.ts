/**
 * The MPTCP token table over a SharedArrayBuffer, as the data-plane workers share it (issue 11):
 * two tables over one buffer are one table, and worker threads learning and looking up at once
 * lose, duplicate or tear no entry. The worker threads run the compiled fixture
 * (test/fixtures/shared-race.ts via test/unit/shared-race-worker.mjs): run `npm run build` first.
 * The same-as-private cases are in mptcp-tokens.test.ts ("over a shared buffer").
 */
import { describe, expect, it } from 'vitest';
import { LEARN_BUSY, LEARN_COLLISION, LEARN_NEW, LEARN_REFRESHED, MptcpTokenTable } from '../../src/dataplane/mptcp-tokens.js';
import {
  RACE_CAPACITY,
  RACE_IDLE_MS,
  RACE_NOW_MS,
  RACE_WINDOW,
  allKeys,
  backendAllowed,
  contestedKey,
  runRace,
  serviceFor,
  type RaceResult,
} from '../fixtures/shared-race.js';

const IDLE = 10_000;

function pair(capacity = 64): [MptcpTokenTable, MptcpTokenTable] {
  const buffer = MptcpTokenTable.sharedBuffer(capacity, { seed: 0x0badcafe });
  return [MptcpTokenTable.over(buffer, { idleTimeoutMs: IDLE }), MptcpTokenTable.over(buffer, { idleTimeoutMs: IDLE })];
}

describe('MptcpTokenTable over a shared buffer: construction', () => {
  const bad: { name: string; make: () => unknown }[] = [
    { name: 'a buffer not made by sharedBuffer()', make: () => MptcpTokenTable.over(new SharedArrayBuffer(MptcpTokenTable.bytesFor(64))) },
    { name: 'a buffer shorter than a header', make: () => MptcpTokenTable.over(new SharedArrayBuffer(8)) },
    { name: 'a capacity other than the buffer’s', make: () => new MptcpTokenTable({ capacity: 128, buffer: MptcpTokenTable.sharedBuffer(64) }) },
    { name: 'sharedBuffer() of a capacity not a power of two', make: () => MptcpTokenTable.sharedBuffer(100) },
  ];
  for (const b of bad) it(`rejects ${b.name}`, () => expect(b.make).toThrow(RangeError));

  it('takes capacity, window and seed from the buffer', () => {
    const buffer = MptcpTokenTable.sharedBuffer(256, { probeWindow: 4, seed: 77 });
    const t = MptcpTokenTable.over(buffer);
    const twin = new MptcpTokenTable({ capacity: 256, probeWindow: 4, seed: 77 });
    expect([t.capacity, t.probeWindow, buffer.byteLength]).toEqual([256, 4, MptcpTokenTable.bytesFor(256)]);
    for (const tok of [0, 1, 0xdeadbeef, 0xffffffff]) expect(t.bucketOf(tok)).toBe(twin.bucketOf(tok));
  });
});

describe('MptcpTokenTable over a shared buffer: two tables are one', () => {
  const cases: { name: string; run: (a: MptcpTokenTable, b: MptcpTokenTable) => void }[] = [
    {
      name: 'a token learned in one is found in the other, with its service and version',
      run: (a, b) => {
        expect(a.learn(0x464b4775, 11, 3, 0, 100)).toBe(LEARN_NEW);
        expect(b.lookup(0x464b4775, 101)).toBe(11);
        const s = b.lookupSlot(0x464b4775, 101);
        expect([b.backendAt(s), b.serviceAt(s), b.versionAt(s), b.lastSeenAt(s)]).toEqual([11, 3, 0, 100]);
        expect([a.active, b.active]).toEqual([1, 1]);
      },
    },
    {
      name: 'the same token learned again in the other: refreshed, or a collision keeping the first owner',
      run: (a, b) => {
        a.learn(7, 2, 0, 1, 0);
        expect(b.learn(7, 2, 0, 1, 50)).toBe(LEARN_REFRESHED);
        expect(b.learn(7, 3, 0, 1, 60)).toBe(LEARN_COLLISION);
        expect([a.lookup(7, 70), a.active, b.collisions, a.collisions]).toEqual([2, 1, 1, 0]);
      },
    },
    {
      name: 'remove in one forgets it in both',
      run: (a, b) => {
        a.learn(9, 1, 0, 1, 0);
        expect(b.remove(9)).toBe(true);
        expect([a.lookup(9, 1), a.remove(9), a.active]).toEqual([-1, false, 0]);
      },
    },
    {
      name: 'touch in one keeps the entry alive for the other',
      run: (a, b) => {
        a.learn(42, 5, 0, 1, 0);
        expect(b.touch(42, IDLE)).toBe(true);
        expect(a.lookup(42, 2 * IDLE)).toBe(5);
        expect(a.lookup(42, 2 * IDLE + 1)).toBe(-1);
        expect(b.active).toBe(0);
      },
    },
    {
      name: 'sweeps of both share one cursor and together cover the table once',
      run: (a, b) => {
        for (let i = 0; i < 20; i++) a.learn(1000 + i * 7919, i, 0, 1, 0);
        let removed = 0;
        for (let i = 0; i < 4; i++) removed += (i & 1 ? a : b).sweep(IDLE + 1, 16);
        expect([removed, a.active, a.expired + b.expired]).toEqual([20, 0, 20]);
      },
    },
    {
      name: 'clear in one empties both',
      run: (a, b) => {
        a.learn(1, 1, 0, 1, 0);
        a.learn(2, 2, 0, 1, 0);
        b.clear();
        expect([a.active, a.lookup(1, 1), [...a.entries(1)].length]).toEqual([0, -1, 0]);
      },
    },
    {
      name: 'entries() of the other lists what one learned',
      run: (a, b) => {
        a.learn(1, 10, 2, 1, 0);
        expect([...b.entries(1)]).toEqual([{ token: 1, backendId: 10, serviceIndex: 2, version: 1, lastSeenMs: 0 }]);
      },
    },
  ];
  for (const c of cases) it(c.name, () => c.run(...pair()));
});

describe('MptcpTokenTable over a shared buffer: a writer that died holding the lock', () => {
  it('others give up their writes (counted), keep reading; releaseLockOf(buffer, its id) repairs its slot and frees the lock', () => {
    const capacity = 64;
    const buffer = MptcpTokenTable.sharedBuffer(capacity, { seed: 5 });
    const a = MptcpTokenTable.over(buffer, { idleTimeoutMs: IDLE, writerId: 1 });
    a.learn(100, 1, 0, 1, 0);
    a.learn(200, 2, 0, 1, 0);
    const slot = a.lookupSlot(200, 0);
    // What writer 3 leaves if its thread ends inside learn(): its id in the lock word (header
    // word 4) and an odd sequence on the slot it was writing (the Int32 array after the header
    // and the Float64 last-seen array; layout in mptcp-tokens.ts).
    new Int32Array(buffer, 0, 16)[4] = 3;
    new Int32Array(buffer, 64 + capacity * 8, capacity)[slot] |= 1;
    expect([a.lookup(100, 1), a.lookup(200, 1)]).toEqual([1, -1]);
    expect([a.learn(300, 3, 0, 1, 1), a.lockTimeouts]).toEqual([LEARN_BUSY, 1]);
    expect(MptcpTokenTable.releaseLockOf(buffer, 2)).toBe(false);
    expect(MptcpTokenTable.releaseLockOf(buffer, 3)).toBe(true);
    expect([a.active, a.lookup(100, 1), a.lookup(200, 1), a.learn(300, 3, 0, 1, 1), a.learn(200, 2, 0, 1, 1), a.active]).toEqual([1, 1, -1, LEARN_NEW, LEARN_NEW, 3]);
  });
});

interface TokenDamage {
  /** Keys learned but not in the table. */
  lost: number;
  /** Extra entries of one token. */
  duplicated: number;
  /** Entries whose backend was never learned for their token, or whose service is not their backend's. */
  torn: number;
  /** Contested tokens whose LEARN_NEW answers (summed over writers) are not exactly 1, or whose entry is not the winner's. */
  ownerMismatch: number;
  /** active - entries found. */
  activeDrift: number;
  /** Reader lookups that returned a wrong backend or a mixed entry. */
  wrongReads: number;
}

function tokenDamage(buffer: SharedArrayBuffer, race: RaceResult, writers: number, distinct: number, contested: number): TokenDamage {
  const t = MptcpTokenTable.over(buffer, { idleTimeoutMs: RACE_IDLE_MS });
  const seen = new Map<number, number>();
  let torn = 0;
  let entries = 0;
  for (const e of t.entries(RACE_NOW_MS)) {
    entries++;
    seen.set(e.token, (seen.get(e.token) ?? 0) + 1);
    if (!backendAllowed(e.token, e.backendId, writers) || e.serviceIndex !== serviceFor(e.backendId)) torn++;
  }
  let lost = 0;
  let duplicated = 0;
  for (const key of allKeys(writers, distinct, contested)) {
    const n = seen.get(key) ?? 0;
    if (n === 0) lost++;
    else duplicated += n - 1;
  }
  let ownerMismatch = 0;
  const winners = new Map<number, number[]>();
  race.writers.forEach((r, w) => r.won.forEach((c) => winners.set(c, [...(winners.get(c) ?? []), w])));
  for (let c = 0; c < contested; c++) {
    const won = winners.get(c) ?? [];
    const be = t.lookup(contestedKey(c), RACE_NOW_MS);
    if (won.length !== 1 || be < 0 || (be & 15) !== won[0]) ownerMismatch++;
  }
  const wrongReads = race.readers.reduce((s, r) => s + r.wrong, 0);
  return { lost, duplicated, torn, ownerMismatch, activeDrift: t.active - entries, wrongReads };
}

describe('MptcpTokenTable over a shared buffer: concurrent inserts from worker threads', () => {
  const WRITERS = 4;
  const DISTINCT = 5000;
  const CONTESTED = 2000;
  const READERS = 1;
  const LIMIT_MS = 60_000;

  async function race(unsafe: boolean): Promise<{ damage: TokenDamage; race: RaceResult }> {
    const buffer = MptcpTokenTable.sharedBuffer(RACE_CAPACITY, { probeWindow: RACE_WINDOW });
    const r = await runRace({ kind: 'tokens', buffer, writers: WRITERS, readers: READERS, distinct: DISTINCT, contested: CONTESTED, unsafe, limitMs: LIMIT_MS });
    return { damage: tokenDamage(buffer, r, WRITERS, DISTINCT, CONTESTED), race: r };
  }

  it('4 writers (5000 own tokens each, 2000 tokens all learn at once) and a reader: nothing lost, duplicated or torn', async () => {
    const { damage, race: r } = await race(false);
    const reads = r.readers.reduce((s, x) => s + x.lookups, 0);
    console.log(`shared token table, locked: ${JSON.stringify(damage)}; reader lookups ${reads}, hits ${r.readers.reduce((s, x) => s + x.hits, 0)}`);
    expect(damage).toEqual({ lost: 0, duplicated: 0, torn: 0, ownerMismatch: 0, activeDrift: 0, wrongReads: 0 });
    expect(r.writers.map((w) => [w.busy, w.lockTimeouts, w.evictions])).toEqual(r.writers.map(() => [0, 0, 0]));
    expect(reads).toBeGreaterThan(0);
  });

  it('the same race without the lock and seqlock (test-only switch) shows what the checks catch', async () => {
    // Not asserted: an unlocked run may or may not be damaged on a given machine and schedule.
    const { damage, race: r } = await race(true);
    const total = damage.lost + damage.duplicated + damage.torn + damage.ownerMismatch + Math.abs(damage.activeDrift) + damage.wrongReads;
    console.log(`shared token table, UNLOCKED: ${JSON.stringify(damage)}; reader lookups ${r.readers.reduce((s, x) => s + x.lookups, 0)}; ${total === 0 ? 'no damage this run' : `${total} damaged`}`);
    expect(r.writers.length).toBe(WRITERS);
  });
});
