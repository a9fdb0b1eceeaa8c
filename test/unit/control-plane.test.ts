/**
 * ControlPlane over real UDP sockets on 127.0.0.1 (ports picked free at run time):
 *   - three instances: live sets converge, generation mismatch shows, publish reaches owner and
 *     replica only, a third instance's query finds the entry, a stopped instance is marked down
 *     and queries still succeed through the replica;
 *   - two instances: a bounded store evicts and counts;
 *   - one instance fed forged and malformed datagrams from a test socket: each is rejected with
 *     its reason and leaves the store and the membership exactly as they were.
 * Waits are bounded polls; nothing asserts how long anything took.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { validateClusterConfig, type ClusterConfig } from '../../src/control/cluster-config.js';
import {
  HEADER_BYTES,
  MAC_BYTES,
  MAX_DATAGRAM_BYTES,
  encodeMessage,
  senderHash,
  tokenKey,
  type MessageBody,
  type MessageTypeName,
  type RejectReason,
  type SyncEntry,
} from '../../src/control/codec.js';
import { MessageAuthenticator } from '../../src/control/auth.js';
import { ControlPlane, type ControlPlaneOptions } from '../../src/control/index.js';

const KEY = randomBytes(32);
const running: ControlPlane[] = [];
const sockets: dgram.Socket[] = [];

afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
  await Promise.all(sockets.splice(0).map((s) => new Promise<void>((r) => s.close(() => r()))));
});

async function bindUdp(): Promise<dgram.Socket> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve());
  });
  return s;
}

/** n distinct free UDP ports on 127.0.0.1 (bound together, then released). */
async function freePorts(n: number): Promise<number[]> {
  const socks = await Promise.all(Array.from({ length: n }, bindUdp));
  const ports = socks.map((s) => s.address().port);
  await Promise.all(socks.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ports;
}

/** Poll cond every 10 ms, at most `limit` times. */
async function waitFor(cond: () => boolean, what: string, limit = 1000): Promise<void> {
  for (let i = 0; i < limit; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

function cluster(id: string, peers: { id: string; address: string }[], extra: Record<string, unknown> = {}): ClusterConfig {
  const self = peers.find((p) => p.id === id);
  const r = validateClusterConfig({ instanceId: id, listen: self?.address, peers, keyEnv: 'UNUSED', heartbeatMs: 50, failureMs: 400, queryTimeoutMs: 50, ...extra });
  if (!r.ok) throw new Error(JSON.stringify(r.issues));
  return r.config;
}

async function startCluster(ids: string[], opts: (id: string) => Partial<ControlPlaneOptions> = () => ({})): Promise<ControlPlane[]> {
  const ports = await freePorts(ids.length);
  const peers = ids.map((id, i) => ({ id, address: `127.0.0.1:${ports[i]}` }));
  const cps = ids.map((id) => new ControlPlane({ cluster: cluster(id, peers), key: KEY, ...opts(id) }));
  running.push(...cps);
  await Promise.all(cps.map((c) => c.start()));
  return cps;
}

const backends = [
  { service: 'web', address: '10.3.0.1' },
  { service: 'web', address: '10.3.0.2' },
  { service: 'mptcp', address: '2001:db8::7' },
];
function entries(n: number, seed = 0): SyncEntry[] {
  return Array.from({ length: n }, (_, i) =>
    i % 4 === 0
      ? { kind: 'token', key: tokenKey(((seed << 16) | i) >>> 0), backend: backends[2], ttlMs: 60_000 }
      : { kind: 'flow', key: Uint8Array.from([203, 0, 113, i & 0xff, 198, 51, 100, 9, seed & 0xff, (i >> 8) & 0xff, 0, 80, 6]), backend: backends[i % 2], ttlMs: 60_000 },
  );
}

/** query(), tried again only if the previous try timed out (a loaded machine), at most 3 times. */
async function queryPatiently(cp: ControlPlane, e: SyncEntry): Promise<unknown> {
  for (let i = 0; i < 3; i++) {
    const before = cp.counters.timeouts;
    const got = await cp.query(e.kind, e.key);
    if (got !== null || cp.counters.timeouts === before) return got;
  }
  return null;
}

describe('three instances on 127.0.0.1', () => {
  it('converge, publish to owner + replica, answer queries, survive a stopped instance', async () => {
    const ids = ['lb-a', 'lb-b', 'lb-c'];
    const cps = await startCluster(ids);
    const [a, b, c] = cps;
    await waitFor(() => cps.every((cp) => cp.liveInstances().join() === ids.join()), 'live sets to converge');
    await waitFor(() => cps.every((cp) => cp.status().peers.every((p) => p.up && p.sameView)), 'every peer to report the same view');

    // Generation mismatch: lb-c runs another backend set.
    a.setGeneration(3, 0xabcn);
    b.setGeneration(3, 0xabcn);
    c.setGeneration(4, 0xdefn);
    await waitFor(() => a.status().generationMismatch.join() === 'lb-c' && c.status().generationMismatch.join() === 'lb-a,lb-b', 'generation mismatch to show');
    expect(a.status().peers.find((p) => p.id === 'lb-c')).toMatchObject({ generation: 4, backendSetHash: '0000000000000def', generationMismatch: true });

    // Publish from lb-a: every entry lands at exactly its two owners.
    const es = entries(300);
    const res = a.publish(es);
    expect(res).toMatchObject({ accepted: 300, invalid: 0, dropped: 0 });
    const byId = new Map(ids.map((id, i) => [id, cps[i]]));
    const holds = (id: string, e: SyncEntry): boolean => byId.get(id)?.lookupLocal(e.kind, e.key)?.backend.address === e.backend.address;
    await waitFor(() => es.every((e) => a.owners(e.key).every((o) => holds(o, e))), 'entries at their owners');
    for (const e of es) {
      const owners = a.owners(e.key);
      expect(owners).toHaveLength(2);
      for (const id of ids) if (!owners.includes(id)) expect(holds(id, e), `${id} is not an owner`).toBe(false);
    }

    // Query from the instance that is not an owner: the answer comes over the wire.
    for (const e of es.slice(0, 60)) {
      const outsider = ids.find((id) => !a.owners(e.key).includes(id)) as string;
      expect(await queryPatiently(byId.get(outsider) as ControlPlane, e)).toEqual(e.backend);
    }
    const sent = a.counters.queriesSent + b.counters.queriesSent + c.counters.queriesSent;
    expect(sent).toBeGreaterThanOrEqual(60);
    expect(await a.query('flow', new Uint8Array(13))).toBeNull(); // nobody has it

    // Stop lb-b: the others mark it down, and every entry is still found through its replica.
    await b.stop();
    running.splice(running.indexOf(b), 1);
    await waitFor(() => [a, c].every((cp) => cp.liveInstances().join() === 'lb-a,lb-c'), 'lb-b to be marked down');
    expect(a.status().peers.find((p) => p.id === 'lb-b')).toMatchObject({ up: false, downs: 1 });
    for (const e of es) {
      expect(await queryPatiently(a, e), 'from lb-a').toEqual(e.backend);
      expect(await queryPatiently(c, e), 'from lb-c').toEqual(e.backend);
    }
    expect(a.counters.rejected).toEqual(Object.fromEntries(Object.keys(a.counters.rejected).map((k) => [k, 0])));
  });
});

describe('two instances, small store', () => {
  it('a bounded store evicts the oldest entries and counts them', async () => {
    const [a, b] = await startCluster(['lb-a', 'lb-b'], (id) => (id === 'lb-b' ? { limits: { storeCapacity: 64 } } : {}));
    await waitFor(() => a.liveInstances().length === 2 && b.liveInstances().length === 2, 'two live instances');
    const es = entries(300, 1);
    a.publish(es);
    await waitFor(() => b.counters.entriesReceived === 300, 'lb-b to receive 300 entries');
    expect(b.counters).toMatchObject({ entriesOwned: 64, storeEvictions: 236 });
    expect(b.status().store).toEqual({ entries: 64, capacity: 64 });
    // The 64 most recent survive.
    expect(es.slice(-64).every((e) => b.lookupLocal(e.kind, e.key) !== undefined)).toBe(true);
    expect(b.lookupLocal(es[0].kind, es[0].key)).toBeUndefined();
    expect(a.counters.entriesOwned).toBe(300);
  });
});

describe('one instance fed forged and malformed datagrams', () => {
  it('rejects each with its reason; store and membership stay exactly as they were', async () => {
    const forger = await bindUdp();
    sockets.push(forger);
    const [port] = await freePorts(1);
    let mono = 1_000_000;
    const cfg = cluster('lb-a', [
      { id: 'lb-a', address: `127.0.0.1:${port}` },
      { id: 'forger', address: `127.0.0.1:${forger.address().port}` },
    ], { heartbeatMs: 1000, failureMs: 600_000 }); // the manual clock below moves 1 s per case
    const cp = new ControlPlane({ cluster: cfg, key: KEY, clock: { monoMs: () => mono } });
    running.push(cp);
    await cp.start();

    let seq = 5000;
    const make = (type: MessageTypeName, body: MessageBody, o: { seq?: number; ts?: number; key?: Buffer; sender?: string } = {}): Buffer => {
      const buf = Buffer.alloc(MAX_DATAGRAM_BYTES);
      const len = encodeMessage(
        buf,
        { type, sender: senderHash(o.sender ?? 'forger'), incarnation: 77n, sequence: o.seq ?? seq++, timestampMs: o.ts ?? Date.now() },
        body,
        new MessageAuthenticator(o.key ?? KEY),
      );
      return Buffer.from(buf.subarray(0, len));
    };
    const reseal = (d: Buffer): Buffer => {
      new MessageAuthenticator(KEY).sign(d, 0, d.length - MAC_BYTES, d, d.length - MAC_BYTES);
      return d;
    };
    const send = (d: Buffer): Promise<void> => new Promise((r) => forger.send(d, port, '127.0.0.1', () => r()));

    // Accepted first: one entry and a heartbeat, so there is state that a forgery could change.
    const x: SyncEntry = { kind: 'flow', key: Uint8Array.from([192, 0, 2, 1, 192, 0, 2, 2, 1, 1, 0, 80, 6]), backend: backends[0], ttlMs: 60_000 };
    const y: SyncEntry = { kind: 'token', key: tokenKey(0xbad), backend: backends[1], ttlMs: 60_000 };
    const validPublishX = make('PUBLISH', { entries: [x] });
    await send(validPublishX);
    await send(make('HEARTBEAT', { generation: 5, backendSetHash: 5n, live: [] }));
    await waitFor(() => cp.counters.entriesReceived === 1 && cp.liveInstances().length === 2, 'the valid publish and heartbeat');

    const snapshot = (): unknown => ({
      store: [...cp.storedEntries()].map((e) => ({ kind: e.kind, key: Buffer.from(e.key).toString('hex'), backend: e.backend, expiresAt: e.expiresAt, updatedAt: e.updatedAt })),
      live: cp.liveInstances(),
      peers: cp.status().peers.map((p) => ({ id: p.id, up: p.up, generation: p.generation, hash: p.backendSetHash, lastAt: p.lastHeartbeatAgeMs === null ? null : mono - p.lastHeartbeatAgeMs, restarts: p.restarts })),
      accepted: Object.values(cp.counters.messagesIn).reduce((s, n) => s + n, 0),
    });
    const forgedHeartbeat = (o: { seq?: number; ts?: number; key?: Buffer; sender?: string } = {}): Buffer => make('HEARTBEAT', { generation: 9, backendSetHash: 9n, live: [] }, o);
    const forgedPublish = (o: { seq?: number; ts?: number; key?: Buffer; sender?: string } = {}): Buffer => make('PUBLISH', { entries: [y] }, o);

    const cases: { name: string; make: () => Buffer; want: RejectReason }[] = [
      { name: 'truncated header', make: () => forgedPublish().subarray(0, 20), want: 'TRUNCATED' },
      {
        name: 'wrong magic',
        make: () => {
          const d = forgedHeartbeat();
          d[1] ^= 0xff;
          return d;
        },
        want: 'BAD_MAGIC',
      },
      {
        name: 'wrong version',
        make: () => {
          const d = forgedHeartbeat();
          d[4] = 7;
          return reseal(d);
        },
        want: 'BAD_VERSION',
      },
      {
        name: 'length mismatch',
        make: () => {
          const d = forgedPublish();
          d.writeUInt16BE(d.readUInt16BE(6) - 1, 6);
          return reseal(d);
        },
        want: 'BAD_LENGTH',
      },
      { name: 'oversized datagram', make: () => Buffer.concat([forgedPublish(), Buffer.alloc(MAX_DATAGRAM_BYTES)]), want: 'OVERSIZED' },
      {
        name: 'flipped MAC byte',
        make: () => {
          const d = forgedPublish();
          d[d.length - 5] ^= 4;
          return d;
        },
        want: 'BAD_MAC',
      },
      { name: 'wrong key', make: () => forgedPublish({ key: randomBytes(32) }), want: 'BAD_MAC' },
      { name: 'replayed exact datagram', make: () => validPublishX, want: 'REPLAYED' },
      { name: 'old sequence outside the window', make: () => forgedPublish({ seq: 5000 - 1500 }), want: 'REPLAYED' },
      { name: 'stale timestamp', make: () => forgedHeartbeat({ ts: Date.now() - 60_000 }), want: 'STALE' },
      { name: 'unknown peer id', make: () => forgedHeartbeat({ sender: 'intruder' }), want: 'UNKNOWN_PEER' },
      {
        name: 'unknown type',
        make: () => {
          const d = forgedPublish();
          d[5] = 0x42;
          return reseal(d);
        },
        want: 'UNKNOWN_TYPE',
      },
      {
        name: 'body lies about entry count',
        make: () => {
          const d = forgedPublish();
          d.writeUInt16BE(2, HEADER_BYTES);
          return reseal(d);
        },
        want: 'MALFORMED_BODY',
      },
    ];
    expect(cases.length).toBeGreaterThanOrEqual(12);
    for (const c of cases) {
      mono += 1000; // an accepted message would now write a different time into the state
      const before = snapshot();
      const rejected = cp.counters.rejected[c.want];
      await send(c.make());
      await waitFor(() => cp.counters.rejected[c.want] === rejected + 1, `${c.name} -> ${c.want}`);
      expect(snapshot(), c.name).toEqual(before);
    }
    expect(cp.lookupLocal(y.kind, y.key)).toBeUndefined();
    expect(cp.status().peers[0]).toMatchObject({ id: 'forger', up: true, generation: 5 });
    expect(Object.values(cp.counters.rejected).reduce((s, n) => s + n, 0)).toBe(cases.length);
  });
});

describe('one instance, no peers', () => {
  it('owns every key, answers locally, and reports a miss without the network', async () => {
    const [port] = await freePorts(1);
    const cp = new ControlPlane({ cluster: cluster('solo', [{ id: 'solo', address: `127.0.0.1:${port}` }]), key: KEY });
    running.push(cp);
    await cp.start();
    const es = entries(10, 2);
    expect(cp.publish(es)).toMatchObject({ accepted: 10, local: 10, queued: 0 });
    expect(cp.owners(es[0].key)).toEqual(['solo']);
    expect(await cp.query(es[1].kind, es[1].key)).toEqual(es[1].backend);
    expect(await cp.query('token', tokenKey(123456))).toBeNull();
    expect(cp.counters).toMatchObject({ hits: 1, localHits: 1, misses: 1, queriesSent: 0 });
    expect(() => cp.owners(new Uint8Array(5))).toThrow(/expected 4/);
  });
});

describe('ControlPlane.changeRecentMs (how long UDP keeps asking owners)', () => {
  it('is 0 before any change, the entry lifetime after one, counts down, and is extended by a flow entry stored here', () => {
    let mono = 1000;
    const peers = [
      { id: 'lb-a', address: '127.0.0.1:1' },
      { id: 'lb-b', address: '127.0.0.1:2' },
    ];
    const cp = new ControlPlane({ cluster: cluster('lb-a', peers), key: KEY, clock: { monoMs: () => mono } });
    const LIFE = 30_000;
    const steps: { name: string; act: () => void; want: number }[] = [
      { name: 'no change yet', act: () => undefined, want: 0 },
      { name: 'first generation applied at start: no change (a starting cluster pins no flow)', act: () => cp.setGeneration(1, 11n), want: 0 },
      { name: 'a new generation', act: () => cp.setGeneration(2, 12n), want: LIFE },
      { name: '10 s later', act: () => (mono += 10_000), want: LIFE - 10_000 },
      { name: 'the same generation again is no change', act: () => cp.setGeneration(2, 12n), want: LIFE - 10_000 },
      { name: 'a new generation on the same backend set is no change', act: () => cp.setGeneration(3, 12n), want: LIFE - 10_000 },
      { name: 'the window ends', act: () => (mono += 20_000), want: 0 },
      { name: 'a TCP flow entry published here (an MPTCP join, a pinned connection) opens no window: TCP asks anyway', act: () => void cp.publish([{ kind: 'flow', key: Uint8Array.from([192, 0, 2, 1, 198, 51, 100, 1, 0x10, 0x10, 0, 80, 6]), backend: { service: 'web', address: '10.0.0.1' }, ttlMs: LIFE }]), want: 0 },
      { name: 'a UDP flow entry published here (its flow is pinned off the table pick)', act: () => void cp.publish([{ kind: 'flow', key: Uint8Array.from([192, 0, 2, 1, 198, 51, 100, 1, 0x10, 0x10, 0, 53, 17]), backend: { service: 'dns', address: '10.0.0.1' }, ttlMs: LIFE }]), want: LIFE },
    ];
    const got = steps.map((s) => {
      s.act();
      return { name: s.name, ms: cp.changeRecentMs(LIFE) };
    });
    expect(got).toEqual(steps.map((s) => ({ name: s.name, ms: s.want })));
  });
});
