/**
 * ICMP steering beyond the golden table: an error follows the flow's backend of record even when
 * the table has since moved that 5-tuple elsewhere (and follows the table when nothing is
 * tracked), and the "too big" rate limit refills with time.
 */
import { describe, expect, it } from 'vitest';
import { Forwarder } from '../../src/dataplane/forwarder.js';
import { TooBigLimiter } from '../../src/dataplane/icmp-steer.js';
import { G } from '../../src/dataplane/contract/counters.js';
import { FRAME_SLOT_BYTES } from '../../src/dataplane/contract/limits.js';
import { buildFrame, type FrameSpec } from '../../src/packet/build.js';
import { formatMac } from '../../src/packet/mac.js';
import { TCP_ACK, TCP_SYN } from '../../src/packet/parsed-packet.js';
import { EGRESS_MAC, MPTCP_VIP, ROUTER_MAC, goldenSpec } from '../fixtures/forward-golden.js';

const NOW = 1000;
const CLIENT = '10.99.1.9';
const syn: FrameSpec = { eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src: CLIENT, dst: MPTCP_VIP }, tcp: { sport: 43100, dport: 80, flags: TCP_SYN } };
/** The reply the backend sent (VIP -> client), as a router quotes it in fragmentation needed. */
const quoted = buildFrame({ ipv4: { src: MPTCP_VIP, dst: CLIENT }, tcp: { sport: 80, dport: 43100, flags: TCP_ACK } }).subarray(14, 14 + 28);
const fragNeeded = buildFrame({ eth: { src: ROUTER_MAC, dst: EGRESS_MAC }, ipv4: { src: '10.99.5.1', dst: MPTCP_VIP, flags: 0 }, raw: { protocol: 1, bytes: Uint8Array.from([3, 4, 0, 0, 0, 0, 5, 0, ...quoted]) } });

/** The backend (by next-hop MAC) the frame went to, in dsr-l2 mode. */
function sentTo(fwd: Forwarder, frame: Buffer, tx: Buffer): string {
  const len = fwd.forward(frame, frame.length, tx, NOW);
  expect(len).toBeGreaterThan(0);
  return formatMac(tx, 0);
}

describe('ICMP errors follow the flow', () => {
  const cases = [
    { name: 'tracked flow: its backend of record, whatever the new table says', tracked: true },
    { name: 'no tracked flow: the current table pick for the quoted 5-tuple', tracked: false },
  ];
  it.each(cases)('$name', ({ tracked }) => {
    const fwd = new Forwarder({ flowCapacity: 1024, tcpIdleMs: 300_000, tcpClosingMs: 10_000, udpIdleMs: 30_000 });
    const tx = Buffer.alloc(FRAME_SLOT_BYTES);
    const spec = goldenSpec('dsr-l2');
    fwd.apply(spec);
    const first = tracked ? sentTo(fwd, buildFrame(syn), tx) : '';
    // The table moves every new flow of the service to the backend the flow is not on.
    const svc = spec.services.find((s) => s.name === 'mptcp')!;
    const before = svc.table[0];
    const next = goldenSpec('dsr-l2');
    const nextSvc = next.services.find((s) => s.name === 'mptcp')!;
    const recorded = tracked ? (first === '02:00:00:00:01:09' ? 9 : 10) : before;
    nextSvc.table.fill(recorded === 9 ? 10 : 9);
    next.generation = 2;
    fwd.apply(next);
    const to = sentTo(fwd, fragNeeded, tx);
    const want = tracked ? first : `02:00:00:00:01:${(recorded === 9 ? 10 : 9).toString(16).padStart(2, '0')}`;
    console.log(`${tracked ? 'tracked' : 'untracked'}: error sent to ${to}, table now says ${want === first ? 'elsewhere' : want}`);
    expect(to).toBe(want);
    expect(fwd.counters[G.icmpTooBigForwarded]).toBe(1);
    expect(fwd.counters[G.flowsCreated]).toBe(tracked ? 1 : 0);
  });
});

describe('TooBigLimiter', () => {
  const cases = [
    { name: 'a burst of the rate passes, the next is limited', perSecond: 100, takes: [[0, 100]], want: [100] },
    { name: 'half a second refills half the rate', perSecond: 100, takes: [[0, 100], [500, 100]], want: [100, 50] },
    { name: 'never more than one second of tokens', perSecond: 10, takes: [[0, 10], [60_000, 100]], want: [10, 10] },
  ];
  it.each(cases)('$name', ({ perSecond, takes, want }) => {
    const l = new TooBigLimiter(perSecond);
    const got = takes.map(([at, n]) => {
      let ok = 0;
      for (let i = 0; i < n; i++) if (l.take(10_000 + at)) ok++;
      return ok;
    });
    expect(got).toEqual(want);
  });
});
