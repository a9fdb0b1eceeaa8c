/**
 * Transport over real UDP sockets on 127.0.0.1 and ::1 (ports picked free at run time): the
 * per-peer buffer bound (drops counted), bulk PUBLISH pulled from the source until it is empty,
 * counters per message type and reject reason, and replies addressed to the configured peer.
 */
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { HEADER_BYTES, PublishBodyWriter, tokenKey, writeHeartbeatBody, writeQueryBody, type ControlMessage } from '../../src/control/codec.js';
import { Transport, type TransportOptions } from '../../src/control/transport.js';

const KEY = randomBytes(32);
const open: Transport[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((t) => t.stop()));
});

async function freePort(host: string): Promise<number> {
  const s = dgram.createSocket(host.includes(':') ? 'udp6' : 'udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, host, () => resolve());
  });
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function waitFor(cond: () => boolean, what: string, limit = 1000): Promise<void> {
  for (let i = 0; i < limit; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error(`gave up waiting for ${what}`);
}

/** Two transports that know each other; `received` collects what each accepted. */
async function pair(host: string, extra: Partial<TransportOptions> = {}): Promise<{ a: Transport; b: Transport; got: Record<string, { from: string; m: ControlMessage }[]> }> {
  const [pa, pb] = [await freePort(host), await freePort(host)];
  const got: Record<string, { from: string; m: ControlMessage }[]> = { a: [], b: [] };
  const mk = (id: string, port: number, peer: string, peerPort: number, sink: { from: string; m: ControlMessage }[]): Transport =>
    new Transport({ instanceId: id, listenHost: host, listenPort: port, peers: [{ id: peer, host, port: peerPort }], key: KEY, onMessage: (from, m) => sink.push({ from, m }), ...extra });
  const a = mk('lb-a', pa, 'lb-b', pb, got.a);
  const b = mk('lb-b', pb, 'lb-a', pa, got.b);
  open.push(a, b);
  await a.start();
  await b.start();
  return { a, b, got };
}

const hb = (out: Buffer, off: number): number => writeHeartbeatBody(out, off, { generation: 1, backendSetHash: 2n, live: [] });

describe('Transport', () => {
  for (const host of ['127.0.0.1', '::1']) {
    it(`delivers authenticated messages over ${host} and counts them by type`, async () => {
      const { a, b, got } = await pair(host);
      expect(a.send('lb-b', 'HEARTBEAT', hb)).toBe(true);
      expect(a.send('lb-b', 'QUERY', (out, off) => writeQueryBody(out, off, { queryId: 9, kind: 'token', key: tokenKey(5) }))).toBe(true);
      await waitFor(() => got.b.length === 2, 'two messages at lb-b');
      expect(got.b.map((x) => [x.from, x.m.type])).toEqual([
        ['lb-a', 'HEARTBEAT'],
        ['lb-a', 'QUERY'],
      ]);
      expect(a.counters.messagesOut).toMatchObject({ HEARTBEAT: 1, QUERY: 1 });
      expect(b.counters.messagesIn).toMatchObject({ HEARTBEAT: 1, QUERY: 1 });
      expect(got.b[1].m.header.sequence).toBe(got.b[0].m.header.sequence + 1n);
      expect(b.peerIncarnation('lb-a')).toBe(a.incarnation);
    });
  }

  it('drops and counts priority messages when a peer has no free buffer, and recovers', async () => {
    const { a, got } = await pair('127.0.0.1', { queueCapacity: 4 });
    const results = Array.from({ length: 10 }, () => a.send('lb-b', 'HEARTBEAT', hb));
    expect(results.filter(Boolean).length).toBe(4);
    expect(a.counters.queueDrops).toBe(6);
    expect(a.peerQueues()).toEqual([{ id: 'lb-b', inFlight: 4, queueDrops: 6, bulkPending: false }]);
    await waitFor(() => got.b.length === 4 && a.peerQueues()[0].inFlight === 0, 'the four sends to complete');
    expect(a.send('lb-b', 'HEARTBEAT', hb)).toBe(true);
  });

  it('pulls PUBLISH datagrams from the bulk source until it has none, beyond the buffer count', async () => {
    const { a, b, got } = await pair('127.0.0.1', { queueCapacity: 8, burstPerTurn: 4 });
    let left = 50;
    const asked = new Set<string>();
    const w = new PublishBodyWriter();
    a.setBulkSource((peer, out, off, max) => {
      asked.add(peer);
      if (left === 0) return 0;
      left--;
      w.begin(out, off, max);
      w.add({ kind: 'token', key: tokenKey(left), backend: { service: 'web', address: '10.0.0.1' }, ttlMs: 1000 });
      return w.finish();
    });
    a.kick('lb-b');
    await waitFor(() => got.b.length === 50, '50 PUBLISH datagrams at lb-b');
    expect([...asked]).toEqual(['lb-b']);
    expect(b.counters.messagesIn.PUBLISH).toBe(50);
    expect(a.counters.queueDrops).toBe(0);
    expect(a.peerQueues()[0].bulkPending).toBe(false);
  });

  it('bulk asked for before start flows once the socket is bound', async () => {
    const [pa, pb] = [await freePort('127.0.0.1'), await freePort('127.0.0.1')];
    const got: ControlMessage[] = [];
    const b = new Transport({ instanceId: 'lb-b', listenHost: '127.0.0.1', listenPort: pb, peers: [{ id: 'lb-a', host: '127.0.0.1', port: pa }], key: KEY, onMessage: (_f, m) => got.push(m) });
    const a = new Transport({ instanceId: 'lb-a', listenHost: '127.0.0.1', listenPort: pa, peers: [{ id: 'lb-b', host: '127.0.0.1', port: pb }], key: KEY, onMessage: () => {} });
    open.push(a, b);
    await b.start();
    let left = 3;
    const w = new PublishBodyWriter();
    a.setBulkSource((_peer, out, off, max) => {
      if (left === 0) return 0;
      left--;
      w.begin(out, off, max);
      w.add({ kind: 'token', key: tokenKey(left), backend: { service: 'web', address: '10.0.0.1' }, ttlMs: 1000 });
      return w.finish();
    });
    a.kick('lb-b');
    await new Promise((r) => setTimeout(r, 5)); // the pump has run and found no socket
    await a.start();
    await waitFor(() => got.length === 3, 'three PUBLISH datagrams at lb-b');
  });

  it('counts rejected datagrams by reason and does not hand them on', async () => {
    const { b, got } = await pair('127.0.0.1');
    const cases: { data: Uint8Array; reason: string }[] = [
      { data: new Uint8Array(3), reason: 'TRUNCATED' },
      { data: new Uint8Array(HEADER_BYTES + 16), reason: 'BAD_MAGIC' },
      { data: new Uint8Array(2000), reason: 'OVERSIZED' },
    ];
    for (const c of cases) expect(b.receive(c.data)).toBe(c.reason);
    expect(b.counters.rejected).toMatchObject({ TRUNCATED: 1, BAD_MAGIC: 1, OVERSIZED: 1 });
    expect(got.b).toEqual([]);
  });

  it('replies go to the configured peer address, not to where a datagram came from', async () => {
    const { a, b, got } = await pair('127.0.0.1');
    // Capture a valid datagram from lb-a by sending it to a socket we own instead of lb-b.
    const spy = dgram.createSocket('udp4');
    await new Promise<void>((r) => spy.bind(0, '127.0.0.1', () => r()));
    const captured: Buffer[] = [];
    spy.on('message', (m) => captured.push(m));
    const fake = new Transport({ instanceId: 'lb-a', listenHost: '127.0.0.1', listenPort: await freePort('127.0.0.1'), peers: [{ id: 'lb-b', host: '127.0.0.1', port: spy.address().port }], key: KEY, onMessage: () => {} });
    open.push(fake);
    await fake.start();
    fake.send('lb-b', 'HEARTBEAT', hb);
    await waitFor(() => captured.length === 1, 'the captured datagram');
    // Relay it to lb-b from the spy socket: lb-b accepts it as lb-a's, but answers lb-a's address.
    spy.send(captured[0], b.address().port, '127.0.0.1');
    await waitFor(() => got.b.length === 1, 'lb-b to accept the relayed datagram');
    expect(got.b[0].from).toBe('lb-a');
    b.send('lb-a', 'HEARTBEAT', hb);
    await waitFor(() => got.a.length === 1, 'the reply at lb-a');
    expect(captured.length).toBe(1);
    expect(a.counters.messagesIn.HEARTBEAT).toBe(1);
    await new Promise<void>((r) => spy.close(() => r()));
  });
});
