import { describe, expect, it } from 'vitest';
import { ServiceTable } from '../../src/dataplane/service-table.js';
import { ipToBytes } from '../../src/packet/address.js';
import { captureFilter, IdAllocator } from '../../src/runtime/generation.js';
import { parseMac } from '../../src/packet/mac.js';

function frameWith(addr: string): { buf: Uint8Array; off: number; len: number } {
  const b = ipToBytes(addr);
  const buf = new Uint8Array(64);
  buf.set(b, 30);
  return { buf, off: 30, len: b.length };
}

describe('ServiceTable', () => {
  const t = new ServiceTable(16);
  t.add(ipToBytes('198.51.100.10'), 6, 80, 1);
  t.add(ipToBytes('198.51.100.10'), 17, 53, 2);
  t.add(ipToBytes('198.51.100.10'), 6, 0, 3);
  t.add(ipToBytes('2001:db8:100::10'), 6, 80, 4);
  t.add(ipToBytes('198.51.100.11'), 17, 0, 5);

  it.each([
    { name: 'exact port TCP v4', addr: '198.51.100.10', proto: 6, port: 80, want: 1 },
    { name: 'exact port UDP v4', addr: '198.51.100.10', proto: 17, port: 53, want: 2 },
    { name: 'all-ports TCP catches other ports', addr: '198.51.100.10', proto: 6, port: 443, want: 3 },
    { name: 'no UDP service on port 54', addr: '198.51.100.10', proto: 17, port: 54, want: -1 },
    { name: 'IPv6 exact', addr: '2001:db8:100::10', proto: 6, port: 80, want: 4 },
    { name: 'IPv6 other port', addr: '2001:db8:100::10', proto: 6, port: 81, want: -1 },
    { name: 'IPv6 address whose first word equals an IPv4 VIP is not confused', addr: 'c633:640a::', proto: 6, port: 80, want: -1 },
    { name: 'all-ports UDP', addr: '198.51.100.11', proto: 17, port: 1, want: 5 },
    { name: 'unknown VIP', addr: '198.51.100.12', proto: 6, port: 80, want: -1 },
  ])('$name', ({ addr, proto, port, want }) => {
    const f = frameWith(addr);
    expect(t.match(f.buf, f.off, f.len, proto, port)).toBe(want);
  });

  it('holds 1000 services and finds each', () => {
    const big = new ServiceTable(1000);
    for (let i = 0; i < 1000; i++) big.add(ipToBytes(`10.0.${i >> 8}.${i & 255}`), 6, 1000 + i, i);
    for (let i = 0; i < 1000; i++) {
      const f = frameWith(`10.0.${i >> 8}.${i & 255}`);
      expect(big.match(f.buf, f.off, f.len, 6, 1000 + i)).toBe(i);
      expect(big.match(f.buf, f.off, f.len, 6, 999)).toBe(-1);
    }
  });
});

describe('IdAllocator', () => {
  it('keeps ids stable while keys live and does not reuse a released id at once', () => {
    const a = new IdAllocator(4);
    expect(a.acquire('x')).toBe(0);
    expect(a.acquire('y')).toBe(1);
    expect(a.acquire('x')).toBe(0);
    a.retain(new Set(['y']));
    expect(a.acquire('z')).toBe(2);
    expect(a.acquire('w')).toBe(3);
    expect(a.acquire('v')).toBe(0);
    expect(() => a.acquire('u')).toThrow(/more than 4/);
  });
});

describe('captureFilter', () => {
  const mac = parseMac('02:00:00:00:00:02');
  it.each([
    { name: 'no local addresses', local: [] as string[], want: 'ether dst 02:00:00:00:00:02 and not ether src 02:00:00:00:00:02 and not arp' },
    {
      name: 'host traffic to local addresses of both families is left to the kernel',
      local: ['10.99.0.2', 'fe80::1', 'fd00:99::2'],
      want: 'ether dst 02:00:00:00:00:02 and not ether src 02:00:00:00:00:02 and not arp and not (ip and len >= 34 and (dst host 10.99.0.2)) and not (ip6 and len >= 54 and (dst host fe80::1 or dst host fd00:99::2))',
    },
  ])('$name', ({ local, want }) => {
    expect(captureFilter(mac, [mac], local)).toBe(want);
  });
});
