import { describe, expect, it } from 'vitest';
import { txPathFromEnv } from '../../src/dataplane/tx-path.js';

describe('txPathFromEnv: the transmit path switches SLUICE_TX and SLUICE_QDISC_BYPASS', () => {
  const cases: Array<{ name: string; env: Record<string, string>; want: { txRing: boolean; qdiscBypass: boolean } | RegExp }> = [
    { name: 'nothing set: sendmmsg, no bypass', env: {}, want: { txRing: false, qdiscBypass: false } },
    { name: 'SLUICE_TX=ring', env: { SLUICE_TX: 'ring' }, want: { txRing: true, qdiscBypass: false } },
    { name: 'SLUICE_TX=sendmmsg', env: { SLUICE_TX: 'sendmmsg' }, want: { txRing: false, qdiscBypass: false } },
    { name: 'bypass on sendmmsg', env: { SLUICE_QDISC_BYPASS: '1' }, want: { txRing: false, qdiscBypass: true } },
    { name: 'bypass on the ring', env: { SLUICE_TX: 'ring', SLUICE_QDISC_BYPASS: '1' }, want: { txRing: true, qdiscBypass: true } },
    { name: 'bypass 0', env: { SLUICE_QDISC_BYPASS: '0' }, want: { txRing: false, qdiscBypass: false } },
    { name: 'an unknown path is an error', env: { SLUICE_TX: 'mmap' }, want: /SLUICE_TX must be "ring" or "sendmmsg", got "mmap"/ },
    { name: 'a bypass value other than 0/1 is an error', env: { SLUICE_QDISC_BYPASS: 'yes' }, want: /SLUICE_QDISC_BYPASS must be 0 or 1, got "yes"/ },
  ];
  it.each(cases)('$name', ({ env, want }) => {
    if (want instanceof RegExp) {
      expect(() => txPathFromEnv(env)).toThrow(want);
    } else {
      expect(txPathFromEnv(env)).toEqual(want);
    }
  });
});
