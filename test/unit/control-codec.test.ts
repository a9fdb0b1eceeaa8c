/**
 * Control-plane wire format: round trips of every message type, named malformed and forged
 * datagrams (each rejected with its reason and without touching replay state), publish
 * splitting, and a seeded fuzz of 20000 datagrams that must never throw.
 */
import { describe, expect, it } from 'vitest';
import { MAC_BYTES, MessageAuthenticator, ReplayGuard } from '../../src/control/auth.js';
import {
  HEADER_BYTES,
  MAX_BODY_BYTES,
  MAX_DATAGRAM_BYTES,
  PublishBodyWriter,
  REJECT_REASONS,
  backendSetHash,
  checkEntry,
  decodeDatagram,
  encodeMessage,
  kindOfKey,
  sealDatagram,
  senderHash,
  tokenKey,
  type DecodeContext,
  type MessageBody,
  type MessageTypeName,
  type RejectReason,
  type SyncEntry,
} from '../../src/control/codec.js';

const KEY = Buffer.alloc(32, 0x5a);
const OTHER_KEY = Buffer.alloc(32, 0xa5);
const NOW = 1_700_000_000_000;
const PEER = 'lb-b';
const SELF = 'lb-a';
const auth = new MessageAuthenticator(KEY);

function context(replay = new ReplayGuard()): DecodeContext {
  const known = senderHash(PEER);
  return { auth, replay, isKnownSender: (s) => s === known, nowMs: NOW };
}

interface SealOpts {
  sender?: string;
  incarnation?: bigint;
  seq?: bigint | number;
  ts?: number;
  key?: Buffer;
}

function datagram(type: MessageTypeName, body: MessageBody, o: SealOpts = {}): Buffer {
  const buf = Buffer.alloc(MAX_DATAGRAM_BYTES);
  const len = encodeMessage(
    buf,
    { type, sender: senderHash(o.sender ?? PEER), incarnation: o.incarnation ?? 0x1122334455667788n, sequence: o.seq ?? 1, timestampMs: o.ts ?? NOW },
    body,
    new MessageAuthenticator(o.key ?? KEY),
  );
  return Buffer.from(buf.subarray(0, len));
}

/** Recompute the MAC after editing header or body bytes. */
function reseal(d: Buffer, key = KEY): Buffer {
  new MessageAuthenticator(key).sign(d, 0, d.length - MAC_BYTES, d, d.length - MAC_BYTES);
  return d;
}

const flow4 = Uint8Array.from([10, 0, 0, 1, 192, 0, 2, 10, 0x9c, 0x40, 0, 80, 6]);
const flow6 = Uint8Array.from({ length: 37 }, (_, i) => (i * 7 + 3) & 0xff);
flow6[36] = 17;
/** Fragmented datagram keys: 4 | 17 | id | src | dst (14 bytes), 6 | 17 | id | src | dst (38 bytes). */
const frag4 = Uint8Array.from([4, 17, 0, 0, 0x23, 0x45, 10, 0, 0, 1, 192, 0, 2, 10]);
const frag6 = Uint8Array.from({ length: 38 }, (_, i) => (i === 0 ? 6 : i === 1 ? 17 : (i * 5 + 1) & 0xff));
const web1 = { service: 'web', address: '10.1.0.1' };
const web2 = { service: 'web', address: '10.1.0.2' };
const dns6 = { service: 'dns-v6', address: '2001:db8::53' };
const validPublish = { entries: [{ kind: 'flow' as const, key: flow4, backend: web1, ttlMs: 30_000 }] };

describe('round trips', () => {
  const cases: { name: string; type: MessageTypeName; body: MessageBody }[] = [
    { name: 'HEARTBEAT with a live view', type: 'HEARTBEAT', body: { generation: 7, backendSetHash: 0xdeadbeefcafebaben, live: [1, 0x7fffffff, 0xffffffff] } },
    { name: 'HEARTBEAT, large generation, empty view', type: 'HEARTBEAT', body: { generation: 2 ** 40 + 3, backendSetHash: 0xffffffffffffffffn, live: [] } },
    {
      name: 'PUBLISH of IPv4 and IPv6 flows and a token over three backends',
      type: 'PUBLISH',
      body: {
        entries: [
          { kind: 'flow', key: flow4, backend: web1, ttlMs: 300_000 },
          { kind: 'flow', key: flow6, backend: dns6, ttlMs: 1 },
          { kind: 'token', key: tokenKey(0xfeedf00d), backend: web2, ttlMs: 0xffffffff },
          { kind: 'flow', key: flow4.map((b) => b ^ 1), backend: web1, ttlMs: 0 },
        ],
      },
    },
    { name: 'QUERY for a flow', type: 'QUERY', body: { queryId: 0xffffffff, kind: 'flow', key: flow6 } },
    {
      name: 'PUBLISH of IPv4 and IPv6 fragmented datagrams (kind 3: version, protocol, identification, addresses)',
      type: 'PUBLISH',
      body: {
        entries: [
          { kind: 'fragment', key: frag4, backend: web1, ttlMs: 2000 },
          { kind: 'fragment', key: frag6, backend: dns6, ttlMs: 2000 },
        ],
      },
    },
    { name: 'QUERY for a fragmented datagram', type: 'QUERY', body: { queryId: 7, kind: 'fragment', key: frag6 } },
    { name: 'ANSWER for a fragmented datagram, found', type: 'ANSWER', body: { queryId: 7, kind: 'fragment', key: frag4, found: true, backend: web2, ttlMs: 1500 } },
    { name: 'QUERY for a token', type: 'QUERY', body: { queryId: 1, kind: 'token', key: tokenKey(42) } },
    { name: 'ANSWER found', type: 'ANSWER', body: { queryId: 77, kind: 'flow', key: flow4, found: true, backend: dns6, ttlMs: 12_345 } },
    { name: 'ANSWER not found', type: 'ANSWER', body: { queryId: 78, kind: 'token', key: tokenKey(7), found: false, ttlMs: 0 } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const d = datagram(c.type, c.body, { seq: 0x1_0000_0001n });
      const r = decodeDatagram(d, context());
      expect(r.ok).toBe(true);
      if (!r.ok) return;
      expect(r.message.type).toBe(c.type);
      expect(r.message.header).toEqual({ type: c.type, sender: senderHash(PEER), incarnation: 0x1122334455667788n, sequence: 0x1_0000_0001n, timestampMs: NOW });
      expect(r.message.body).toEqual(c.body);
    });
  }

  it('IPv6 backend addresses come back in canonical form', () => {
    const d = datagram('PUBLISH', { entries: [{ kind: 'token', key: tokenKey(1), backend: { service: 's', address: '2001:DB8:0:0::1' }, ttlMs: 5 }] });
    const r = decodeDatagram(d, context());
    expect(r.ok && r.message.type === 'PUBLISH' && r.message.body.entries[0].backend.address).toBe('2001:db8::1');
  });
});

describe('malformed and forged datagrams', () => {
  const valid = (seq = 1, o: SealOpts = {}): Buffer => datagram('PUBLISH', validPublish, { seq, ...o });
  interface Case {
    name: string;
    /** Datagrams accepted first (they set up replay state). */
    before?: () => Buffer[];
    make: () => Buffer;
    want: RejectReason;
  }
  const cases: Case[] = [
    { name: 'empty datagram', make: () => Buffer.alloc(0), want: 'TRUNCATED' },
    { name: 'truncated header', make: () => valid().subarray(0, 20), want: 'TRUNCATED' },
    { name: 'header without MAC', make: () => valid().subarray(0, HEADER_BYTES + 10), want: 'TRUNCATED' },
    { name: 'oversized datagram', make: () => Buffer.concat([valid(), Buffer.alloc(MAX_DATAGRAM_BYTES)]).subarray(0, MAX_DATAGRAM_BYTES + 1), want: 'OVERSIZED' },
    {
      name: 'wrong magic',
      make: () => {
        const d = valid();
        d[0] = 0x47;
        return d;
      },
      want: 'BAD_MAGIC',
    },
    {
      name: 'wrong version',
      make: () => {
        const d = valid();
        d[4] = 2;
        return reseal(d);
      },
      want: 'BAD_VERSION',
    },
    {
      name: 'body length field larger than the body',
      make: () => {
        const d = valid();
        d.writeUInt16BE(d.readUInt16BE(6) + 1, 6);
        return reseal(d);
      },
      want: 'BAD_LENGTH',
    },
    { name: 'trailing byte after the MAC', make: () => Buffer.concat([valid(), Buffer.of(0)]), want: 'BAD_LENGTH' },
    {
      name: 'flipped MAC byte',
      make: () => {
        const d = valid();
        d[d.length - 1] ^= 1;
        return d;
      },
      want: 'BAD_MAC',
    },
    {
      name: 'flipped body byte under a valid-looking MAC',
      make: () => {
        const d = valid();
        d[HEADER_BYTES + 3] ^= 0x10;
        return d;
      },
      want: 'BAD_MAC',
    },
    { name: 'MAC made with another key', make: () => valid(1, { key: OTHER_KEY }), want: 'BAD_MAC' },
    { name: 'replayed exact datagram', before: () => [valid(7)], make: () => valid(7), want: 'REPLAYED' },
    { name: 'old sequence outside the window', before: () => [valid(5000)], make: () => valid(5000 - 1024), want: 'REPLAYED' },
    {
      name: 'older incarnation after a restart',
      before: () => [valid(1, { incarnation: 1n, ts: NOW - 100 }), valid(1, { incarnation: 2n, ts: NOW - 50 })],
      make: () => valid(2, { incarnation: 1n, ts: NOW - 99 }),
      want: 'REPLAYED',
    },
    { name: 'stale timestamp (10 s old)', make: () => valid(1, { ts: NOW - 10_000 }), want: 'STALE' },
    { name: 'timestamp 10 s in the future', make: () => valid(1, { ts: NOW + 10_000 }), want: 'STALE' },
    { name: 'unknown peer id', make: () => valid(1, { sender: 'lb-z' }), want: 'UNKNOWN_PEER' },
    { name: 'our own id reflected back', make: () => valid(1, { sender: SELF }), want: 'UNKNOWN_PEER' },
    {
      name: 'unknown message type',
      make: () => {
        const d = valid();
        d[5] = 9;
        return reseal(d);
      },
      want: 'UNKNOWN_TYPE',
    },
    {
      name: 'body lies about its entry count',
      make: () => {
        const d = valid();
        d.writeUInt16BE(5, HEADER_BYTES); // one entry present
        return reseal(d);
      },
      want: 'MALFORMED_BODY',
    },
    {
      name: 'publish with zero entries',
      make: () => {
        const d = Buffer.alloc(HEADER_BYTES + 3 + MAC_BYTES);
        return d.subarray(0, sealDatagram(d, 3, { type: 'PUBLISH', sender: senderHash(PEER), incarnation: 1n, sequence: 1, timestampMs: NOW }, auth));
      },
      want: 'MALFORMED_BODY',
    },
    {
      name: 'backend index beyond the dictionary',
      make: () => {
        const d = valid();
        d[HEADER_BYTES + 2 + 2 + 13] = 3; // entry: kind, keyLen, key(13), backendIndex
        return reseal(d);
      },
      want: 'MALFORMED_BODY',
    },
    {
      name: 'flow key length 12',
      make: () => {
        const d = datagram('QUERY', { queryId: 1, kind: 'flow', key: flow4 });
        d[HEADER_BYTES + 5] = 12;
        return reseal(d);
      },
      want: 'MALFORMED_BODY',
    },
    {
      name: 'unknown entry kind',
      make: () => {
        const d = datagram('QUERY', { queryId: 1, kind: 'token', key: tokenKey(1) });
        d[HEADER_BYTES + 4] = 3;
        return reseal(d);
      },
      want: 'MALFORMED_BODY',
    },
    {
      name: 'service name that is not UTF-8',
      make: () => {
        const d = valid();
        const nameAt = d.length - MAC_BYTES - 4 - 1 - 3; // ..., name "web", addrLen, addr(4)
        d[nameAt] = 0xff;
        return reseal(d);
      },
      want: 'MALFORMED_BODY',
    },
    {
      name: 'answer with found = 2',
      make: () => {
        const d = datagram('ANSWER', { queryId: 1, kind: 'token', key: tokenKey(1), found: false, ttlMs: 0 });
        d[d.length - MAC_BYTES - 1] = 2;
        return reseal(d);
      },
      want: 'MALFORMED_BODY',
    },
    {
      name: 'heartbeat live count larger than the body',
      make: () => {
        const d = datagram('HEARTBEAT', { generation: 1, backendSetHash: 1n, live: [1, 2] });
        d.writeUInt16BE(3, HEADER_BYTES + 16);
        return reseal(d);
      },
      want: 'MALFORMED_BODY',
    },
  ];

  it('has at least 12 named cases', () => expect(cases.length).toBeGreaterThanOrEqual(12));

  for (const c of cases) {
    it(`${c.name} -> ${c.want}, replay state unchanged`, () => {
      const replay = new ReplayGuard();
      const ctx = context(replay);
      for (const d of c.before?.() ?? []) expect(decodeDatagram(d, ctx).ok).toBe(true);
      const sender = senderHash(PEER);
      const before = { inc: replay.incarnationOf(sender), top: replay.topOf(sender) };
      const r = decodeDatagram(c.make(), ctx);
      expect(r).toEqual({ ok: false, reason: c.want });
      expect({ inc: replay.incarnationOf(sender), top: replay.topOf(sender) }).toEqual(before);
    });
  }

  it('a rejected body does not consume its sequence number', () => {
    const replay = new ReplayGuard();
    const ctx = context(replay);
    const bad = valid(3);
    bad.writeUInt16BE(5, HEADER_BYTES);
    expect(decodeDatagram(reseal(bad), ctx)).toEqual({ ok: false, reason: 'MALFORMED_BODY' });
    expect(decodeDatagram(valid(3), ctx).ok).toBe(true);
  });
});

describe('PublishBodyWriter', () => {
  it('packs entries until the datagram is full; every datagram decodes to its share', () => {
    const entries: SyncEntry[] = Array.from({ length: 500 }, (_, i) => ({
      kind: i % 3 === 0 ? 'token' : 'flow',
      key: i % 3 === 0 ? tokenKey(i) : i % 3 === 1 ? flow4.map((b, j) => (j === 0 ? i & 0xff : b)) : flow6.map((b, j) => (j === 0 ? i & 0xff : b)),
      backend: [web1, web2, dns6][i % 3],
      ttlMs: 1000 + i,
    }));
    const w = new PublishBodyWriter();
    const buf = Buffer.alloc(MAX_DATAGRAM_BYTES);
    const replay = new ReplayGuard();
    const decoded: SyncEntry[] = [];
    let at = 0;
    let datagrams = 0;
    while (at < entries.length && datagrams < 100) {
      w.begin(buf, HEADER_BYTES, MAX_BODY_BYTES);
      while (at < entries.length && w.add(entries[at])) at++;
      const len = sealDatagram(buf, w.finish(), { type: 'PUBLISH', sender: senderHash(PEER), incarnation: 5n, sequence: ++datagrams, timestampMs: NOW }, auth);
      expect(len).toBeLessThanOrEqual(MAX_DATAGRAM_BYTES);
      const r = decodeDatagram(buf.subarray(0, len), context(replay));
      expect(r.ok).toBe(true);
      if (r.ok && r.message.type === 'PUBLISH') decoded.push(...r.message.body.entries);
    }
    expect(decoded).toEqual(entries);
    expect(datagrams).toBeGreaterThan(5);
    expect(datagrams).toBeLessThan(20);
  });

  it('fits 66 IPv4 flow entries to one backend in one datagram (20 bytes each)', () => {
    const w = new PublishBodyWriter();
    w.begin(Buffer.alloc(MAX_DATAGRAM_BYTES), HEADER_BYTES, MAX_BODY_BYTES);
    let n = 0;
    while (n < 1000 && w.add({ kind: 'flow', key: flow4, backend: web1, ttlMs: 1 })) n++;
    // count (2) + 20 per entry + dictionary count (1) + "web" backend (1 + 3 + 1 + 4) <= 1348
    expect(n).toBe(66);
  });
});

describe('identity helpers', () => {
  it('backendSetHash ignores order and sees weights', () => {
    const a = [
      { service: 'web', address: '10.0.0.1', weight: 1 },
      { service: 'web', address: '10.0.0.2', weight: 2 },
    ];
    expect(backendSetHash(a)).toBe(backendSetHash([...a].reverse()));
    expect(backendSetHash(a)).not.toBe(backendSetHash([a[0], { ...a[1], weight: 3 }]));
  });

  const entryCases: { name: string; e: SyncEntry; ok: boolean }[] = [
    { name: 'IPv4 flow', e: { kind: 'flow', key: flow4, backend: web1, ttlMs: 1 }, ok: true },
    { name: 'token', e: { kind: 'token', key: tokenKey(1), backend: dns6, ttlMs: 0 }, ok: true },
    { name: 'flow key of 4 bytes', e: { kind: 'flow', key: tokenKey(1), backend: web1, ttlMs: 1 }, ok: false },
    { name: 'negative ttl', e: { kind: 'flow', key: flow4, backend: web1, ttlMs: -1 }, ok: false },
    { name: 'host name instead of address', e: { kind: 'flow', key: flow4, backend: { service: 'web', address: 'backend.local' }, ttlMs: 1 }, ok: false },
    { name: 'empty service name', e: { kind: 'flow', key: flow4, backend: { service: '', address: '10.0.0.1' }, ttlMs: 1 }, ok: false },
  ];
  for (const c of entryCases) it(`checkEntry: ${c.name}`, () => expect(checkEntry(c.e) === undefined).toBe(c.ok));

  it('kindOfKey by length', () => {
    expect([4, 13, 37, 14, 38, 12, 0].map((n) => kindOfKey(new Uint8Array(n)))).toEqual(['token', 'flow', 'flow', 'fragment', 'fragment', undefined, undefined]);
  });
});

describe('fuzz', () => {
  it('20000 random and mutated datagrams never throw; each is accepted or has a listed reason', () => {
    let s = 0x1234567;
    const rnd = (): number => {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      return (s >>>= 0);
    };
    const seeds: Buffer[] = [
      datagram('HEARTBEAT', { generation: 3, backendSetHash: 9n, live: [1, 2, 3] }),
      datagram('PUBLISH', { entries: [{ kind: 'flow', key: flow6, backend: dns6, ttlMs: 9 }, { kind: 'token', key: tokenKey(3), backend: web1, ttlMs: 9 }] }),
      datagram('QUERY', { queryId: 5, kind: 'flow', key: flow4 }),
      datagram('ANSWER', { queryId: 5, kind: 'flow', key: flow4, found: true, backend: web2, ttlMs: 9 }),
    ];
    const replay = new ReplayGuard();
    const ctx = context(replay);
    const reasons = new Map<string, number>();
    let seq = 1;
    for (let i = 0; i < 20_000; i++) {
      let d: Buffer;
      const mode = i % 4;
      if (mode === 0) {
        d = Buffer.alloc(rnd() % 1500);
        for (let j = 0; j < d.length; j++) d[j] = rnd() & 0xff;
      } else {
        const seed = seeds[rnd() % seeds.length];
        d = Buffer.from(seed);
        if (mode === 3) {
          // Random body under a valid header and MAC: exercises the body parsers.
          const bodyLen = rnd() % 200;
          d = Buffer.alloc(HEADER_BYTES + bodyLen + MAC_BYTES);
          seed.copy(d, 0, 0, HEADER_BYTES);
          for (let j = HEADER_BYTES; j < HEADER_BYTES + bodyLen; j++) d[j] = rnd() & 0xff;
          d.writeUInt16BE(bodyLen, 6);
        }
        const flips = 1 + (rnd() % 3);
        for (let f = 0; f < flips; f++) {
          const at = HEADER_BYTES + (rnd() % Math.max(1, d.length - HEADER_BYTES - MAC_BYTES));
          if (at < d.length - MAC_BYTES) d[at] ^= 1 << (rnd() % 8);
        }
        if (mode >= 2) {
          d.writeUInt32BE(0, 20);
          d.writeUInt32BE(seq++, 24); // fresh sequence so the body gets parsed
          reseal(d);
        } else if (rnd() % 2 === 0) {
          d = d.subarray(0, rnd() % (d.length + 1));
        }
      }
      let r: ReturnType<typeof decodeDatagram> | undefined;
      expect(() => (r = decodeDatagram(d, ctx))).not.toThrow();
      const key = r === undefined ? 'none' : r.ok ? 'ok' : r.reason;
      reasons.set(key, (reasons.get(key) ?? 0) + 1);
    }
    for (const k of reasons.keys()) expect(['ok', ...REJECT_REASONS]).toContain(k);
    // The fuzz reached every layer: framing, MAC, body parsing, and some mutants still parse.
    for (const k of ['TRUNCATED', 'BAD_MAGIC', 'BAD_MAC', 'MALFORMED_BODY', 'ok']) expect(reasons.get(k) ?? 0, k).toBeGreaterThan(0);
  });
});
