/**
 * Control-plane authentication: the truncated HMAC, the IPsec-style anti-replay window, and the
 * per-sender guard (incarnations, timestamp skew). Pure, no sockets, no clocks.
 */
import { describe, expect, it } from 'vitest';
import { MAC_BYTES, MessageAuthenticator, ReplayGuard, ReplayWindow, type ReplayVerdict, type WindowVerdict } from '../../src/control/auth.js';

const KEY = Buffer.alloc(32, 0x42);

describe('MessageAuthenticator', () => {
  const data = Buffer.from('header and body bytes of one control message');
  const auth = new MessageAuthenticator(KEY);
  const mac = Buffer.alloc(MAC_BYTES);
  auth.sign(data, 0, data.length, mac, 0);

  const cases: { name: string; verify: () => boolean; want: boolean }[] = [
    { name: 'own MAC verifies', verify: () => auth.verify(data, 0, data.length, mac, 0), want: true },
    { name: 'another key does not', verify: () => new MessageAuthenticator(Buffer.alloc(32, 0x43)).verify(data, 0, data.length, mac, 0), want: false },
    {
      name: 'a flipped data byte does not',
      verify: () => {
        const d = Buffer.from(data);
        d[5] ^= 1;
        return auth.verify(d, 0, d.length, mac, 0);
      },
      want: false,
    },
    {
      name: 'a flipped MAC byte does not',
      verify: () => {
        const m = Buffer.from(mac);
        m[15] ^= 0x80;
        return auth.verify(data, 0, data.length, m, 0);
      },
      want: false,
    },
    { name: 'a MAC that runs past the buffer does not', verify: () => auth.verify(data, 0, data.length, mac, 4), want: false },
    { name: 'a shorter span does not', verify: () => auth.verify(data, 0, data.length - 1, mac, 0), want: false },
  ];
  for (const c of cases) it(c.name, () => expect(c.verify()).toBe(c.want));

  it('refuses keys shorter than 32 bytes', () => {
    expect(() => new MessageAuthenticator(Buffer.alloc(31))).toThrow(/at least 32/);
  });

  it('keeps its own copy of the key', () => {
    const k = Buffer.alloc(32, 9);
    const a = new MessageAuthenticator(k);
    const m = Buffer.alloc(MAC_BYTES);
    a.sign(data, 0, data.length, m, 0);
    k.fill(0);
    expect(a.verify(data, 0, data.length, m, 0)).toBe(true);
  });
});

describe('ReplayWindow', () => {
  type Step = [seq: bigint, want: WindowVerdict, commit?: false];
  const cases: { name: string; size?: number; prefill?: bigint[]; steps: Step[] }[] = [
    { name: 'first sequence of any value is accepted', steps: [[5000n, 'ok']] },
    { name: 'the same sequence twice is a duplicate', steps: [[7n, 'ok'], [7n, 'duplicate']] },
    { name: 'an unseen sequence below the top is accepted once', steps: [[10n, 'ok'], [8n, 'ok'], [8n, 'duplicate'], [9n, 'ok']] },
    {
      name: 'size-1 behind is inside, size behind is too old',
      size: 32,
      steps: [[100n, 'ok'], [69n, 'ok'], [68n, 'too-old']],
    },
    {
      name: 'a check without commit changes nothing',
      steps: [[1n, 'ok'], [2n, 'ok', false], [2n, 'ok'], [2n, 'duplicate']],
    },
    {
      name: 'sliding by less than the window keeps the bits still inside and frees the rest',
      size: 32,
      prefill: Array.from({ length: 32 }, (_, i) => BigInt(i)), // 0..31 seen
      steps: [
        [40n, 'ok'],
        [35n, 'ok'], // never seen
        [31n, 'duplicate'],
        [9n, 'duplicate'], // 31 behind: still inside, seen
        [8n, 'too-old'], // 32 behind
      ],
    },
    {
      name: 'a jump of more than the window clears it',
      size: 64,
      prefill: [1n, 2n, 3n],
      steps: [[2003n, 'ok'], [1990n, 'ok'], [1990n, 'duplicate'], [1939n, 'too-old']],
    },
    {
      name: 'u64 extremes',
      steps: [[0xffff_ffff_ffff_fffen, 'ok'], [0xffff_ffff_ffff_ffffn, 'ok'], [0xffff_ffff_ffff_ffffn, 'duplicate'], [0xffff_ffff_ffff_fffen, 'duplicate']],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const w = new ReplayWindow(c.size ?? 1024);
      for (const s of c.prefill ?? []) w.commit(s);
      for (const [seq, want, commit] of c.steps) {
        expect(w.check(seq), `seq ${seq}`).toBe(want);
        if (want === 'ok' && commit !== false) w.commit(seq);
      }
    });
  }

  it('rejects sizes that are not powers of two in 32..65536', () => {
    for (const bad of [0, 16, 100, 1 << 17]) expect(() => new ReplayWindow(bad), String(bad)).toThrow(RangeError);
  });
});

describe('ReplayGuard', () => {
  const NOW = 1_700_000_000_000;
  const A = 0xa1;
  type Msg = { inc: bigint; seq: bigint; ts: number; want: ReplayVerdict; commit?: false };
  const cases: { name: string; skewMs?: number; msgs: Msg[] }[] = [
    { name: 'timestamp exactly skew in the past or future is fresh', msgs: [{ inc: 1n, seq: 1n, ts: NOW - 5000, want: 'ok' }, { inc: 1n, seq: 2n, ts: NOW + 5000, want: 'ok' }] },
    { name: 'timestamp beyond skew in the past is stale', msgs: [{ inc: 1n, seq: 1n, ts: NOW - 5001, want: 'stale' }] },
    { name: 'timestamp beyond skew in the future is stale', msgs: [{ inc: 1n, seq: 1n, ts: NOW + 5001, want: 'stale' }] },
    { name: 'a narrower skew window applies', skewMs: 100, msgs: [{ inc: 1n, seq: 1n, ts: NOW - 101, want: 'stale' }] },
    {
      name: 'a new incarnation with a newer timestamp resets the window',
      msgs: [
        { inc: 1n, seq: 900n, ts: NOW - 10, want: 'ok' },
        { inc: 2n, seq: 1n, ts: NOW - 5, want: 'ok' },
        { inc: 2n, seq: 1n, ts: NOW - 5, want: 'replayed' },
        { inc: 2n, seq: 2n, ts: NOW - 4, want: 'ok' },
      ],
    },
    {
      name: 'a new incarnation with an older or equal timestamp is a replay',
      msgs: [
        { inc: 1n, seq: 1n, ts: NOW, want: 'ok' },
        { inc: 2n, seq: 1n, ts: NOW, want: 'replayed' },
        { inc: 2n, seq: 1n, ts: NOW - 1, want: 'replayed' },
      ],
    },
    {
      name: 'the previous incarnation is refused once a newer one was accepted',
      msgs: [
        { inc: 1n, seq: 5n, ts: NOW - 100, want: 'ok' },
        { inc: 2n, seq: 1n, ts: NOW - 50, want: 'ok' },
        { inc: 1n, seq: 6n, ts: NOW - 99, want: 'replayed' },
      ],
    },
    {
      name: 'check alone does not adopt an incarnation',
      msgs: [
        { inc: 1n, seq: 1n, ts: NOW - 10, want: 'ok' },
        { inc: 2n, seq: 1n, ts: NOW - 5, want: 'ok', commit: false },
        { inc: 1n, seq: 2n, ts: NOW - 4, want: 'ok' },
      ],
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const g = new ReplayGuard({ skewMs: c.skewMs });
      for (const m of c.msgs) {
        expect(g.check(A, m.inc, m.seq, m.ts, NOW), `inc ${m.inc} seq ${m.seq}`).toBe(m.want);
        if (m.want === 'ok' && m.commit !== false) g.commit(A, m.inc, m.seq, m.ts);
      }
    });
  }

  it('keeps senders apart', () => {
    const g = new ReplayGuard();
    g.commit(1, 9n, 10n, NOW);
    expect(g.check(2, 9n, 10n, NOW, NOW)).toBe('ok');
    expect(g.check(1, 9n, 10n, NOW, NOW)).toBe('replayed');
    expect(g.incarnationOf(1)).toBe(9n);
    expect(g.topOf(1)).toBe(10n);
    expect(g.topOf(2)).toBe(-1n);
  });
});
