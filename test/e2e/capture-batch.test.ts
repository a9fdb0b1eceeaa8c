// Topology: two namespaces sl-cap<id>-a and sl-cap<id>-b joined by one veth pair (links named
// like their namespaces), 10.251.0.1/30 on a and 10.251.0.2/30 on b, default offloads, IPv6 off,
// static neighbours both ways. One agent process per namespace (fixtures/capture-agent.mjs,
// run with `ip netns exec`) drives the compiled wrapper dist/src/dataplane/capture-batch.js:
// b captures what a sends (dgram bursts and a PacketTx flood), then PacketTx frames go both
// ways, golden frames through each transmit path (sendmmsg, the mapped TX ring, each with and
// without PACKET_QDISC_BYPASS). Everything is torn down in afterAll, also after a failure.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = process.getuid?.() === 0;
const ROOT_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const AGENT = join(ROOT_DIR, 'test', 'e2e', 'fixtures', 'capture-agent.mjs');
const ADDON = join(ROOT_DIR, 'src', 'dataplane', 'native', 'build', 'Release', 'sluice_pcap.node');
const ADDON_SRC = join(ROOT_DIR, 'src', 'dataplane', 'native', 'sluice_pcap.c');
const WRAPPER_SRC = join(ROOT_DIR, 'src', 'dataplane', 'capture-batch.ts');
const WRAPPER_DIST = join(ROOT_DIR, 'dist', 'src', 'dataplane', 'capture-batch.js');

const RUN_ID = `${process.pid % 10000}`;
const NS_A = `sl-cap${RUN_ID}-a`;
const NS_B = `sl-cap${RUN_ID}-b`;
const IF_A = NS_A; // each veth end is named like its namespace
const IF_B = NS_B;
const IP_A = '10.251.0.1';
const IP_B = '10.251.0.2';

function sh(file: string, args: readonly string[], input?: string): string {
  return execFileSync(file, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'], timeout: 60_000 });
}

function quiet(file: string, args: readonly string[]): void {
  try {
    sh(file, args);
  } catch {
    // teardown: best effort
  }
}

function newer(a: string, b: string): boolean {
  return statSync(a).mtimeMs > statSync(b).mtimeMs;
}

function ensureBuilt(): void {
  if (!existsSync(ADDON) || newer(ADDON_SRC, ADDON)) {
    sh('npx', ['node-gyp', 'rebuild', '--directory', join(ROOT_DIR, 'src', 'dataplane', 'native')]);
  }
  if (!existsSync(WRAPPER_DIST) || newer(WRAPPER_SRC, WRAPPER_DIST)) {
    try {
      sh('npx', ['tsc', '-p', join(ROOT_DIR, 'tsconfig.json')]);
    } catch {
      // tsc still emits when other files in the tree have type errors; checked below
    }
  }
  if (!existsSync(WRAPPER_DIST)) throw new Error(`${WRAPPER_DIST} missing after tsc`);
}

function linkMac(ns: string, dev: string): string {
  const j = JSON.parse(sh('ip', ['-n', ns, '-j', 'link', 'show', 'dev', dev])) as Array<{ address: string }>;
  const mac = j[0]?.address;
  if (!mac) throw new Error(`no MAC for ${dev} in ${ns}`);
  return mac;
}

function buildLab(): { macA: string; macB: string } {
  sh('ip', ['netns', 'add', NS_A]);
  sh('ip', ['netns', 'add', NS_B]);
  sh('ip', ['link', 'add', IF_A, 'netns', NS_A, 'type', 'veth', 'peer', 'name', IF_B, 'netns', NS_B]);
  for (const [ns, dev, ip] of [
    [NS_A, IF_A, IP_A],
    [NS_B, IF_B, IP_B],
  ] as const) {
    sh('ip', ['netns', 'exec', ns, 'sysctl', '-q', '-w', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']);
    sh('ip', ['-n', ns, '-batch', '-'], `link set lo up\naddr add ${ip}/30 dev ${dev}\nlink set ${dev} up\n`);
  }
  const macA = linkMac(NS_A, IF_A);
  const macB = linkMac(NS_B, IF_B);
  sh('ip', ['-n', NS_A, 'neigh', 'replace', IP_B, 'lladdr', macB, 'dev', IF_A, 'nud', 'permanent']);
  sh('ip', ['-n', NS_B, 'neigh', 'replace', IP_A, 'lladdr', macA, 'dev', IF_B, 'nud', 'permanent']);
  return { macA, macB };
}

function teardownLab(): void {
  quiet('ip', ['netns', 'del', NS_A]); // deleting a namespace deletes its veth end (and so the pair)
  quiet('ip', ['netns', 'del', NS_B]);
}

interface Reply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
  code?: string | null;
}

/** A capture-agent process inside one namespace, driven over JSON lines. */
class Agent {
  readonly #child: ChildProcess;
  readonly #waiting = new Map<number, (r: Reply) => void>();
  readonly #ready: Promise<void>;
  #next = 1;
  #stderr = '';

  constructor(readonly ns: string) {
    this.#child = spawn('ip', ['netns', 'exec', ns, process.execPath, AGENT], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.#child.stderr?.on('data', (d: Buffer) => {
      if (this.#stderr.length < 8192) this.#stderr += d.toString();
    });
    let ready: () => void = () => undefined;
    let failed: (e: Error) => void = () => undefined;
    this.#ready = new Promise((res, rej) => {
      ready = res;
      failed = rej;
    });
    const rl = createInterface({ input: this.#child.stdout! });
    rl.on('line', (line) => {
      let msg: Reply;
      try {
        msg = JSON.parse(line) as Reply;
      } catch {
        return;
      }
      if (msg.id === 0) ready();
      this.#waiting.get(msg.id)?.(msg);
      this.#waiting.delete(msg.id);
    });
    this.#child.on('exit', (code) => {
      failed(new Error(`agent in ${ns} exited (${String(code)}): ${this.#stderr}`));
      for (const [id, cb] of this.#waiting) cb({ id, ok: false, error: `agent exited (${String(code)}): ${this.#stderr}` });
      this.#waiting.clear();
    });
  }

  ready(): Promise<void> {
    return withTimeout(this.#ready, 20_000, `agent in ${this.ns} did not start: ${this.#stderr}`);
  }

  async call<T>(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 20_000): Promise<T> {
    const r = await this.reply(cmd, args, timeoutMs);
    if (!r.ok) throw new Error(`${this.ns} ${cmd}: ${r.error ?? 'failed'}`);
    return r.result as T;
  }

  reply(cmd: string, args: Record<string, unknown> = {}, timeoutMs = 20_000): Promise<Reply> {
    const id = this.#next++;
    const p = new Promise<Reply>((res) => this.#waiting.set(id, res));
    this.#child.stdin?.write(JSON.stringify({ id, cmd, ...args }) + '\n');
    return withTimeout(p, timeoutMs, `${this.ns} ${cmd}: no reply in ${timeoutMs} ms; stderr: ${this.#stderr}`);
  }

  get alive(): boolean {
    return this.#child.exitCode === null && this.#child.signalCode === null;
  }

  kill(): void {
    if (this.alive) this.#child.kill('SIGKILL');
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, rej) => {
    t = setTimeout(() => rej(new Error(what)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(t));
}

function sleep(ms: number): Promise<void> {
  return new Promise((res) => setTimeout(res, ms));
}

interface Report {
  frames: number;
  batches: number;
  maxBatch: number;
  truncated: number;
  ports: Record<string, number>;
  other: number;
  macs: Array<{ dst: string; src: string; type: number; len: number }>;
  bytes: string[];
  stats: { received: number; dropped: number; ifDropped: number } | null;
  windowMs: number;
  firesInWindow: number;
  maxTimerGapMs: number;
  callbackErrors: number;
  failed: boolean;
  errors: string[];
}

/** Polls the agent's report until `done` holds or the (bounded) wait ends. */
async function settle(agent: Agent, done: (r: Report) => boolean, maxMs = 5000): Promise<Report> {
  const until = Date.now() + maxMs;
  let r = await agent.call<Report>('report');
  while (!done(r) && Date.now() < until) {
    await sleep(50);
    r = await agent.call<Report>('report');
  }
  return r;
}

const hex = (mac: string): string => mac.replace(/:/g, '').toLowerCase();

/** The transmit paths PacketTx offers; every golden-frame case runs through each. */
const TX_PATHS = [
  { path: 'sendmmsg', txRing: false, qdiscBypass: false },
  { path: 'sendmmsg+qdisc-bypass', txRing: false, qdiscBypass: true },
  { path: 'tx-ring', txRing: true, qdiscBypass: false },
  { path: 'tx-ring+qdisc-bypass', txRing: true, qdiscBypass: true },
] as const;

interface Golden {
  flushed: number[];
  expected: string[];
  sent: number;
  errors: number;
  lastError: string | null;
  path: string;
  ring: { frames: number; frameBytes: number; blockBytes: number; mappedBytes: number } | null;
}

if (!root && process.env.CI === 'true') {
  describe('capture-batch e2e (needs root)', () => {
    it('runs as root in CI', () => {
      throw new Error('test/e2e/capture-batch.test.ts needs root (namespaces, packet sockets); CI must run it as root');
    });
  });
}

describe.skipIf(!root)('BatchCapture / PacketTx over a veth pair between two namespaces', () => {
  let a: Agent | null = null;
  let b: Agent | null = null;
  let macA = '';
  let macB = '';

  const A = (): Agent => a!;
  const B = (): Agent => b!;

  beforeAll(async () => {
    ensureBuilt();
    teardownLab(); // a leftover from a crashed run with the same pid suffix
    ({ macA, macB } = buildLab());
    a = new Agent(NS_A);
    b = new Agent(NS_B);
    await Promise.all([a.ready(), b.ready()]);
  });

  afterAll(async () => {
    for (const ag of [a, b]) {
      if (ag?.alive) await ag.reply('exit', {}, 2000).catch(() => undefined);
    }
    await sleep(100);
    a?.kill();
    b?.kill();
    teardownLab();
  });

  it('interfaceInfo reports the index, MAC and MTU the kernel has', async () => {
    const info = await B().call<{ index: number; mtu: number; mac: string }>('info', { device: IF_B });
    expect(info.mac).toBe(hex(macB));
    expect(info.mtu).toBe(1500);
    expect(info.index).toBeGreaterThan(0);
    const bad = await B().reply('info', { device: 'sl-capnosuch0' });
    expect(bad.ok).toBe(false);
    expect(bad.error).toMatch(/no such device "sl-capnosuch0"/);
  });

  it('open errors say what is wrong: no such device, bad filter', async () => {
    const dev = await B().call<{ ok: boolean; code: string; message: string }>('tryCapture', {
      device: 'sl-capnosuch0',
      filter: 'udp',
    });
    expect(dev.ok).toBe(false);
    expect(dev.code).toBe('ENODEV');
    expect(dev.message).toMatch(/no such device "sl-capnosuch0"/);

    const filt = await B().call<{ ok: boolean; code: string; message: string }>('tryCapture', {
      device: IF_B,
      filter: 'udp and dst port ((',
    });
    expect(filt.ok).toBe(false);
    expect(filt.code).toBe('EFILTER');
    expect(filt.message).toMatch(/bad capture filter "udp and dst port \(\(": .*syntax error/);

    const tx = await B().call<{ ok: boolean; code: string; message: string }>('tryTx', { device: 'sl-capnosuch0' });
    expect(tx.ok).toBe(false);
    expect(tx.code).toBe('ENODEV');
  });

  it('captures every datagram of a burst, and only what the filter selects', async () => {
    const opened = await B().call<{ warning: string | null }>('capture', {
      device: IF_B,
      filter: 'udp and dst port 9999',
      batchSize: 256,
      bufferBytes: 16 * 1024 * 1024,
    });
    expect(opened.warning).toBeNull();
    const N = 5000;
    await A().call('udp', { host: IP_B, port: 9998, count: 500 });
    const sent = await A().call<{ sent: number; failed: number }>('udp', { host: IP_B, port: 9999, count: N });
    await A().call('udp', { host: IP_B, port: 9998, count: 500 });
    expect(sent).toEqual({ sent: N, failed: 0 });

    const r = await settle(B(), (x) => (x.ports['9999'] ?? 0) + (x.stats?.dropped ?? 0) >= N);
    const got = r.ports['9999'] ?? 0;
    expect(got).toBeLessThanOrEqual(N);
    expect(got + r.stats!.dropped).toBeGreaterThanOrEqual(N);
    expect(r.ports['9998']).toBeUndefined();
    expect(r.other).toBe(0);
    expect(r.truncated).toBe(0);
    expect(r.frames).toBe(got);
    expect(r.maxBatch).toBeLessThanOrEqual(256);
    expect(r.callbackErrors).toBe(0);
    for (const k of ['received', 'dropped', 'ifDropped'] as const) expect(typeof r.stats![k]).toBe('number');
    expect(r.stats!.received).toBeGreaterThanOrEqual(got);
    // Frames from a to b, as the kernel built them.
    expect(r.macs[0]).toMatchObject({ dst: hex(macB), src: hex(macA), type: 0x0800, len: 60 });
  });

  it('setFilter swaps the filter at runtime; a bad one throws and leaves the old one', async () => {
    await B().call('setFilter', { filter: 'udp and dst port 9998' });
    await B().call('reset');
    await A().call('udp', { host: IP_B, port: 9999, count: 200 });
    await A().call('udp', { host: IP_B, port: 9998, count: 300 });
    let r = await settle(B(), (x) => (x.ports['9998'] ?? 0) + (x.stats?.dropped ?? 0) >= 300);
    expect(r.ports['9999']).toBeUndefined();
    expect(r.ports['9998']).toBe(300);

    const bad = await B().reply('setFilter', { filter: 'not a filter ((' });
    expect(bad.ok).toBe(false);
    expect(bad.error).toMatch(/bad capture filter "not a filter \(\(".*previous filter stays active/);
    await A().call('udp', { host: IP_B, port: 9998, count: 50 });
    r = await settle(B(), (x) => (x.ports['9998'] ?? 0) >= 350);
    expect(r.ports['9998']).toBe(350);
  });

  it('overloaded by a flood: full batches, counted drops, and a 10 ms timer in the same process keeps firing', async () => {
    // 30 us of simulated work per frame caps this receiver near 33k pps, well under the flood,
    // so the ring stays full for the whole flood: the case where draining the ring inside one
    // callback would starve the event loop. A batch of 64 is ~2 ms of work, so the loop turns
    // several times per timer period.
    await B().call('closeCapture');
    await B().call('capture', { device: IF_B, filter: 'udp and dst port 9999', batchSize: 64, spinUsPerFrame: 30 });
    const flood = await A().call<{ sent: number; errors: number; elapsedMs: number }>(
      'flood',
      { device: IF_A, dstMac: macB, srcIp: IP_A, dstIp: IP_B, dstPort: 9999, count: 400_000, maxMs: 3000 },
      30_000,
    );
    expect(flood.sent).toBeGreaterThan(10_000);
    // Wait (bounded) until b has worked through its ring.
    let prev = -1;
    let r = await B().call<Report>('report');
    for (let i = 0; i < 100 && r.frames !== prev; i++) {
      prev = r.frames;
      await sleep(100);
      r = await B().call<Report>('report');
    }
    const avgBatch = r.frames / r.batches;
    const expectedFires = r.windowMs / 10;
    console.log(
      `flood: sent ${flood.sent} in ${flood.elapsedMs.toFixed(0)} ms (${((flood.sent / flood.elapsedMs) * 1000).toFixed(0)} pps), ` +
        `captured ${r.frames} in ${r.batches} batches (avg ${avgBatch.toFixed(1)}, max ${r.maxBatch}) over ${r.windowMs.toFixed(0)} ms, ` +
        `pcap dropped ${r.stats!.dropped}, timer ${r.firesInWindow}/${expectedFires.toFixed(0)} fires, worst gap ${r.maxTimerGapMs.toFixed(1)} ms`,
    );
    expect(r.stats!.dropped).toBeGreaterThan(0); // the receiver really was overloaded
    expect(r.other).toBe(0);
    expect(avgBatch).toBeGreaterThan(1);
    expect(r.maxBatch).toBe(64);
    expect(r.windowMs).toBeGreaterThan(500);
    // Behaviour, not a latency bound: the loop got control between batches.
    expect(r.firesInWindow).toBeGreaterThanOrEqual(Math.floor(expectedFires / 2));
    expect(r.stats!.received).toBeGreaterThanOrEqual(r.frames);
    expect(r.frames + r.stats!.dropped).toBeLessThanOrEqual(flood.sent);
  });

  it('PacketTx sends crafted frames with its own MAC; direction "in" never sees its own frames', async () => {
    await B().call('closeCapture');
    const filter = 'ether proto 0x88b5';
    await A().call('capture', { device: IF_A, filter, batchSize: 64 });
    await B().call('capture', { device: IF_B, filter, batchSize: 64 });

    const fromB = await B().call<{ flushed: number; single: boolean; bad: number; sent: number; errors: number; mac: string; mtu: number }>(
      'txFrames',
      { device: IF_B, dstMac: macA, count: 10 },
    );
    expect(fromB).toMatchObject({ flushed: 10, single: true, bad: 0, sent: 11, errors: 1, mac: hex(macB), mtu: 1500 });
    const ra = await settle(A(), (x) => x.frames >= 11, 3000);
    expect(ra.frames).toBe(11);
    for (const m of ra.macs) expect(m).toMatchObject({ dst: hex(macA), src: hex(macB), type: 0x88b5, len: 60 });

    // The same from a through the TX ring: sendOne goes through its own plain socket.
    const fromA = await A().call<{ sent: number; single: boolean; path: string }>('txFrames', { device: IF_A, dstMac: macB, count: 5, txRing: true });
    expect(fromA).toMatchObject({ sent: 6, single: true, path: 'tx-ring' });
    const rb = await settle(B(), (x) => x.frames >= 6, 3000);
    expect(rb.frames).toBe(6); // 6 from a, none of its own 11
    for (const m of rb.macs) expect(m).toMatchObject({ dst: hex(macB), src: hex(macA) });
    expect((await A().call<Report>('report')).frames).toBe(11); // a did not see its own 6 either
  });

  // One batch of 8 per flush, 3 flushes: on a TX ring of 9 frames the head wraps. 5 bytes is
  // shorter than an Ethernet header, 1515 is MTU + 15: both refused and counted, the rest go.
  it.each(TX_PATHS)('PacketTx $path: golden frames arrive byte-exact and in order; short and over-MTU frames are counted, the rest of the batch goes', async (p) => {
    await A().call('closeCapture').catch(() => undefined);
    await B().call('closeCapture');
    await B().call('capture', { device: IF_B, filter: 'ether proto 0x88b5', batchSize: 64, keepBytes: true });
    const g = await A().call<Golden>('txGolden', { device: IF_A, dstMac: macB, lengths: [60, 1514, 5, 300, 1515, 61, 1000, 64], batches: 3, txRing: p.txRing, qdiscBypass: p.qdiscBypass });
    expect(g.path).toBe(p.path);
    expect(g.flushed).toEqual([6, 6, 6]);
    expect(g.sent).toBe(18);
    expect(g.errors).toBe(6);
    expect(g.lastError).toMatch(/too long/i);
    const rb = await settle(B(), (x) => x.frames >= 18, 3000);
    expect(rb.frames).toBe(18);
    expect(rb.bytes).toEqual(g.expected);
    if (p.txRing) {
      expect(g.ring!.frames).toBeGreaterThanOrEqual(8);
      console.log(`${p.path}: ${g.ring!.frames} frames of ${g.ring!.frameBytes} bytes in blocks of ${g.ring!.blockBytes}, ${g.ring!.mappedBytes} bytes mapped`);
    } else {
      expect(g.ring).toBeNull();
    }
  });

  // The MTU drops after the transmitter opened: the kernel itself refuses the 1416-byte frames
  // (MTU 1400 + 14 < 1416; on the TX ring the frame goes TP_STATUS_WRONG_FORMAT), each is
  // counted and the frames behind it in the batch still go.
  it.each([TX_PATHS[0], TX_PATHS[2]])('PacketTx $path: frames the kernel refuses after an MTU change are counted, the rest of the batch goes', async (p) => {
    await B().call('closeCapture');
    await B().call('capture', { device: IF_B, filter: 'ether proto 0x88b5', batchSize: 64, keepBytes: true });
    try {
      const pending = A().call<Golden>('txGolden', { device: IF_A, dstMac: macB, lengths: [60, 1416, 100, 1416, 64], batches: 2, txRing: p.txRing, waitForMtu: 1400 });
      await sleep(200);
      sh('ip', ['-n', NS_A, 'link', 'set', IF_A, 'mtu', '1400']);
      const g = await pending;
      expect(g.flushed).toEqual([3, 3]);
      expect(g.errors).toBe(4);
      expect(g.lastError).toMatch(/too long/i);
      const rb = await settle(B(), (x) => x.frames >= 6, 3000);
      expect(rb.frames).toBe(6);
      expect(rb.bytes).toEqual(g.expected);
    } finally {
      sh('ip', ['-n', NS_A, 'link', 'set', IF_A, 'mtu', '1500']);
    }
  });

  // A token bucket on a's veth (this test's own link; removed in finally) holds frames in the
  // qdisc the way a NIC holds them until transmit completion: the kick's wait for completion
  // times out with frames still the kernel's. The next batch must not write into them (the
  // receiver would see its bytes in their place): it gets only the frames that came back, the
  // rest is counted; after a pause every frame is back, and what JS had to write to spill slots
  // in the meantime moves into the ring and goes.
  it('PacketTx tx-ring: ring frames the kernel still holds are never overwritten; once back, the ring is whole again', async () => {
    await B().call('closeCapture');
    await B().call('capture', { device: IF_B, filter: 'ether proto 0x88b5', batchSize: 64, keepBytes: true });
    sh('ip', ['netns', 'exec', NS_A, 'tc', 'qdisc', 'replace', 'dev', IF_A, 'root', 'tbf', 'rate', '200kbit', 'burst', '1600', 'latency', '2s']);
    try {
      const g = await A().call<Golden>('txGolden', { device: IF_A, dstMac: macB, lengths: new Array<number>(8).fill(1000), batches: 3, txRing: true, pauses: [0, 1000, 0] });
      console.log(`tx-ring behind a slow qdisc: flushed ${JSON.stringify(g.flushed)}, errors ${g.errors} (${g.lastError})`);
      expect(g.flushed[0]).toBe(8);
      expect(g.flushed[1]).toBeLessThan(8);
      expect(g.flushed[2]).toBe(8);
      expect(g.errors).toBe(8 - g.flushed[1]);
      const total = 16 + g.flushed[1];
      const rb = await settle(B(), (x) => x.frames >= total, 5000);
      expect(rb.frames).toBe(total);
      expect(rb.bytes).toEqual(g.expected);
    } finally {
      sh('ip', ['netns', 'exec', NS_A, 'tc', 'qdisc', 'del', 'dev', IF_A, 'root']);
    }
  });

  it('flags frames longer than the slot as truncated and keeps slotSize bytes', async () => {
    await B().call('closeCapture');
    await B().call('capture', { device: IF_B, filter: 'udp and dst port 9999', batchSize: 16, slotSize: 64 });
    await A().call('udp', { host: IP_B, port: 9999, count: 10, size: 200 }); // 242-byte frames
    const r = await settle(B(), (x) => x.frames >= 10, 3000);
    expect(r.frames).toBe(10);
    expect(r.truncated).toBe(10);
    expect(r.macs[0]).toMatchObject({ len: 64, type: 0x0800 });
  });

  it('survives onBatch throwing and close() from inside onBatch', async () => {
    await B().call('closeCapture');
    await B().call('capture', { device: IF_B, filter: 'udp and dst port 9999', batchSize: 64, throwOnBatch: true });
    await A().call('udp', { host: IP_B, port: 9999, count: 300 });
    let r = await settle(B(), (x) => x.frames >= 300, 3000);
    expect(r.frames).toBe(300);
    expect(r.callbackErrors).toBe(r.batches);
    expect(r.errors[0]).toMatch(/thrown by onBatch/);

    await B().call('closeCapture');
    await B().call('capture', { device: IF_B, filter: 'udp and dst port 9999', batchSize: 4, closeInBatch: true });
    await A().call('udp', { host: IP_B, port: 9999, count: 100 });
    await sleep(200);
    r = await B().call<Report>('report');
    expect(r.batches).toBe(1);
    expect(r.stats).toBeNull(); // closed
    // The process is alive and can capture again.
    await B().call('closeCapture');
    await B().call('capture', { device: IF_B, filter: 'udp and dst port 9999', batchSize: 64 });
    await A().call('udp', { host: IP_B, port: 9999, count: 20 });
    r = await settle(B(), (x) => x.frames >= 20, 3000);
    expect(r.frames).toBe(20);
  });

  it('a link flap does not stop capture; a deleted interface is reported through onError', async () => {
    await B().call('closeCapture');
    await B().call('capture', { device: IF_B, filter: 'udp and dst port 9999', batchSize: 64 });
    sh('ip', ['-n', NS_B, 'link', 'set', IF_B, 'down']);
    await sleep(50);
    sh('ip', ['-n', NS_B, 'link', 'set', IF_B, 'up']);
    sh('ip', ['-n', NS_B, 'neigh', 'replace', IP_A, 'lladdr', macA, 'dev', IF_B, 'nud', 'permanent']);
    await sleep(100);
    await A().call('udp', { host: IP_B, port: 9999, count: 20 });
    let r = await settle(B(), (x) => x.frames >= 20, 3000);
    expect(r.frames).toBe(20);
    expect(r.failed).toBe(false);

    // A throwaway link inside b, deleted under a running capture.
    const x = `sl-cap${RUN_ID}-x`;
    sh('ip', ['-n', NS_B, 'link', 'add', x, 'type', 'veth', 'peer', 'name', `sl-cap${RUN_ID}-y`]);
    sh('ip', ['-n', NS_B, 'link', 'set', x, 'up']);
    await B().call('closeCapture');
    await B().call('capture', { device: x, filter: 'udp', batchSize: 8 });
    sh('ip', ['-n', NS_B, 'link', 'del', x]);
    r = await settle(B(), (y) => y.failed, 3000);
    expect(r.failed).toBe(true);
    expect(r.errors[0]).toMatch(/capture on sl-cap\d+-x stopped: .*interface disappeared/i);
    await B().call('closeCapture');
  });
});
