import { describe, expect, it } from 'vitest';
import { formatMac, macEquals, parseMac, writeMac } from '../../src/packet/mac.js';

describe('MAC addresses', () => {
  it.each([
    { name: 'lowercase', text: 'aa:bb:cc:dd:ee:ff', bytes: [0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff], canonical: 'aa:bb:cc:dd:ee:ff' },
    { name: 'uppercase', text: '02:00:5E:10:0A:01', bytes: [0x02, 0x00, 0x5e, 0x10, 0x0a, 0x01], canonical: '02:00:5e:10:0a:01' },
    { name: 'all zero', text: '00:00:00:00:00:00', bytes: [0, 0, 0, 0, 0, 0], canonical: '00:00:00:00:00:00' },
  ])('parses and formats $name', ({ text, bytes, canonical }) => {
    const mac = parseMac(text);
    expect([...mac]).toEqual(bytes);
    expect(formatMac(mac)).toBe(canonical);
  });

  it.each([
    { name: 'empty', text: '' },
    { name: 'five bytes', text: 'aa:bb:cc:dd:ee' },
    { name: 'seven bytes', text: 'aa:bb:cc:dd:ee:ff:00' },
    { name: 'single-digit byte', text: 'a:bb:cc:dd:ee:ff' },
    { name: 'dash separators', text: 'aa-bb-cc-dd-ee-ff' },
    { name: 'non-hex digit', text: 'aa:bb:cc:dd:ee:fg' },
    { name: 'trailing space', text: 'aa:bb:cc:dd:ee:ff ' },
  ])('rejects $name with an error naming the input', ({ text }) => {
    expect(() => parseMac(text)).toThrow(new RegExp(`invalid MAC address ${JSON.stringify(text).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
  });

  it('formatMac reads at an offset and refuses to read past the end', () => {
    const b = Uint8Array.from([9, 9, 1, 2, 3, 4, 5, 6]);
    expect(formatMac(b, 2)).toBe('01:02:03:04:05:06');
    expect(() => formatMac(b, 3)).toThrow(/need 6 bytes at offset 3/);
  });

  const frame = Uint8Array.from([0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00]);
  it.each([
    { name: 'destination matches', off: 0, mac: '02:00:00:00:00:02', want: true },
    { name: 'source matches', off: 6, mac: '02:00:00:00:00:01', want: true },
    { name: 'last byte differs', off: 0, mac: '02:00:00:00:00:01', want: false },
    { name: 'first byte differs', off: 6, mac: '03:00:00:00:00:01', want: false },
    { name: 'would read past the end', off: 9, mac: '00:00:00:01:08:00', want: false },
    { name: 'negative offset', off: -1, mac: '00:02:00:00:00:00', want: false },
  ])('macEquals: $name', ({ off, mac, want }) => {
    expect(macEquals(frame, off, parseMac(mac))).toBe(want);
  });

  it('writeMac writes exactly six bytes at the offset', () => {
    const b = new Uint8Array(10).fill(0xee);
    writeMac(b, 2, parseMac('01:02:03:04:05:06'));
    expect([...b]).toEqual([0xee, 0xee, 1, 2, 3, 4, 5, 6, 0xee, 0xee]);
  });
});
