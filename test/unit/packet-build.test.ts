import { describe, expect, it } from 'vitest';
import { buildFrameDetailed, ipToBytes, ipv4ToBytes, ipv6ToBytes } from '../../src/packet/build.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('address text -> bytes', () => {
  it.each([
    { name: 'unspecified ::', text: '::', want: '00000000000000000000000000000000' },
    { name: 'loopback ::1', text: '::1', want: '00000000000000000000000000000001' },
    { name: 'trailing :: (2001:db8::)', text: '2001:db8::', want: '20010db8000000000000000000000000' },
    { name: 'middle :: (2001:db8::1)', text: '2001:db8::1', want: '20010db8000000000000000000000001' },
    { name: 'uncompressed with zeros', text: '2001:db8:0:0:1:0:0:1', want: '20010db8000000000001000000000001' },
    { name: 'full form, uppercase', text: 'FE80:0000:0000:0000:0202:B3FF:FE1E:8329', want: 'fe800000000000000202b3fffe1e8329' },
    { name: ':: covering one group', text: '1:2:3:4:5:6::8', want: '00010002000300040005000600000008' },
    { name: 'v4-mapped tail', text: '::ffff:192.0.2.1', want: '00000000000000000000ffffc0000201' },
    { name: 'VIP of the fixtures', text: '2001:db8:100::10', want: '20010db8010000000000000000000010' },
  ])('IPv6 $name', ({ text, want }) => {
    expect(hex(ipv6ToBytes(text))).toBe(want);
    expect(hex(ipToBytes(text))).toBe(want);
  });

  it.each([
    { name: 'VIP', text: '198.51.100.10', want: 'c633640a' },
    { name: 'zeros', text: '0.0.0.0', want: '00000000' },
    { name: 'broadcast', text: '255.255.255.255', want: 'ffffffff' },
  ])('IPv4 $name', ({ text, want }) => {
    expect(hex(ipv4ToBytes(text))).toBe(want);
    expect(hex(ipToBytes(text))).toBe(want);
  });

  it.each([
    { name: 'two ::', text: '2001:db8::1::2', fn: ipv6ToBytes },
    { name: 'zone id', text: 'fe80::1%eth0', fn: ipv6ToBytes },
    { name: 'nine groups', text: '1:2:3:4:5:6:7:8:9', fn: ipv6ToBytes },
    { name: 'IPv4 octet 256', text: '256.1.1.1', fn: ipv4ToBytes },
    { name: 'three octets', text: '1.2.3', fn: ipv4ToBytes },
    { name: 'IPv6 text to the IPv4 parser', text: '::1', fn: ipv4ToBytes },
    { name: 'hostname', text: 'localhost', fn: ipToBytes },
  ])('rejects $name', ({ text, fn }) => {
    expect(() => fn(text)).toThrow(/invalid IP/);
  });
});

describe('buildFrameDetailed layout', () => {
  it.each([
    {
      name: 'untagged IPv4 TCP with 4 option bytes',
      spec: { ipv4: { src: '10.0.0.1', dst: '10.0.0.2' }, tcp: { sport: 1, dport: 2, options: Uint8Array.from([2, 4, 5, 0xb4]) }, payload: 'xyz' },
      l3: 14, l4: 34, payload: 58, len: 61,
    },
    {
      name: 'VLAN IPv6 UDP',
      spec: { vlan: { id: 7 }, ipv6: { src: '::1', dst: '::2' }, udp: { sport: 1, dport: 2 }, payload: 'ab' },
      l3: 18, l4: 58, payload: 66, len: 68,
    },
    {
      name: 'IPv6 with an 8-byte hop-by-hop header, TCP options padded 3 -> 4',
      spec: { ipv6: { src: '::1', dst: '::2', extensionHeaders: [{ type: 0 }] }, tcp: { sport: 1, dport: 2, options: Uint8Array.from([1, 1, 1]) } },
      l3: 14, l4: 62, payload: 86, len: 86,
    },
  ])('$name', ({ spec, l3, l4, payload, len }) => {
    const b = buildFrameDetailed(spec);
    expect([b.l3Offset, b.l4Offset, b.payloadOffset, b.frame.length]).toEqual([l3, l4, payload, len]);
  });

  it.each([
    { name: 'neither ipv4 nor ipv6', spec: { tcp: { sport: 1, dport: 2 } }, msg: /exactly one of ipv4, ipv6/ },
    { name: 'both tcp and udp', spec: { ipv4: { src: '10.0.0.1', dst: '10.0.0.2' }, tcp: { sport: 1, dport: 2 }, udp: { sport: 1, dport: 2 } }, msg: /exactly one of tcp, udp, raw/ },
  ])('refuses a spec with $name', ({ spec, msg }) => {
    expect(() => buildFrameDetailed(spec)).toThrow(msg);
  });
});
