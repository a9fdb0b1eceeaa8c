/**
 * What a restart or an upgrade hands over, without a network: the control <-> data-plane channel
 * framing (socket-channel.ts), the flow table in a mapped file (shared-flow-table.ts: kept,
 * refused when this build cannot read it, never misread), the MPTCP token index rebuilt from the
 * entries (flow-token-index.ts), and the ids an adopting control process takes over
 * (IdAllocator.reset). Needs the built addon (mapFile), not root.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_FRAME_BYTES, SocketChannel } from '../../src/dataplane/contract/socket-channel.js';
import { openSharedFlowTable } from '../../src/dataplane/shared-flow-table.js';
import { rebuildTokenIndex } from '../../src/dataplane/flow-token-index.js';
import { FLOW_TOKEN_COLLIDED, FLOW_TOKEN_HELD, type FlowTimeouts } from '../../src/dataplane/flow-table.js';
import { FLOW_LAYOUT_VERSION, H32 } from '../../src/dataplane/flow-layout.js';
import { MptcpTokenTable } from '../../src/dataplane/mptcp-tokens.js';
import { IdAllocator } from '../../src/runtime/generation.js';
import { SEED, T0, insertFlow, lookupFlow, tcp4 } from '../fixtures/flow-packets.js';

const TIMEOUTS: FlowTimeouts = { tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000 };

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'sluice-handover-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A connected pair of channels over a unix socket in `dir`. */
async function channelPair(name: string): Promise<{ a: SocketChannel<unknown, unknown>; b: SocketChannel<unknown, unknown>; raw: Socket; server: Server }> {
  const path = join(dir, `${name}.sock`);
  const accepted = new Promise<Socket>((resolve) => {
    const server = createServer(resolve);
    server.listen(path);
    servers.push(server);
  });
  const raw = createConnection(path);
  await new Promise<void>((r) => raw.once('connect', () => r()));
  const peer = await accepted;
  return { a: new SocketChannel(raw), b: new SocketChannel(peer), raw, server: servers[servers.length - 1] };
}
const servers: Server[] = [];
afterAll(() => {
  for (const s of servers) s.close();
});

describe('SocketChannel: the messages cross as structured clones, in order; bad frames end the connection', () => {
  const messages: { name: string; msg: unknown }[] = [
    { name: 'a plain object', msg: { type: 'hello', contract: 1 } },
    { name: 'a Float64Array (counters)', msg: { type: 'counters', counters: new Float64Array([1, 2.5, 2 ** 40]) } },
    { name: 'Maps (flow-counts)', msg: { type: 'flow-counts', requestId: 3, counts: new Map([[1, 10], [2, 20]]), closing: new Map([[1, 1]]) } },
    { name: 'a Uint8Array key (owner-query)', msg: { type: 'owner-query', qid: 9, kind: 1, key: new Uint8Array([1, 2, 3, 255]) } },
    { name: 'a large message (100k rows)', msg: { type: 'flows', requestId: 1, rows: Array.from({ length: 100_000 }, (_, i) => ({ client: '10.0.0.1', clientPort: i & 0xffff })), total: 100_000 } },
  ];

  it('every message, sent back to back, arrives whole and in order', async () => {
    const { a, b } = await channelPair('order');
    const got: unknown[] = [];
    const all = new Promise<void>((resolve) =>
      b.onMessage((m) => {
        got.push(m);
        if (got.length === messages.length) resolve();
      }),
    );
    for (const { msg } of messages) a.send(msg);
    await all;
    expect(got).toEqual(messages.map((m) => m.msg));
    a.destroy('done');
  });

  const bad: { name: string; bytes: Buffer; reason: RegExp }[] = [
    { name: 'a frame over the size limit', bytes: Buffer.from([0xff, 0xff, 0xff, 0xff]), reason: new RegExp(`over the ${MAX_FRAME_BYTES}-byte limit`) },
    { name: 'a frame that is not a serialized value', bytes: Buffer.concat([Buffer.from([0, 0, 0, 4]), Buffer.from([0xde, 0xad, 0xbe, 0xef])]), reason: /did not deserialize/ },
  ];
  it.each(bad)('$name: the receiver closes with a reason, nothing throws', async ({ name, bytes, reason }) => {
    const { raw, b } = await channelPair(name.replace(/\W+/g, '-'));
    const closed = new Promise<string>((resolve) => b.onClose(resolve));
    let delivered = 0;
    b.onMessage(() => delivered++);
    raw.write(bytes);
    expect(await closed).toMatch(reason);
    expect(delivered).toBe(0);
    expect(b.open).toBe(false);
    expect(b.send({ type: 'late' })).toBe(false);
  });
});

describe('shared flow table: kept across processes, refused (never misread) when this build cannot read it', () => {
  const flowA = tcp4('192.0.2.1', 40001, '198.51.100.10', 80);
  const flowB = tcp4('192.0.2.2', 40002, '198.51.100.10', 80);

  /** A table file with two flows (backends 4 and 5), flowB holding MPTCP token 0xabcd. */
  function writeTable(path: string): void {
    const { flows, origin } = openSharedFlowTable({ path, attach: true, capacity: 1024, timeouts: TIMEOUTS, hashSeed: SEED, nowMs: T0 });
    expect(origin.attached).toBe(false);
    expect(origin.note).toBe('no table file yet');
    insertFlow(flows, flowA, T0, 4);
    const slot = insertFlow(flows, flowB, T0, 5);
    flows.setToken(slot, FLOW_TOKEN_HELD, 0xabcd, T0);
  }

  it('a second opening with attach finds the same flows, backends and tokens (what a replacement data plane sees)', () => {
    const path = join(dir, 'kept.flows');
    writeTable(path);
    const { flows, origin } = openSharedFlowTable({ path, attach: true, capacity: 1024, timeouts: TIMEOUTS, hashSeed: SEED, nowMs: T0 + 1000 });
    expect(origin).toMatchObject({ attached: true, flows: 2, note: 'attached' });
    const a = lookupFlow(flows, flowA, T0 + 1000);
    const b = lookupFlow(flows, flowB, T0 + 1000);
    expect(flows.backendOf(a)).toBe(4);
    expect(flows.backendOf(b)).toBe(5);
    expect(flows.tokenStateOf(b)).toBe(FLOW_TOKEN_HELD);
    expect(flows.tokenOf(b)).toBe(0xabcd);
  });

  it('attach: false (a clean start) replaces the file with an empty table', () => {
    const path = join(dir, 'fresh.flows');
    writeTable(path);
    const { flows, origin } = openSharedFlowTable({ path, attach: false, capacity: 1024, timeouts: TIMEOUTS, hashSeed: SEED, nowMs: T0 });
    expect(origin.attached).toBe(false);
    expect(flows.size).toBe(0);
    expect(lookupFlow(flows, flowA, T0)).toBeLessThan(0);
  });

  /** Ways a file can be one this build must not read, and the message that says so. */
  const refusals: { name: string; spoil: (path: string) => void; capacity: number; seed: number; message: RegExp }[] = [
    {
      name: 'another layout version (a newer build wrote it)',
      spoil: (p) => patchWord(p, H32.version, FLOW_LAYOUT_VERSION + 1),
      capacity: 1024,
      seed: SEED,
      message: new RegExp(`layout version ${FLOW_LAYOUT_VERSION + 1} is not understood by this build \\(it reads version ${FLOW_LAYOUT_VERSION}\\); refusing to attach`),
    },
    { name: 'not a flow table at all', spoil: (p) => patchWord(p, H32.magic, 0x12345678), capacity: 1024, seed: SEED, message: /not a Sluice flow table \(magic 0x12345678/ },
    { name: 'another capacity (the config changed)', spoil: () => undefined, capacity: 4096, seed: SEED, message: /capacity 1024, not 4096; refusing to attach/ },
    { name: 'another hash seed', spoil: () => undefined, capacity: 1024, seed: SEED + 1, message: /hashed with seed .*; refusing to attach/ },
  ];
  it.each(refusals)('$name: refused with a clear note, the file kept aside, a new empty table', ({ name, spoil, capacity, seed, message }) => {
    const path = join(dir, `${name.replace(/\W+/g, '-')}.flows`);
    writeTable(path);
    spoil(path);
    const before = readFileSync(path);
    const { flows, origin } = openSharedFlowTable({ path, attach: true, capacity, timeouts: TIMEOUTS, hashSeed: seed, nowMs: T0 });
    expect(origin.attached).toBe(false);
    expect(origin.note).toMatch(/^refused /);
    expect(origin.note).toMatch(message);
    expect(flows.size).toBe(0);
    expect(existsSync(`${path}.refused`)).toBe(true);
    expect(readFileSync(`${path}.refused`).equals(before)).toBe(true);
  });
});

/** Overwrite one u32 header word of a table file (little-endian, as the table writes it). */
function patchWord(path: string, word: number, value: number): void {
  const bytes = readFileSync(path);
  bytes.writeUInt32LE(value >>> 0, word * 4);
  writeFileSync(path, bytes);
}

describe('rebuildTokenIndex: the MPTCP token index comes back from the flow entries', () => {
  const flows = [
    { name: 'a held token', token: 0x1111, state: FLOW_TOKEN_HELD, backend: 2, indexed: true },
    { name: 'a second held token', token: 0x2222, state: FLOW_TOKEN_HELD, backend: 3, indexed: true },
    { name: 'a collided token (another connection owns it)', token: 0x3333, state: FLOW_TOKEN_COLLIDED, backend: 4, indexed: false },
    { name: 'a flow waiting for an owner answer (backend -2)', token: 0x4444, state: FLOW_TOKEN_HELD, backend: -2, indexed: false },
  ];

  it('held tokens of live flows are learned with their backend; collided ones and placeholders are not', () => {
    const { flows: table } = openSharedFlowTable({ path: join(dir, 'tokens.flows'), attach: false, capacity: 64, timeouts: TIMEOUTS, hashSeed: SEED, nowMs: T0 });
    flows.forEach((f, i) => {
      const slot = insertFlow(table, tcp4(`192.0.2.${10 + i}`, 50000 + i, '198.51.100.10', 8080), T0, f.backend);
      table.setToken(slot, f.state, f.token, T0);
    });
    const tokens = new MptcpTokenTable({ capacity: 64, seed: 1 });
    const withFeatureOff = flows.filter((f) => tokens.lookup(f.token, T0 + 10) >= 0).length;
    const added = rebuildTokenIndex(table, tokens, T0 + 10);
    const found = flows.map((f) => ({ name: f.name, backend: tokens.lookup(f.token, T0 + 10) }));
    console.log(`token index: ${withFeatureOff} tokens found before the rebuild, ${added} after`);
    expect(withFeatureOff).toBe(0);
    expect(added).toBe(flows.filter((f) => f.indexed).length);
    expect(found).toEqual(flows.map((f) => ({ name: f.name, backend: f.indexed ? f.backend : -1 })));
  });
});

describe('rebuildTokenIndex with data-plane workers: each rebuilds its flows into the shared token table', () => {
  // Two workers' flow tables; the connection of token 0x5555 has a subflow on each (its join hashed to the other worker).
  const perWorker = [
    [
      { token: 0x1111, backend: 2 },
      { token: 0x5555, backend: 7 },
    ],
    [
      { token: 0x2222, backend: 3 },
      { token: 0x5555, backend: 7 },
    ],
  ];

  it('the union of both workers’ tokens, one entry per token, each counted as added once', () => {
    const buffer = MptcpTokenTable.sharedBuffer(64, { seed: 1 });
    let added = 0;
    perWorker.forEach((list, w) => {
      const { flows: table } = openSharedFlowTable({ path: join(dir, `worker${w}.flows`), attach: false, capacity: 64, timeouts: TIMEOUTS, hashSeed: SEED, nowMs: T0 });
      list.forEach((f, i) => {
        const slot = insertFlow(table, tcp4(`192.0.2.${20 + 10 * w + i}`, 51000 + i, '198.51.100.10', 8080), T0, f.backend);
        table.setToken(slot, FLOW_TOKEN_HELD, f.token, T0);
      });
      added += rebuildTokenIndex(table, MptcpTokenTable.over(buffer), T0 + 10);
    });
    const tokens = MptcpTokenTable.over(buffer);
    const entries = [...tokens.entries(T0 + 10)].map((e) => [e.token, e.backendId]).sort((x, y) => x[0] - y[0]);
    expect({ added, active: tokens.active, entries }).toEqual({
      added: 3,
      active: 3,
      entries: [
        [0x1111, 2],
        [0x2222, 3],
        [0x5555, 7],
      ],
    });
  });
});

describe('IdAllocator.reset: an adopting control process keeps the running ids', () => {
  const cases = [
    { name: 'same backends, other order in the config', seeded: [['web|b', 3], ['web|a', 0]] as const, acquire: ['web|a', 'web|b'], want: [0, 3] },
    { name: 'a new backend gets an id after the highest', seeded: [['web|a', 0], ['web|b', 5]] as const, acquire: ['web|c', 'web|a'], want: [6, 0] },
    { name: 'bad ids are ignored (out of range, duplicate)', seeded: [['web|a', 99], ['web|b', 1], ['web|c', 1]] as const, acquire: ['web|b', 'web|c'], want: [1, 2] },
  ];
  it.each(cases)('$name', ({ seeded, acquire, want }) => {
    const ids = new IdAllocator(8);
    ids.acquire('old|x');
    ids.reset(seeded);
    expect(ids.idOf('old|x')).toBeUndefined();
    expect(acquire.map((k) => ids.acquire(k))).toEqual(want);
  });
});
