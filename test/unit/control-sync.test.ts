/**
 * OwnerSync over an in-memory network that still seals, authenticates and decodes every
 * datagram with the real codec; manual timers. Covers routing to owner + replica, the query
 * outcomes (local hit, remote hit, both NOT FOUND, timeout, overflow), answer matching, read
 * repair, handoff on view change and on restart, and the publish bounds.
 */
import { describe, expect, it } from 'vitest';
import { MessageAuthenticator, ReplayGuard } from '../../src/control/auth.js';
import {
  HEADER_BYTES,
  MAX_BODY_BYTES,
  MAX_DATAGRAM_BYTES,
  decodeDatagram,
  sealDatagram,
  senderHash,
  tokenKey,
  type MessageTypeName,
  type SyncEntry,
} from '../../src/control/codec.js';
import { OwnerStore } from '../../src/control/owner-store.js';
import { MAX_AWAITING, OwnerSync, ownersOf, type SyncTimers, type SyncTransport } from '../../src/control/sync.js';
import type { BodyWriter, BulkSource } from '../../src/control/transport.js';
import { hashInstanceId } from '../../src/hash/rendezvous.js';

const KEY = Buffer.alloc(32, 3);
const NOW_WALL = 1_700_000_000_000;
const auth = new MessageAuthenticator(KEY);

class ManualTimers implements SyncTimers {
  now = 0;
  #timers = new Map<number, { at: number; fn: () => void }>();
  #deferred: (() => void)[] = [];
  #next = 1;
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.#next++;
    this.#timers.set(id, { at: this.now + ms, fn });
    return id;
  }
  clearTimeout(h: unknown): void {
    this.#timers.delete(h as number);
  }
  defer(fn: () => void): void {
    this.#deferred.push(fn);
  }
  advance(ms: number): void {
    this.now += ms;
    for (const [id, t] of [...this.#timers]) {
      if (t.at <= this.now) {
        this.#timers.delete(id);
        t.fn();
      }
    }
  }
  runDeferred(): number {
    let n = 0;
    while (this.#deferred.length > 0 && n < 10_000) {
      this.#deferred.shift()?.();
      n++;
    }
    return n;
  }
  get pending(): number {
    return this.#timers.size;
  }
}

interface Node {
  id: string;
  store: OwnerStore;
  sync: OwnerSync;
  bulk?: BulkSource;
  kicked: Set<string>;
  replay: ReplayGuard;
  seq: number;
}

/** Nodes joined by an in-memory wire; `blocked` holds "from>to" links that lose everything. */
class FakeNet {
  readonly nodes = new Map<string, Node>();
  readonly timers = new ManualTimers();
  readonly blocked = new Set<string>();
  readonly wire: (() => void)[] = [];
  readonly sentTypes: MessageTypeName[] = [];

  constructor(ids: string[], opts: { storeCapacity?: number; maxOutstandingQueries?: number; maxPendingPublish?: number; replicas?: number; awaitPublishMs?: Partial<Record<SyncEntry['kind'], number>> } = {}) {
    for (const id of ids) {
      const node: Node = { id, store: new OwnerStore(opts.storeCapacity ?? 10_000), kicked: new Set(), replay: new ReplayGuard(), seq: 0 } as Node;
      const transport: SyncTransport = {
        send: (peer, type, write) => this.#send(node, peer, type, write),
        kick: (peer) => node.kicked.add(peer),
        setBulkSource: (src) => (node.bulk = src),
      };
      node.sync = new OwnerSync({
        selfId: id,
        transport,
        store: node.store,
        now: () => this.timers.now,
        timers: this.timers,
        maxOutstandingQueries: opts.maxOutstandingQueries,
        maxPendingPublish: opts.maxPendingPublish,
        replicas: opts.replicas,
        awaitPublishMs: opts.awaitPublishMs,
        handoffSlice: 7,
      });
      this.nodes.set(id, node);
    }
    this.setLive(ids);
  }

  node(id: string): Node {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(id);
    return n;
  }

  setLive(ids: string[], on: string[] = [...this.nodes.keys()]): void {
    const sorted = [...ids].sort();
    for (const id of on) this.node(id).sync.setLive(sorted, Uint32Array.from(sorted, hashInstanceId));
  }

  #send(from: Node, to: string, type: MessageTypeName, write: BodyWriter): boolean {
    const buf = Buffer.alloc(MAX_DATAGRAM_BYTES);
    this.#transmit(from, to, type, buf, write(buf, HEADER_BYTES, MAX_BODY_BYTES));
    return true;
  }

  #transmit(from: Node, to: string, type: MessageTypeName, buf: Buffer, bodyLen: number): void {
    const len = sealDatagram(buf, bodyLen, { type, sender: senderHash(from.id), incarnation: 1n, sequence: ++from.seq, timestampMs: NOW_WALL }, auth);
    this.sentTypes.push(type);
    if (this.blocked.has(`${from.id}>${to}`)) return;
    const dgram = buf.subarray(0, len);
    this.wire.push(() => {
      const dest = this.nodes.get(to);
      if (dest === undefined) return;
      const known = new Set([...this.nodes.keys()].filter((k) => k !== to).map(senderHash));
      const r = decodeDatagram(dgram, { auth, replay: dest.replay, isKnownSender: (s) => known.has(s), nowMs: NOW_WALL });
      if (!r.ok) throw new Error(`fake wire: ${r.reason}`);
      dest.sync.handle(from.id, r.message);
    });
  }

  /** Pull bulk datagrams and deliver everything until the wire is quiet (bounded). */
  settle(): void {
    for (let round = 0; round < 10_000; round++) {
      this.timers.runDeferred();
      for (const n of this.nodes.values()) {
        for (const peer of [...n.kicked]) {
          n.kicked.delete(peer);
          const src = n.bulk;
          for (let i = 0; src !== undefined && i < 10_000; i++) {
            const buf = Buffer.alloc(MAX_DATAGRAM_BYTES);
            const bodyLen = src(peer, buf, HEADER_BYTES, MAX_BODY_BYTES);
            if (bodyLen === 0) break;
            this.#transmit(n, peer, 'PUBLISH', buf, bodyLen);
          }
        }
      }
      if (this.wire.length === 0) return;
      while (this.wire.length > 0) this.wire.shift()?.();
    }
    throw new Error('fake network did not settle');
  }
}

const IDS = ['lb-a', 'lb-b', 'lb-c'];
const web = (i: number): { service: string; address: string } => ({ service: 'web', address: `10.2.0.${1 + (i % 4)}` });
const flowKey = (i: number): Uint8Array => Uint8Array.from([192, 0, 2, i & 0xff, 198, 51, 100, 1, (i >> 8) & 0xff, 0x10, 1, 187, 6]);
const entries = (n: number, ttlMs = 60_000): SyncEntry[] =>
  Array.from({ length: n }, (_, i) => (i % 5 === 0 ? { kind: 'token', key: tokenKey(0x1000 + i), backend: web(i), ttlMs } : { kind: 'flow', key: flowKey(i), backend: web(i), ttlMs }));
const owners = (key: Uint8Array, ids = IDS): string[] => ownersOf(key, [...ids].sort(), Uint32Array.from([...ids].sort(), hashInstanceId));
/** An entry of this kind whose owners are exactly `own` among IDS (flows by default: tokens are awaited, see below). */
function entryOwnedBy(own: string[], kind: SyncEntry['kind'] = 'flow'): SyncEntry {
  for (const e of entries(500)) {
    const o = owners(e.key);
    if (e.kind === kind && o.length === own.length && own.every((x) => o.includes(x))) return e;
  }
  throw new Error('no such entry');
}

describe('OwnerSync publish', () => {
  it('stores every entry at exactly its owner and replica', () => {
    const net = new FakeNet(IDS);
    const es = entries(300);
    const res = net.node('lb-a').sync.publish(es);
    net.settle();
    expect(res.accepted).toBe(300);
    expect(res.local + res.queued).toBe(600);
    for (const e of es) {
      const own = owners(e.key);
      expect(own.length).toBe(2);
      for (const id of IDS) {
        const got = net.node(id).store.lookup(e.kind, e.key, 0);
        expect(got?.backend ?? null, `${id} ${own}`).toEqual(own.includes(id) ? e.backend : null);
      }
    }
    expect(net.node('lb-b').sync.counters.storedNotOwner + net.node('lb-c').sync.counters.storedNotOwner).toBe(0);
  });

  it('batches many entries per datagram', () => {
    const net = new FakeNet(IDS);
    net.node('lb-a').sync.publish(entries(1000));
    net.settle();
    const datagrams = net.sentTypes.filter((t) => t === 'PUBLISH').length;
    expect(datagrams).toBeGreaterThan(0);
    expect(net.node('lb-a').sync.counters.publishSent / datagrams).toBeGreaterThan(40);
  });

  it('a ttl of 0 withdraws the entry at its owners', () => {
    const net = new FakeNet(IDS);
    const [e] = entries(1);
    net.node('lb-a').sync.publish([e]);
    net.settle();
    net.node('lb-a').sync.publish([{ ...e, ttlMs: 0 }]);
    net.settle();
    for (const id of IDS) expect(net.node(id).store.lookup(e.kind, e.key, 0)).toBeUndefined();
  });

  const invalid: { name: string; e: SyncEntry }[] = [
    { name: 'flow key of 12 bytes', e: { kind: 'flow', key: new Uint8Array(12), backend: web(0), ttlMs: 1 } },
    { name: 'fractional ttl', e: { kind: 'token', key: tokenKey(1), backend: web(0), ttlMs: 1.5 } },
    { name: 'address that is not an IP', e: { kind: 'token', key: tokenKey(1), backend: { service: 'web', address: 'x' }, ttlMs: 1 } },
  ];
  for (const c of invalid) {
    it(`refuses and counts: ${c.name}`, () => {
      const net = new FakeNet(IDS);
      const r = net.node('lb-a').sync.publish([c.e]);
      expect(r).toMatchObject({ accepted: 0, invalid: 1 });
      expect(net.node('lb-a').sync.counters.publishInvalid).toBe(1);
    });
  }

  it('drops and counts copies beyond maxPendingPublish', () => {
    const net = new FakeNet(IDS, { maxPendingPublish: 10 });
    const r = net.node('lb-a').sync.publish(entries(100));
    expect(r.queued).toBe(10);
    expect(r.dropped).toBe(200 - r.local - 10);
    expect(net.node('lb-a').sync.counters.publishDropped).toBe(r.dropped);
  });

  it('stores entries it does not own in its view, and counts them', () => {
    const net = new FakeNet(IDS);
    const four = [...IDS, 'lb-d'];
    net.setLive(four, ['lb-b']); // lb-b believes in a fourth instance the others have not seen
    const toB = entries(200).filter((e) => owners(e.key).includes('lb-b'));
    net.node('lb-a').sync.publish(toB);
    net.settle();
    const notOwnedInBView = toB.filter((e) => !owners(e.key, four).includes('lb-b')).length;
    expect(notOwnedInBView).toBeGreaterThan(0);
    expect(net.node('lb-b').sync.counters.storedNotOwner).toBe(notOwnedInBView);
    for (const e of toB) expect(net.node('lb-b').store.lookup(e.kind, e.key, 0)?.backend).toEqual(e.backend);
  });
});

describe('OwnerSync query', () => {

  it('answers from its own store when it is an owner (no datagram)', async () => {
    const net = new FakeNet(IDS);
    const e = entryOwnedBy(['lb-a', 'lb-b']);
    net.node('lb-a').store.put(e.kind, e.key, e.backend, 1000, 0);
    const got = await net.node('lb-a').sync.query(e.kind, e.key, 20);
    expect(got).toEqual(e.backend);
    expect(net.node('lb-a').sync.counters).toMatchObject({ hits: 1, localHits: 1, queriesSent: 0 });
  });

  it('finds an entry held only by the replica, from a third instance', async () => {
    const net = new FakeNet(IDS);
    const e = entryOwnedBy(['lb-a', 'lb-b']);
    net.node('lb-b').store.put(e.kind, e.key, e.backend, 1000, 0);
    const p = net.node('lb-c').sync.query(e.kind, e.key, 20);
    net.settle();
    expect(await p).toEqual(e.backend);
    const c = net.node('lb-c').sync.counters;
    expect(c).toMatchObject({ hits: 1, queriesSent: 2, misses: 0, timeouts: 0 });
    expect(c.latency.count).toBe(1);
    expect(net.timers.pending).toBe(0); // the timeout was cleared
  });

  it('resolves null without waiting when both owners answer NOT FOUND', async () => {
    const net = new FakeNet(IDS);
    const e = entryOwnedBy(['lb-a', 'lb-b']);
    const p = net.node('lb-c').sync.query(e.kind, e.key, 20);
    net.settle();
    expect(await p).toBeNull();
    expect(net.node('lb-c').sync.counters).toMatchObject({ misses: 1, timeouts: 0 });
    expect(net.timers.pending).toBe(0);
  });

  it('resolves null on timeout when an owner stays silent', async () => {
    const net = new FakeNet(IDS);
    const e = entryOwnedBy(['lb-a', 'lb-b']);
    net.blocked.add('lb-c>lb-a');
    const p = net.node('lb-c').sync.query(e.kind, e.key, 20);
    net.settle(); // lb-b says NOT FOUND; lb-a never hears the question
    net.timers.advance(19);
    expect(net.node('lb-c').sync.outstandingQueries).toBe(1);
    net.timers.advance(1);
    expect(await p).toBeNull();
    expect(net.node('lb-c').sync.counters).toMatchObject({ timeouts: 1, misses: 0 });
  });

  it('takes the first FOUND answer even if the other owner is silent', async () => {
    const net = new FakeNet(IDS);
    const e = entryOwnedBy(['lb-a', 'lb-b']);
    net.blocked.add('lb-c>lb-a');
    net.node('lb-b').store.put(e.kind, e.key, e.backend, 1000, 0);
    const p = net.node('lb-c').sync.query(e.kind, e.key, 20);
    net.settle();
    expect(await p).toEqual(e.backend);
  });

  it('repairs its own store when it is an owner and the replica had the entry', async () => {
    const net = new FakeNet(IDS);
    const e = entryOwnedBy(['lb-a', 'lb-b']);
    net.node('lb-b').store.put(e.kind, e.key, e.backend, 1000, 0);
    const p = net.node('lb-a').sync.query(e.kind, e.key, 20);
    net.settle();
    expect(await p).toEqual(e.backend);
    expect(net.node('lb-a').store.lookup(e.kind, e.key, 0)?.backend).toEqual(e.backend);
    expect(net.node('lb-a').sync.counters.readRepairs).toBe(1);
  });

  it('resolves null at once beyond maxOutstandingQueries, and counts it', async () => {
    const net = new FakeNet(IDS, { maxOutstandingQueries: 2 });
    for (const peer of ['lb-a', 'lb-b']) net.blocked.add(`lb-c>${peer}`);
    const e = entryOwnedBy(['lb-a', 'lb-b']);
    const first = [net.node('lb-c').sync.query(e.kind, e.key, 20), net.node('lb-c').sync.query(e.kind, e.key, 20)];
    expect(await net.node('lb-c').sync.query(e.kind, e.key, 20)).toBeNull();
    expect(net.node('lb-c').sync.counters.queryOverflow).toBe(1);
    net.timers.advance(20);
    expect(await Promise.all(first)).toEqual([null, null]);
    expect(net.node('lb-c').sync.counters.timeouts).toBe(2);
  });

  it('ignores answers it did not ask for (wrong peer, wrong key, unknown id)', async () => {
    const net = new FakeNet(IDS);
    const e = entryOwnedBy(['lb-a', 'lb-b']);
    const c = net.node('lb-c');
    const p = c.sync.query(e.kind, e.key, 20);
    net.wire.length = 0; // the questions are lost
    const id = 1; // the first query id
    const forged = [
      { peer: 'lb-c', body: { queryId: id, kind: e.kind, key: e.key, found: true, backend: web(9), ttlMs: 5 } }, // not asked
      { peer: 'lb-a', body: { queryId: id, kind: 'token' as const, key: tokenKey(1), found: true, backend: web(9), ttlMs: 5 } }, // other key
      { peer: 'lb-a', body: { queryId: id + 1, kind: e.kind, key: e.key, found: true, backend: web(9), ttlMs: 5 } }, // other id
    ];
    for (const f of forged) c.sync.handle(f.peer, { type: 'ANSWER', header: { type: 'ANSWER', sender: 0, incarnation: 1n, sequence: 1n, timestampMs: 0 }, body: f.body });
    expect(c.sync.counters.unmatchedAnswers).toBe(3);
    expect(c.sync.outstandingQueries).toBe(1);
    net.timers.advance(20);
    expect(await p).toBeNull();
  });

  it('resolves waiting queries with null on stop', async () => {
    const net = new FakeNet(IDS);
    net.blocked.add('lb-c>lb-a');
    net.blocked.add('lb-c>lb-b');
    const e = entryOwnedBy(['lb-a', 'lb-b']);
    const p = net.node('lb-c').sync.query(e.kind, e.key, 20);
    net.node('lb-c').sync.stop();
    expect(await p).toBeNull();
    expect(await net.node('lb-c').sync.query(e.kind, e.key, 20)).toBeNull();
  });
});

describe('OwnerSync handoff', () => {
  it('gives a joining instance the entries it now owns', () => {
    const net = new FakeNet([...IDS, 'lb-d']);
    net.setLive(IDS); // lb-d not live yet
    const es = entries(200);
    net.node('lb-a').sync.publish(es);
    net.settle();
    net.setLive([...IDS, 'lb-d']);
    net.settle();
    const four = [...IDS, 'lb-d'];
    const forD = es.filter((e) => owners(e.key, four).includes('lb-d'));
    expect(forD.length).toBeGreaterThan(20);
    for (const e of forD) expect(net.node('lb-d').store.lookup(e.kind, e.key, 0)?.backend).toEqual(e.backend);
    expect(net.node('lb-d').store.size).toBe(forD.length);
  });

  it('after an instance leaves, every entry is again held by both of its new owners', () => {
    const net = new FakeNet(IDS);
    const es = entries(200);
    net.node('lb-a').sync.publish(es);
    net.settle();
    net.nodes.delete('lb-c');
    net.setLive(['lb-a', 'lb-b']);
    net.settle();
    for (const e of es) for (const id of ['lb-a', 'lb-b']) expect(net.node(id).store.lookup(e.kind, e.key, 0), id).toBeDefined();
  });

  it('refills a peer that restarted while up', () => {
    const net = new FakeNet(IDS);
    const es = entries(100);
    net.node('lb-a').sync.publish(es);
    net.settle();
    net.node('lb-b').store.clear();
    net.node('lb-a').sync.peerRestarted('lb-b');
    net.node('lb-c').sync.peerRestarted('lb-b');
    net.settle();
    const forB = es.filter((e) => owners(e.key).includes('lb-b'));
    expect(net.node('lb-b').store.size).toBe(forB.length);
  });
});

describe('OwnerSync: late answers and resends (a slow owner)', () => {

  const late: { name: string; heldBy: string[]; lateFound: number }[] = [
    { name: 'the owner held an entry: its late FOUND is counted', heldBy: ['lb-a'], lateFound: 1 },
    { name: 'owner and replica held it: counted once', heldBy: ['lb-a', 'lb-b'], lateFound: 1 },
    { name: 'nobody held it: late NOT FOUNDs are not counted', heldBy: [], lateFound: 0 },
  ];
  for (const c of late) {
    it(c.name, async () => {
      const net = new FakeNet(IDS);
      const e = entryOwnedBy(['lb-a', 'lb-b']);
      for (const id of c.heldBy) net.node(id).store.put(e.kind, e.key, e.backend, 1000, 0);
      const q = net.node('lb-c').sync;
      const p = q.query(e.kind, e.key, 20);
      net.timers.advance(20); // the questions are on the wire, the answers not yet back
      expect(await p).toBeNull();
      expect(q.counters.lateFound).toBe(0);
      net.settle();
      expect(q.counters).toMatchObject({ timeouts: 1, lateFound: c.lateFound });
      // A late FOUND is kept a moment: the data plane's second ask for the flow is answered at once.
      const again = q.query(e.kind, e.key, 20);
      net.settle();
      net.timers.advance(20);
      expect((await again) !== null).toBe(c.lateFound === 1 || c.heldBy.length > 0);
      expect(q.counters.localHits).toBe(c.lateFound);
    });
  }

  it('a QUERY lost on the wire is sent again at resendMs and its answer settles the query; without resend it times out', async () => {
    const run = async (resendMs: number): Promise<{ got: unknown; counters: { timeouts: number; queryResends: number; hits: number } }> => {
      const net = new FakeNet(IDS);
      const e = entryOwnedBy(['lb-a', 'lb-b']);
      net.node('lb-a').store.put(e.kind, e.key, e.backend, 1000, 0);
      const q = net.node('lb-c').sync;
      const p = q.query(e.kind, e.key, 42, { resendMs });
      net.wire.length = 0; // both questions lost
      net.timers.advance(20);
      net.settle();
      net.timers.advance(22);
      return { got: await p, counters: q.counters };
    };
    const withResend = await run(20);
    const without = await run(0);
    console.log(`lost QUERY: with resend at 20 ms: hits ${withResend.counters.hits}, timeouts ${withResend.counters.timeouts}; without: hits ${without.counters.hits}, timeouts ${without.counters.timeouts}`);
    expect(withResend.got).not.toBeNull();
    expect(withResend.counters).toMatchObject({ hits: 1, timeouts: 0, queryResends: 2 });
    expect(without.got).toBeNull();
    expect(without.counters).toMatchObject({ hits: 0, timeouts: 1, queryResends: 0 });
  });
});

describe('OwnerSync: every instance a replica (what the daemon asks for)', () => {
  it('a published entry is on every instance; once the view has settled a miss is answered from the store alone (no peer asked), before that the peers are asked', async () => {
    const net = new FakeNet(IDS, { replicas: IDS.length });
    const [e] = entries(1);
    net.node('lb-a').sync.publish([e]);
    net.settle();
    for (const id of IDS) expect(net.node(id).store.size, id).toBe(1);
    const q = net.node('lb-c').sync;
    // Found locally, whatever the view's age.
    expect(await q.query(e.kind, e.key, 20)).not.toBeNull();
    const [other] = entries(2).slice(1);
    // Right after the view was set: a miss still asks the peers.
    const sentBefore = net.sentTypes.filter((t) => t === 'QUERY').length;
    const early = q.query(other.kind, other.key, 20);
    net.settle();
    net.timers.advance(20);
    expect(await early).toBeNull();
    const askedEarly = net.sentTypes.filter((t) => t === 'QUERY').length - sentBefore;
    // Settled (3 s later): answered at once, nobody asked.
    net.timers.advance(3000);
    const before = net.sentTypes.filter((t) => t === 'QUERY').length;
    expect(await q.query(other.kind, other.key, 20)).toBeNull();
    const askedSettled = net.sentTypes.filter((t) => t === 'QUERY').length - before;
    console.log(`a miss with every instance a replica: QUERY datagrams right after a view change ${askedEarly}, once settled ${askedSettled}`);
    expect(askedEarly).toBe(2);
    expect(askedSettled).toBe(0);
    expect(q.counters.settledMisses).toBe(1);
  });
});

describe('OwnerSync: a token on its way (the join asked before the PUBLISH arrived)', () => {
  const OFF = {};
  interface Outcome {
    got: unknown;
    querier: OwnerSync['counters'];
    owners: OwnerSync['counters'][];
  }
  /**
   * lb-c asks for a token whose owners are lb-a and lb-b; `publishAfterMs` later (or never), `publisher`
   * publishes it. Returns what lb-c's query resolved to and everyone's counters.
   */
  async function race(o: { awaitPublishMs?: Record<string, number>; publisher: string; querier: string; publishAfterMs: number | null; timeoutMs?: number; replicas?: number; settleView?: boolean }): Promise<Outcome> {
    const net = new FakeNet(IDS, { awaitPublishMs: o.awaitPublishMs, replicas: o.replicas });
    if (o.settleView) net.timers.advance(3000);
    const e = entryOwnedBy(['lb-a', 'lb-b'], 'token');
    const p = net.node(o.querier).sync.query(e.kind, e.key, o.timeoutMs ?? 144);
    net.settle(); // the QUERYs reach the owners first
    if (o.publishAfterMs !== null) {
      net.timers.advance(o.publishAfterMs);
      net.node(o.publisher).sync.publish([e]);
      net.settle();
    }
    // The owners' waits end (100 ms), their answers travel, then the querier's own timeout.
    net.timers.advance(101);
    net.settle();
    net.timers.advance(100);
    net.settle();
    return { got: await p, querier: net.node(o.querier).sync.counters, owners: ['lb-a', 'lb-b'].map((id) => net.node(id).sync.counters) };
  }

  const cases: { name: string; run: Parameters<typeof race>[0]; found: boolean; expect: (r: Outcome) => void }[] = [
    {
      name: 'an owner holds the QUERY; the PUBLISH 30 ms later answers it FOUND',
      run: { publisher: 'lb-a', querier: 'lb-c', publishAfterMs: 30 },
      found: true,
      expect: (r) => {
        expect(r.querier).toMatchObject({ hits: 1, misses: 0, timeouts: 0 });
        expect(r.owners.reduce((n, c) => n + c.awaitedFound, 0)).toBe(2);
      },
    },
    {
      name: 'the same race with the wait off: NOT FOUND at once, the join would be lost',
      run: { awaitPublishMs: OFF, publisher: 'lb-a', querier: 'lb-c', publishAfterMs: 30 },
      found: false,
      expect: (r) => {
        expect(r.querier).toMatchObject({ hits: 0, misses: 1 });
        expect(r.owners.reduce((n, c) => n + c.awaited, 0)).toBe(0);
      },
    },
    {
      name: 'a token nobody publishes: NOT FOUND when the wait ends (100 ms), before the querier gives up',
      run: { publisher: 'lb-a', querier: 'lb-c', publishAfterMs: null },
      found: false,
      expect: (r) => {
        expect(r.querier).toMatchObject({ hits: 0, misses: 1, timeouts: 0 });
        expect(r.owners.map((c) => c.awaitedExpired)).toEqual([1, 1]);
      },
    },
    {
      name: 'the querier is an owner: the PUBLISH reaching it first settles its query',
      run: { publisher: 'lb-c', querier: 'lb-a', publishAfterMs: 10 },
      found: true,
      expect: (r) => {
        expect(r.querier).toMatchObject({ hits: 1, awaitedSelfFound: 1, timeouts: 0 });
      },
    },
    {
      name: 'every instance a replica, view settled: no peer to ask, the PUBLISH on its way still answers',
      run: { publisher: 'lb-b', querier: 'lb-c', publishAfterMs: 10, replicas: 3, settleView: true },
      found: true,
      expect: (r) => {
        expect(r.querier).toMatchObject({ hits: 1, awaitedSelfFound: 1, queriesSent: 0 });
      },
    },
    {
      name: 'every instance a replica, view settled, nothing published: a miss when the wait ends',
      run: { publisher: 'lb-b', querier: 'lb-c', publishAfterMs: null, replicas: 3, settleView: true },
      found: false,
      expect: (r) => {
        expect(r.querier).toMatchObject({ hits: 0, misses: 1, settledMisses: 1, queriesSent: 0 });
      },
    },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      const r = await race(c.run);
      expect(r.got !== null).toBe(c.found);
      c.expect(r);
    });
  }

  it('with the wait off the raced join is lost, with it on it is found (both counts)', async () => {
    const on = await race({ publisher: 'lb-a', querier: 'lb-c', publishAfterMs: 30 });
    const off = await race({ awaitPublishMs: OFF, publisher: 'lb-a', querier: 'lb-c', publishAfterMs: 30 });
    console.log(`token published 30 ms after the join's QUERY: found with the wait ${on.querier.hits}/1, without ${off.querier.hits}/1`);
    expect([on.querier.hits, off.querier.hits]).toEqual([1, 0]);
  });

  it('a resent QUERY is held once; flows are never held', async () => {
    const net = new FakeNet(IDS);
    const t = entryOwnedBy(['lb-a', 'lb-b'], 'token');
    const f = entryOwnedBy(['lb-a', 'lb-b'], 'flow');
    const q = net.node('lb-c').sync;
    const pt = q.query(t.kind, t.key, 144, { resendMs: 20 });
    const pf = q.query(f.kind, f.key, 144, { resendMs: 20 });
    net.settle();
    expect(await pf).toBeNull(); // both owners said NOT FOUND at once
    net.timers.advance(20);
    net.settle(); // the token's QUERY goes again to both silent owners
    expect(q.counters.queryResends).toBe(2);
    expect(['lb-a', 'lb-b'].map((id) => net.node(id).sync.counters.awaited)).toEqual([1, 1]);
    net.timers.advance(100);
    net.settle();
    expect(await pt).toBeNull();
    expect(['lb-a', 'lb-b'].map((id) => net.node(id).sync.counters.answersServed)).toEqual([2, 2]);
    expect(net.timers.pending).toBe(0);
  });

  it(`holds at most MAX_AWAITING (${MAX_AWAITING}) QUERYs; beyond them NOT FOUND at once, counted`, async () => {
    const n = 2 * MAX_AWAITING; // each of lb-a and lb-b owns about 2/3 of the tokens
    const net = new FakeNet(IDS, { maxOutstandingQueries: n });
    const q = net.node('lb-c').sync;
    const asks: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++) asks.push(q.query('token', tokenKey(0x5000_0000 + i), 144));
    net.settle();
    const held = ['lb-a', 'lb-b'].map((id) => net.node(id).sync.counters);
    console.log(`${n} token QUERYs from lb-c: held ${held.map((c) => c.awaited).join('/')}, answered at once ${held.map((c) => c.awaitOverflow).join('/')} (lb-a/lb-b)`);
    for (const c of held) expect([c.awaited, c.awaitOverflow > 0]).toEqual([MAX_AWAITING, true]);
    expect(held.reduce((k, c) => k + c.awaited + c.awaitOverflow, 0)).toBe(q.counters.queriesSent);
    net.timers.advance(100);
    net.settle();
    expect((await Promise.all(asks)).every((x) => x === null)).toBe(true);
    expect(net.timers.pending).toBe(0);
    net.node('lb-a').sync.stop();
  });

  it('stop() releases every held QUERY timer', () => {
    const net = new FakeNet(IDS);
    const t = entryOwnedBy(['lb-a', 'lb-b'], 'token');
    void net.node('lb-c').sync.query(t.kind, t.key, 144);
    net.settle();
    net.node('lb-a').sync.stop();
    net.node('lb-b').sync.stop();
    net.node('lb-c').sync.stop();
    expect(net.timers.pending).toBe(0);
  });
});
