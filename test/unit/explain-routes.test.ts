/**
 * GET /explain's query checking and the /flows "not configured" check (src/observe/admin.ts),
 * as pure functions: what reaches the data plane is always a well-formed query.
 */
import { describe, expect, it } from 'vitest';
import { explainQueryOf, unconfigured } from '../../src/observe/admin.js';
import type { SluiceConfig } from '../../src/config/types.js';

const q = (s: string): URLSearchParams => new URLSearchParams(s);

describe('explainQueryOf', () => {
  it.each([
    { name: 'all of it', qs: 'protocol=udp&vip=198.51.100.10&port=53&client=192.0.2.7&clientPort=5353&token=0x464b4775', want: { protocol: 'udp', vip: '198.51.100.10', port: 53, client: '192.0.2.7', clientPort: 5353, token: 0x464b4775 } },
    { name: 'tcp by default, no client port', qs: 'vip=198.51.100.10&port=80&client=192.0.2.7', want: { protocol: 'tcp', vip: '198.51.100.10', port: 80, client: '192.0.2.7' } },
  ])('accepts $name', ({ qs, want }) => {
    expect(explainQueryOf(q(qs))).toEqual(want);
  });

  it.each([
    { name: 'no vip', qs: 'port=80&client=192.0.2.7', want: 'vip is required' },
    { name: 'no client', qs: 'vip=198.51.100.10&port=80', want: 'client is required' },
    { name: 'client not an address', qs: 'vip=198.51.100.10&port=80&client=example.com', want: 'client "example.com" is not an IPv4 or IPv6 address' },
    { name: 'port out of range', qs: 'vip=198.51.100.10&port=70000&client=192.0.2.7', want: 'port must be an integer 0..65535' },
    { name: 'no port', qs: 'vip=198.51.100.10&client=192.0.2.7', want: 'port must be an integer 0..65535' },
    { name: 'client port not a number', qs: 'vip=198.51.100.10&port=80&client=192.0.2.7&clientPort=x', want: 'clientPort must be an integer 0..65535' },
    { name: 'sctp', qs: 'protocol=sctp&vip=198.51.100.10&port=80&client=192.0.2.7', want: 'protocol must be tcp or udp, got "sctp"' },
    { name: 'token too long', qs: 'vip=198.51.100.10&port=80&client=192.0.2.7&token=123456789', want: 'token must be up to 8 hex digits (the MPTCP connection token)' },
  ])('refuses $name', ({ qs, want }) => {
    expect(explainQueryOf(q(qs))).toBe(want);
  });
});

describe('unconfigured (flows filters)', () => {
  const config = {
    services: [
      { vip: '198.51.100.10', backends: [{ address: '10.1.0.11' }] },
      { vip: '2001:db8:100::10', backends: [{ address: 'fd00::11' }] },
    ],
  } as unknown as SluiceConfig;
  it.each([
    { name: 'a configured VIP', f: { vip: '198.51.100.10' }, want: null },
    { name: 'an IPv6 VIP written long', f: { vip: '2001:0db8:0100:0000:0000:0000:0000:0010' }, want: null },
    { name: 'a configured backend', f: { backend: 'fd00::11' }, want: null },
    { name: 'only a client', f: { client: '192.0.2.1' }, want: null },
    { name: 'an unknown VIP', f: { vip: '203.0.113.5' }, want: 'no service has VIP 203.0.113.5 (configured VIPs: 198.51.100.10, 2001:db8:100::10)' },
    { name: 'an unknown backend', f: { backend: '10.9.9.9' }, want: 'no service has backend 10.9.9.9' },
  ])('$name', ({ f, want }) => {
    expect(unconfigured(config, { limit: 10, ...f })).toBe(want);
  });
});
