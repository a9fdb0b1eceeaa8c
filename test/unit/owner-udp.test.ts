/**
 * The data plane's owner-query decision for UDP and for unanswered queries (owner-hold.ts,
 * flow-steer.ts). UDP asks the owner only while a table change is recent in the cluster (the
 * control process says so with setChangeRecent); in steady state it asks no one. A flow query
 * nobody answers in time is asked once more with its frames still held (bounded per flow and per
 * second), then takes the table's pick (counted): held frames are never dropped for a silence
 * (that turned slow answers into TCP retransmission backoff stalls and query storms).
 * Answers that come after the data plane stopped waiting are counted; asking is bounded per
 * second. No root needed.
 */
import { describe, expect, it } from 'vitest';
import { Forwarder } from '../../src/dataplane/forwarder.js';
import { MAX_RETRIES_PER_S, NO_ANSWER, QUERY_BUDGET_PER_S, RETRY_DEADLINE_MS } from '../../src/dataplane/owner-hold.js';
import { buildFrame } from '../../src/packet/build.js';
import { TCP_ACK, TCP_SYN } from '../../src/packet/parsed-packet.js';
import { G } from '../../src/dataplane/contract/counters.js';
import { IdAllocator, buildSpec } from '../../src/runtime/generation.js';
import type { SluiceConfig } from '../../src/config/types.js';
import type { NextHop } from '../../src/dataplane/host.js';
import { parseMac, formatMac } from '../../src/packet/mac.js';

const ROUTER_MAC = '02:00:00:00:00:01';
const EGRESS_MAC = '02:00:00:00:00:02';
const BACKENDS = ['10.99.0.11', '10.99.0.12', '10.99.0.13'];
const macOf = (address: string): string => `02:00:00:00:01:${Number(address.split('.').pop()).toString(16).padStart(2, '0')}`;

function config(addresses: readonly string[] = BACKENDS): SluiceConfig {
  const backends = addresses.map((address) => ({ address, weight: 1, state: 'active' as const, role: 'primary' as const }));
  return {
    interface: 'sl-lb0',
    egressInterface: 'sl-lb0',
    hashSeed: 0,
    services: [
      { name: 'web', vip: '198.51.100.10', family: 4, port: 80, protocol: 'tcp', forwarding: 'dsr-l2', tableSize: 251, mptcp: false, mptcpUnknownJoin: 'drop', minPrimaries: 1, backends },
      { name: 'game', vip: '198.51.100.10', family: 4, port: 5000, protocol: 'udp', forwarding: 'dsr-l2', tableSize: 251, mptcp: false, mptcpUnknownJoin: 'drop', minPrimaries: 1, backends },
    ],
    flowTable: { capacity: 4096, tcpIdleTimeoutS: 300, tcpClosingTimeoutS: 10, udpIdleTimeoutS: 30, halfOpenTimeoutS: 10, floodProtection: true },
    capture: { engine: 'batch', bufferMiB: 32, batchSize: 256 },
    safety: { allowHostForwarding: false, allowLocalVip: false },
    metrics: { listen: '127.0.0.1:9180' },
    admin: { socket: '/tmp/x.sock' },
    log: { level: 'info' },
  };
}

const iface = { name: 'sl-lb0', mac: parseMac(EGRESS_MAC), mtu: 1500, addresses: [{ family: 4 as const, address: '10.99.0.2' }], allAddresses: ['10.99.0.2'] };

type Query = { qid: number; kind: number; key: Uint8Array };

/** A forwarder with owner queries on (a cluster with sync), as the worker sets it up. */
function setup(): { fwd: Forwarder; queries: Query[]; bids: IdAllocator; tx: Buffer; reload: (addresses: readonly string[]) => void } {
  const fwd = new Forwarder({ flowCapacity: 4096, tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000 });
  const bids = new IdAllocator(1024);
  const sids = new IdAllocator(64);
  const hops = new Map<string, NextHop>(BACKENDS.map((a) => [a, { address: a, nextHop: a, dev: 'sl-lb0', mac: parseMac(macOf(a)), problem: null }]));
  let generation = 0;
  const reload = (addresses: readonly string[]): void =>
    fwd.apply(buildSpec({ config: config(addresses), generation: ++generation, serviceIds: sids, backendIds: bids, nextHops: hops, ingress: iface, egress: iface, healthy: () => true }));
  reload(BACKENDS);
  const queries: Query[] = [];
  fwd.setOwnerQuery((qid, kind, key) => queries.push({ qid, kind, key }), 4);
  return { fwd, queries, bids, tx: Buffer.alloc(10240), reload };
}

const udp = (sport: number): Buffer => buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src: '10.99.1.2', dst: '198.51.100.10' }, udp: { sport, dport: 5000 }, payload: 'ping' });
const tcp = (sport: number, flags: number): Buffer =>
  buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src: '10.99.1.2', dst: '198.51.100.10' }, tcp: { sport, dport: 80, flags }, payload: flags === TCP_SYN ? undefined : 'x' });

/** 200 sessions x 5 requests (one every 100 ms) through one instance; returns the queries asked and the frames sent. */
function sessions(fwd: Forwarder, tx: Buffer, t0: number): { sent: number } {
  let sent = 0;
  for (let round = 0; round < 5; round++) for (let s = 0; s < 200; s++) if (fwd.forward(udp(20000 + s), udp(20000 + s).length, tx, t0 + round * 100) > 0) sent++;
  return { sent };
}

describe('UDP owner queries: steady state vs a recent table change', () => {
  it('steady state: 200 UDP sessions ask no one (counter stays 0); while a change is recent each new flow asks once', () => {
    const steady = setup();
    const quiet = sessions(steady.fwd, steady.tx, 1000);
    const recent = setup();
    recent.fwd.setChangeRecent(1000 + 30_000);
    sessions(recent.fwd, recent.tx, 1000);
    console.log(`200 UDP sessions x 5 requests: owner queries in steady state ${steady.fwd.counters[G.ownerQueries]}, while a change is recent ${recent.fwd.counters[G.ownerQueries]}`);
    expect(steady.fwd.counters[G.ownerQueries]).toBe(0);
    expect(steady.fwd.counters[G.ownerQueriesUdp]).toBe(0);
    expect(quiet.sent).toBe(1000);
    expect(recent.fwd.counters[G.ownerQueriesUdp]).toBe(200);
    expect(recent.queries.every((q) => q.kind === 0 && q.key.length === 13)).toBe(true);
  });

  const decisions: { name: string; frame: () => Buffer; recentUntil: number; now: number; asks: boolean }[] = [
    { name: 'UDP, no change known', frame: () => udp(30001), recentUntil: 0, now: 1000, asks: false },
    { name: 'UDP, change recent', frame: () => udp(30002), recentUntil: 5000, now: 1000, asks: true },
    { name: 'UDP, the window just ended', frame: () => udp(30003), recentUntil: 5000, now: 5000, asks: false },
    { name: 'TCP SYN, change recent (a new connection takes the table)', frame: () => tcp(30004, TCP_SYN), recentUntil: 5000, now: 1000, asks: false },
    { name: 'TCP non-SYN, no change known (asks as before)', frame: () => tcp(30005, TCP_ACK), recentUntil: 0, now: 1000, asks: true },
  ];
  for (const d of decisions) {
    it(`decision: ${d.name} -> ${d.asks ? 'asks its owner' : 'no query'}`, () => {
      const { fwd, queries, tx } = setup();
      fwd.setChangeRecent(d.recentUntil);
      const f = d.frame();
      const len = fwd.forward(f, f.length, tx, d.now);
      expect(queries.length).toBe(d.asks ? 1 : 0);
      expect(len === 0).toBe(d.asks); // asked: held, nothing sent yet
    });
  }

  it("an answered UDP query pins the flow to the owner's backend; its next packets ask no more", () => {
    const { fwd, queries, bids, tx } = setup();
    fwd.setChangeRecent(60_000);
    const f = udp(31000);
    expect(fwd.forward(f, f.length, tx, 1000)).toBe(0);
    const owner = bids.idOf('game|10.99.0.13')!;
    const out: string[] = [];
    fwd.answer(queries[0].qid, owner, 1005, tx, () => out.push(formatMac(tx, 0)));
    expect(out).toEqual([macOf('10.99.0.13')]);
    for (let i = 1; i <= 3; i++) {
      const len = fwd.forward(f, f.length, tx, 1000 + 100 * i);
      expect(formatMac(tx.subarray(0, len), 0)).toBe(macOf('10.99.0.13'));
    }
    expect(queries).toHaveLength(1);
  });
});

describe('unanswered owner queries: asked once more (frames still held), then the table; never dropped', () => {
  type Settle = 'expire' | 'no-answer' | 'not-found';
  const cases: { name: string; frame: () => Buffer; recent: boolean; settle: Settle; retried: number; unanswered: number }[] = [
    { name: 'TCP, the deadline passes while a change is recent: asked again', frame: () => tcp(32001, TCP_ACK), recent: true, settle: 'expire', retried: 1, unanswered: 0 },
    { name: 'UDP, the control process gives up (NO_ANSWER) while a change is recent: asked again', frame: () => udp(32002), recent: true, settle: 'no-answer', retried: 1, unanswered: 0 },
    { name: 'TCP, the deadline passes with no change known (a reload being applied): asked again too', frame: () => tcp(32003, TCP_ACK), recent: false, settle: 'expire', retried: 1, unanswered: 0 },
    { name: 'UDP, every owner said NOT FOUND while a change is recent: the table decides, not unanswered', frame: () => udp(32004), recent: true, settle: 'not-found', retried: 0, unanswered: 0 },
  ];
  for (const c of cases) {
    it(`${c.name} (retried ${c.retried}, unanswered ${c.unanswered})`, () => {
      const { fwd, queries, bids, tx } = setup();
      if (c.recent) fwd.setChangeRecent(60_000);
      const f = c.frame();
      expect(fwd.forward(f, f.length, tx, 1000)).toBe(0);
      const out: string[] = [];
      const note = (): void => void out.push(formatMac(tx, 0));
      if (c.settle === 'expire') fwd.expireQueries(1050, tx, note);
      else fwd.answer(queries[0].qid, c.settle === 'no-answer' ? NO_ANSWER : -1, 1020, tx, note);
      expect(fwd.counters[G.ownerRetried]).toBe(c.retried);
      expect(fwd.counters[G.ownerUnanswered]).toBe(c.unanswered);
      expect(queries).toHaveLength(1 + c.retried);
      expect(out).toHaveLength(1 - c.retried);
      if (c.retried === 1) {
        // The second ask's answer releases the held frame to the owner's backend.
        const svc = c.name.startsWith('UDP') ? 'game' : 'web';
        fwd.answer(queries[1].qid, bids.idOf(`${svc}|10.99.0.13`)!, 1080, tx, note);
        expect(out).toEqual([macOf('10.99.0.13')]);
        expect(fwd.counters[G.ownerHits]).toBe(1);
      }
    });
  }

  it("the first ask's answer, arriving late while the second is out, settles the flow", () => {
    const { fwd, queries, bids, tx } = setup();
    fwd.setChangeRecent(60_000);
    const f = tcp(32050, TCP_ACK);
    fwd.forward(f, f.length, tx, 1000);
    fwd.expireQueries(1050, tx, () => undefined);
    expect(queries).toHaveLength(2);
    const out: string[] = [];
    fwd.answer(queries[0].qid, bids.idOf('web|10.99.0.12')!, 1060, tx, () => void out.push(formatMac(tx, 0)));
    expect(out).toEqual([macOf('10.99.0.12')]);
    expect(fwd.counters[G.ownerLateAnswers]).toBe(0);
  });

  it('a flow whose second ask goes unanswered too takes the table: held at most 50 + 120 ms, never dropped', () => {
    const { fwd, queries, tx } = setup();
    fwd.setChangeRecent(60_000);
    const f = tcp(32100, TCP_ACK);
    let sent = 0;
    fwd.forward(f, f.length, tx, 1000);
    fwd.expireQueries(1050, tx, () => sent++);
    expect(sent).toBe(0);
    fwd.expireQueries(1100, tx, () => sent++); // the second ask's deadline is longer (RETRY_DEADLINE_MS)
    expect(sent).toBe(0);
    fwd.expireQueries(1050 + RETRY_DEADLINE_MS, tx, () => sent++);
    expect(queries).toHaveLength(2);
    expect(sent).toBe(1);
    expect(fwd.counters[G.ownerRetried]).toBe(1);
    expect(fwd.counters[G.ownerUnanswered]).toBe(1);
    expect(fwd.forward(f, f.length, tx, 1300)).toBeGreaterThan(0);
    expect(queries).toHaveLength(2);
  });

  it('asking again is bounded: at most MAX_RETRIES_PER_S a second, the rest take the table', () => {
    const { fwd, tx } = setup();
    fwd.setChangeRecent(60_000);
    const n = MAX_RETRIES_PER_S + 10;
    let sent = 0;
    for (let i = 0; i < n; i += 100) {
      for (let s = i; s < Math.min(n, i + 100); s++) fwd.forward(udp(40000 + s), udp(40000 + s).length, tx, 1000);
      fwd.expireQueries(1050, tx, () => sent++); // first deadline: asked again (within budget) or the table
      fwd.expireQueries(1050 + RETRY_DEADLINE_MS, tx, () => sent++); // second deadline: the table
    }
    expect(fwd.counters[G.ownerRetried]).toBe(MAX_RETRIES_PER_S);
    expect(fwd.counters[G.ownerUnanswered]).toBe(n);
    expect(sent).toBe(n);
  });
});

describe('late owner answers are counted', () => {
  const cases: { name: string; answer: 'backend' | 'not-found'; late: number }[] = [
    { name: 'an answer naming a backend after the deadline: the owner held an entry, too late', answer: 'backend', late: 1 },
    { name: 'a NOT FOUND after the deadline is not a late owner', answer: 'not-found', late: 0 },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const { fwd, queries, bids, tx } = setup();
      const f = tcp(33000, TCP_ACK);
      fwd.forward(f, f.length, tx, 1000);
      fwd.expireQueries(1050, tx, () => undefined);
      fwd.expireQueries(1050 + RETRY_DEADLINE_MS, tx, () => undefined);
      expect(fwd.counters[G.ownerQueryTimeouts]).toBe(2);
      let sent = 0;
      fwd.answer(queries[1].qid, c.answer === 'backend' ? bids.idOf('web|10.99.0.12')! : -1, 1200, tx, () => sent++);
      expect(sent).toBe(0);
      expect(fwd.counters[G.ownerLateAnswers]).toBe(c.late);
    });
  }
});

describe('owner queries are bounded per second', () => {
  it(`at most QUERY_BUDGET_PER_S queries a second; the rest take the table and are counted; the next second asks again`, () => {
    const { fwd, queries, tx } = setup();
    fwd.setChangeRecent(60_000);
    const n = QUERY_BUDGET_PER_S + 10;
    let sent = 0;
    // In rounds of 200 (the pending-query slots are 256), each round answered NOT FOUND.
    for (let i = 0; i < n; i += 200) {
      const before = queries.length;
      for (let s = i; s < Math.min(n, i + 200); s++) {
        const f = udp(10000 + s);
        if (fwd.forward(f, f.length, tx, 1000 + i / 200) > 0) sent++;
      }
      for (const q of queries.slice(before)) fwd.answer(q.qid, -1, 1001 + i / 200, tx, () => sent++);
    }
    console.log(`${n} new UDP flows in one second while a change is recent: ${queries.length} asked, ${fwd.counters[G.ownerQueriesOverBudget]} over budget`);
    expect(queries).toHaveLength(QUERY_BUDGET_PER_S);
    expect(fwd.counters[G.ownerQueriesOverBudget]).toBe(10);
    expect(sent).toBe(n);
    const f = udp(9000);
    expect(fwd.forward(f, f.length, tx, 2100)).toBe(0);
    expect(queries).toHaveLength(QUERY_BUDGET_PER_S + 1);
  });
});

describe('a flow whose backend left the config', () => {
  it('takes the new table pick in place: its next packet asks no owner (a reload made each such connection query the cluster)', () => {
    const { fwd, queries, tx, reload } = setup();
    const flows = 120;
    const removedMac = macOf('10.99.0.13');
    const onRemoved: number[] = [];
    for (let s = 0; s < flows; s++) {
      const syn = tcp(50000 + s, TCP_SYN);
      const len = fwd.forward(syn, syn.length, tx, 1000);
      if (formatMac(tx.subarray(0, len), 0) === removedMac) onRemoved.push(50000 + s);
    }
    reload(BACKENDS.slice(0, 2));
    let sent = 0;
    for (const port of onRemoved) {
      const ack = tcp(port, TCP_ACK);
      const len = fwd.forward(ack, ack.length, tx, 1100);
      if (len > 0 && formatMac(tx.subarray(0, len), 0) !== removedMac) sent++;
    }
    console.log(`${onRemoved.length} of ${flows} connections on the removed backend: ${sent} moved to the new table at once, ${queries.length} owner queries`);
    expect(onRemoved.length).toBeGreaterThan(0);
    expect(sent).toBe(onRemoved.length);
    expect(queries).toHaveLength(0);
    expect(fwd.counters[G.flowsRemapped]).toBe(onRemoved.length);
  });
});
