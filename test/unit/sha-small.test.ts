import { createHash, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { mptcpToken, sha1Key8, sha256Key8, tokenAndIdsnV0, tokenAndIdsnV1 } from '../../src/hash/sha-small.js';

function hexOf(words: Uint32Array, n: number): string {
  let s = '';
  for (let i = 0; i < n; i++) s += words[i].toString(16).padStart(8, '0');
  return s;
}

function keyBytes(hex: string): Uint8Array {
  return Uint8Array.from(Buffer.from(hex, 'hex'));
}

describe('sha-small: docs/PROTOCOLS.md vectors', () => {
  const vectors = [
    { name: 'key 0102030405060708, v1', key: '0102030405060708', version: 1, token: '66840dda', idsn: 'f5a101d3d29d6f72' },
    { name: 'key 0102030405060708, v0', key: '0102030405060708', version: 0, token: 'dd5783bc', idsn: '3a95ed6e4ebb4ad5' },
    { name: 'Linux capture: server key a160a0cf9ac55a3d, v1', key: 'a160a0cf9ac55a3d', version: 1, token: '464b4775', idsn: null },
  ];
  for (const v of vectors) {
    it(v.name, () => {
      const frame = keyBytes(v.key);
      const out = new Uint32Array(3);
      if (v.version === 1) tokenAndIdsnV1(frame, 0, out);
      else tokenAndIdsnV0(frame, 0, out);
      expect(out[0].toString(16).padStart(8, '0')).toBe(v.token);
      if (v.idsn !== null) expect(hexOf(out.subarray(1), 2)).toBe(v.idsn);
      expect(mptcpToken(frame, 0, v.version)).toBe(parseInt(v.token, 16));
    });
  }

  it('the token equals the 4 digest bytes read big-endian (as carried by MP_JOIN)', () => {
    const frame = keyBytes('a160a0cf9ac55a3d');
    const join = Uint8Array.from([0x46, 0x4b, 0x47, 0x75]);
    const wire = ((join[0] << 24) | (join[1] << 16) | (join[2] << 8) | join[3]) >>> 0;
    expect(mptcpToken(frame, 0, 1)).toBe(wire);
  });
});

describe('sha-small: against node:crypto', () => {
  it('1200 random keys at random offsets: SHA-256, SHA-1, tokens and IDSNs all match, frame untouched', () => {
    const d256 = new Uint32Array(8);
    const d1 = new Uint32Array(5);
    const t = new Uint32Array(3);
    for (let n = 0; n < 1200; n++) {
      const frame = Uint8Array.from(randomBytes(96));
      const before = Uint8Array.from(frame);
      const off = n % 89;
      const key = frame.subarray(off, off + 8);
      const ref256 = createHash('sha256').update(key).digest();
      const ref1 = createHash('sha1').update(key).digest();

      sha256Key8(frame, off, d256);
      expect(hexOf(d256, 8)).toBe(ref256.toString('hex'));
      sha1Key8(frame, off, d1);
      expect(hexOf(d1, 5)).toBe(ref1.toString('hex'));

      tokenAndIdsnV1(frame, off, t);
      expect(t[0]).toBe(ref256.readUInt32BE(0));
      expect(t[1]).toBe(ref256.readUInt32BE(24));
      expect(t[2]).toBe(ref256.readUInt32BE(28));
      expect(mptcpToken(frame, off, 1)).toBe(ref256.readUInt32BE(0));

      tokenAndIdsnV0(frame, off, t);
      expect(t[0]).toBe(ref1.readUInt32BE(0));
      expect(t[1]).toBe(ref1.readUInt32BE(12));
      expect(t[2]).toBe(ref1.readUInt32BE(16));
      expect(mptcpToken(frame, off, 0)).toBe(ref1.readUInt32BE(0));

      expect(frame).toEqual(before);
    }
  });

  const edges = [
    { name: 'all-zero key', key: '0000000000000000' },
    { name: 'all-ones key', key: 'ffffffffffffffff' },
    { name: 'high bit only', key: '8000000000000000' },
    { name: 'low bit only', key: '0000000000000001' },
  ];
  for (const e of edges) {
    it(`edge key: ${e.name}`, () => {
      const frame = keyBytes(e.key);
      const d256 = new Uint32Array(8);
      const d1 = new Uint32Array(5);
      sha256Key8(frame, 0, d256);
      sha1Key8(frame, 0, d1);
      expect(hexOf(d256, 8)).toBe(createHash('sha256').update(frame).digest('hex'));
      expect(hexOf(d1, 5)).toBe(createHash('sha1').update(frame).digest('hex'));
    });
  }
});
