import { describe, expect, it } from 'vitest';
import {
  MPTCP_FORM_NAMES,
  MPTCP_STATUS_NAMES,
  MptcpInfo,
  decodeMptcp,
  readToken,
} from '../../src/packet/mptcp-options.js';
import { MPTCP_ACTION_NAMES, mptcpInspect } from '../../src/dataplane/mptcp-tokens.js';
import { mptcpToken } from '../../src/hash/sha-small.js';
import {
  CLIENT_KEY,
  LINUX_SERVER_KEY,
  LINUX_SERVER_TOKEN,
  SERVER_KEY,
  TCP_ACK,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  buildMptcpCases,
  buildTcpFrame,
  hex,
  optMpCapable,
  optMpJoinSyn,
  optNop,
  optTimestamps,
} from '../fixtures/mptcp-frames.js';
import { xorshift32 as xorshift } from '../fixtures/random.js';

const cases = buildMptcpCases();

function onesComplementOk(bytes: Uint8Array, start: number, end: number, initial: number): boolean {
  let sum = initial;
  for (let i = start; i < end; i += 2) sum += (bytes[i] << 8) | (i + 1 < end ? bytes[i + 1] : 0);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum === 0xffff;
}

describe('fixture frames are real frames', () => {
  for (const c of cases) {
    it(`IPv${c.family} ${c.name}: IP and TCP checksums verify, lengths agree`, () => {
      const { frame, parsed: p } = c.built;
      expect(frame.length).toBe(p.payloadOffset + p.payloadLen);
      if (c.family === 4) {
        expect(onesComplementOk(frame, p.l3Offset, p.l3Offset + 20, 0)).toBe(true);
        expect((frame[p.l3Offset + 2] << 8) | frame[p.l3Offset + 3]).toBe(frame.length - p.l3Offset);
      } else {
        expect((frame[p.l3Offset + 4] << 8) | frame[p.l3Offset + 5]).toBe(frame.length - p.l4Offset);
      }
      let pseudo = 6 + (frame.length - p.l4Offset);
      for (let i = 0; i < p.addrLen * 2; i += 2) pseudo += (frame[p.srcAddrOffset + i] << 8) | frame[p.srcAddrOffset + i + 1];
      expect(onesComplementOk(frame, p.l4Offset, frame.length, pseudo)).toBe(true);
      expect(frame[p.l4Offset + 12] >>> 4).toBe((20 + p.tcpOptionsLen) / 4);
    });
  }
});

describe('MPTCP decode: every form, IPv4 and IPv6, exact fields and offsets', () => {
  const info = new MptcpInfo();
  const rel = (abs: number, at: number): number => (abs < 0 ? -1 : abs - at);
  for (const c of cases) {
    it(`IPv${c.family} ${c.name}`, () => {
      const { frame, parsed: p } = c.built;
      const status = decodeMptcp(frame, p.tcpOptionsOffset, p.tcpOptionsLen, p.tcpFlags, p.payloadLen, info);
      expect(MPTCP_STATUS_NAMES[status]).toBe(c.mptcpPart < 0 ? 'absent' : 'ok');
      expect(info.offset).toBe(c.mptcpOffset);
      const e = c.expected;
      const at = c.mptcpOffset;
      expect({
        form: MPTCP_FORM_NAMES[info.form],
        subtype: info.subtype,
        version: info.version,
        length: info.length,
        flags: info.flags,
        senderKey: rel(info.senderKeyOffset, at),
        receiverKey: rel(info.receiverKeyOffset, at),
        dataLevelLength: info.dataLevelLength,
        checksum: info.checksum,
        addressId: info.addressId,
        backup: info.backup,
        token: rel(info.tokenOffset, at),
        nonce: rel(info.nonceOffset, at),
        hmac: rel(info.hmacOffset, at),
        hmacLength: info.hmacLength,
      }).toEqual(e);
      expect(MPTCP_ACTION_NAMES[mptcpInspect(frame, p, info)]).toBe(c.action);
    });
  }

  it('key offsets point at the keys themselves (third ACK: receiver = server key)', () => {
    const c = cases.find((x) => x.name.startsWith('MP_CAPABLE v1 third ACK') && x.family === 6);
    expect(c).toBeDefined();
    if (!c) return;
    const { frame, parsed: p } = c.built;
    decodeMptcp(frame, p.tcpOptionsOffset, p.tcpOptionsLen, p.tcpFlags, p.payloadLen, info);
    expect(Array.from(frame.subarray(info.senderKeyOffset, info.senderKeyOffset + 8))).toEqual(CLIENT_KEY);
    expect(Array.from(frame.subarray(info.receiverKeyOffset, info.receiverKeyOffset + 8))).toEqual(SERVER_KEY);
  });

  it('Linux capture: the token of the third ACK receiver key is the token of the join SYN', () => {
    for (const family of [4, 6]) {
      const ack = cases.find((x) => x.family === family && x.name.includes('third ACK, server key a160'));
      const join = cases.find((x) => x.family === family && x.name.includes('46 4b 47 75'));
      expect(ack && join).toBeTruthy();
      if (!ack || !join) return;
      decodeMptcp(ack.built.frame, ack.built.parsed.tcpOptionsOffset, ack.built.parsed.tcpOptionsLen, TCP_ACK, 0, info);
      expect(Array.from(ack.built.frame.subarray(info.receiverKeyOffset, info.receiverKeyOffset + 8))).toEqual(LINUX_SERVER_KEY);
      expect(mptcpToken(ack.built.frame, info.receiverKeyOffset, info.version)).toBe(LINUX_SERVER_TOKEN);
      decodeMptcp(join.built.frame, join.built.parsed.tcpOptionsOffset, join.built.parsed.tcpOptionsLen, TCP_SYN, 0, info);
      expect(Array.from(join.built.frame.subarray(info.tokenOffset, info.tokenOffset + 4))).toEqual([0x46, 0x4b, 0x47, 0x75]);
      expect(readToken(join.built.frame, info.tokenOffset)).toBe(LINUX_SERVER_TOKEN);
    }
  });
});

const K = hex('0102030405060708');
const K2 = hex('1122334455667788');
const TS = optTimestamps(1, 2);

interface Malformed {
  name: string;
  flags: number;
  area: number[];
  payloadLen?: number;
  status: (typeof MPTCP_STATUS_NAMES)[number];
  action: (typeof MPTCP_ACTION_NAMES)[number];
}

/** Areas are given raw (not padded) so that each layout is exactly what the name says. */
const MALFORMED: Malformed[] = [
  { name: 'TCP option length 0 before MPTCP', flags: TCP_ACK, area: [8, 0, ...optMpCapable({ version: 1, senderKey: K, receiverKey: K2 })], status: 'bad_tcp_options', action: 'malformed' },
  { name: 'TCP option length 1 before MPTCP', flags: TCP_ACK, area: [1, 8, 1, 30, 4, 0, 1], status: 'bad_tcp_options', action: 'malformed' },
  { name: 'option past the header end', flags: TCP_ACK, area: [1, 1, 8, 10, 0, 0, 0, 0], status: 'bad_tcp_options', action: 'malformed' },
  { name: 'truncated kind byte at the end', flags: TCP_ACK, area: [1, 1, 1, 30], status: 'bad_tcp_options', action: 'malformed' },
  { name: 'NOP run then truncated', flags: TCP_SYN, area: [1, 1, 1, 1, 1, 1, 1, 2], status: 'bad_tcp_options', action: 'malformed' },
  { name: 'kind 30 with length exceeding the area', flags: TCP_ACK, area: [1, 1, 30, 20, 0x01, 0x01, ...K], status: 'bad_tcp_options', action: 'malformed' },
  { name: 'MPTCP length 2 (no subtype byte)', flags: TCP_ACK, area: [30, 2, 1, 1], status: 'too_short', action: 'malformed' },
  { name: 'MPTCP length 3 (MP_CAPABLE without flags)', flags: TCP_SYN, area: [30, 3, 0x01, 1], status: 'bad_length', action: 'malformed' },
  { name: 'MP_CAPABLE length 13 on the third ACK', flags: TCP_ACK, area: [30, 13, 0x01, 0x01, ...K, 0, 0, 0, 0], status: 'bad_length', action: 'malformed' },
  { name: 'MP_CAPABLE length 21 on the third ACK', flags: TCP_ACK, area: [30, 21, 0x01, 0x01, ...K, ...K2, 0, 0, 0, 0], status: 'bad_length', action: 'malformed' },
  { name: 'MP_JOIN SYN length 11', flags: TCP_SYN, area: [30, 11, 0x10, 1, 0x46, 0x4b, 0x47, 0x75, 0, 0, 0, 0], status: 'bad_length', action: 'malformed' },
  { name: 'MP_JOIN length 12 on a SYN/ACK', flags: TCP_SYN | TCP_ACK, area: optMpJoinSyn({ backup: false, addressId: 1, token: [1, 2, 3, 4], nonce: 5 }), status: 'bad_length', action: 'malformed' },
  { name: 'MP_JOIN length 12 without SYN', flags: TCP_ACK, area: optMpJoinSyn({ backup: false, addressId: 1, token: [1, 2, 3, 4], nonce: 5 }), status: 'bad_length', action: 'malformed' },
  { name: 'unknown subtype 0xf (private use): ignored, not learned', flags: TCP_ACK, area: [30, 4, 0xf0, 0], status: 'unknown_subtype', action: 'none' },
  { name: 'unknown subtype 0x9', flags: TCP_ACK, area: [30, 6, 0x90, 0, 0, 0, 0, 0], status: 'unknown_subtype', action: 'none' },
  { name: 'B flag set on the third ACK', flags: TCP_ACK, area: optMpCapable({ version: 1, flags: 0x41, senderKey: K, receiverKey: K2 }), status: 'bad_flags', action: 'malformed' },
  { name: 'B flag set on the SYN', flags: TCP_SYN, area: optMpCapable({ version: 1, flags: 0x40 }), status: 'bad_flags', action: 'malformed' },
  { name: 'version 2 on the third ACK', flags: TCP_ACK, area: optMpCapable({ version: 2, senderKey: K, receiverKey: K2 }), status: 'bad_version', action: 'malformed' },
  { name: 'version 15 on a SYN/ACK', flags: TCP_SYN | TCP_ACK, area: optMpCapable({ version: 15, senderKey: K }), status: 'bad_version', action: 'malformed' },
  { name: 'version 2 on a 12-byte SYN', flags: TCP_SYN, area: optMpCapable({ version: 2, senderKey: K }), status: 'bad_version', action: 'malformed' },
  { name: 'v1 SYN carrying a key (length 12)', flags: TCP_SYN, area: optMpCapable({ version: 1, senderKey: K }), status: 'bad_length', action: 'malformed' },
  { name: 'v0 SYN without a key (length 4)', flags: TCP_SYN, area: optMpCapable({ version: 0 }), status: 'bad_length', action: 'malformed' },
  { name: 'SYN/ACK of length 20', flags: TCP_SYN | TCP_ACK, area: optMpCapable({ version: 1, senderKey: K, receiverKey: K2 }), status: 'bad_length', action: 'malformed' },
  { name: '22-byte MP_CAPABLE on a pure ACK (no payload)', flags: TCP_ACK, area: optMpCapable({ version: 1, senderKey: K, receiverKey: K2, dataLevelLength: 0 }), status: 'bad_length', action: 'malformed' },
  { name: '20-byte v1 MP_CAPABLE on a data segment', flags: TCP_ACK | TCP_PSH, payloadLen: 10, area: optMpCapable({ version: 1, senderKey: K, receiverKey: K2 }), status: 'bad_length', action: 'malformed' },
  { name: '22-byte v0 MP_CAPABLE (v0 has no data form)', flags: TCP_ACK, payloadLen: 10, area: optMpCapable({ version: 0, senderKey: K, receiverKey: K2, dataLevelLength: 10 }), status: 'bad_length', action: 'malformed' },
  { name: 'MP_JOIN ACK of length 20', flags: TCP_ACK, area: [30, 20, 0x10, 0, ...K, ...K2], status: 'bad_length', action: 'malformed' },
  { name: 'DSS of length 3', flags: TCP_ACK, area: [30, 3, 0x20, 1], status: 'bad_length', action: 'malformed' },
  { name: 'MP_FASTCLOSE of length 8', flags: TCP_ACK, area: [30, 8, 0x70, 0, 1, 2, 3, 4], status: 'bad_length', action: 'malformed' },
  // well-formed oddities
  { name: 'EOL then garbage is ignored (valid, no MPTCP)', flags: TCP_ACK, area: [1, 0, 30, 1, 0xff], status: 'absent', action: 'none' },
  { name: 'valid third ACK followed by a bad option (Linux already acted on it)', flags: TCP_ACK, area: [...optMpCapable({ version: 1, senderKey: K, receiverKey: K2 }), 8, 0], status: 'ok', action: 'learn_v1' },
  { name: 'SYN offering a future version 2 (RFC 8684 negotiation)', flags: TCP_SYN, area: optMpCapable({ version: 2 }), status: 'ok', action: 'none' },
  { name: 'third ACK with RST: decoded, not learned', flags: TCP_ACK | TCP_RST, area: [1, 1, ...TS, ...optMpCapable({ version: 1, senderKey: K, receiverKey: K2 })], status: 'ok', action: 'none' },
];

describe('MPTCP decode: malformed and odd layouts return a code, never throw', () => {
  const info = new MptcpInfo();
  for (const m of MALFORMED) {
    it(`${m.name} -> ${m.status} / ${m.action}`, () => {
      for (const family of [4, 6] as const) {
        // The frame writer pads the area to 4n; the parsed length is cut back to the exact layout.
        const built = buildTcpFrame({ family, flags: m.flags, options: [m.area], payloadLen: m.payloadLen ?? 0 });
        const p = built.parsed;
        p.tcpOptionsLen = m.area.length;
        const status = decodeMptcp(built.frame, p.tcpOptionsOffset, p.tcpOptionsLen, m.flags, p.payloadLen, info);
        expect(MPTCP_STATUS_NAMES[status]).toBe(m.status);
        expect(info.status).toBe(status);
        if (status !== 0) {
          expect(info.form).toBe(0);
          expect(info.receiverKeyOffset).toBe(-1);
          expect(info.tokenOffset).toBe(-1);
        }
        expect(MPTCP_ACTION_NAMES[mptcpInspect(built.frame, p, info)]).toBe(m.action);
      }
    });
  }

  it('has at least 15 malformed layouts', () => {
    expect(MALFORMED.filter((m) => m.action === 'malformed').length).toBeGreaterThanOrEqual(15);
  });

  it('a reused MptcpInfo carries nothing over from the previous packet', () => {
    const good = buildTcpFrame({ family: 4, flags: TCP_ACK, options: [optNop(), optNop(), TS, optMpCapable({ version: 1, senderKey: K, receiverKey: K2 })] });
    const plain = buildTcpFrame({ family: 4, flags: TCP_ACK, options: [optNop(), optNop(), TS] });
    decodeMptcp(good.frame, good.parsed.tcpOptionsOffset, good.parsed.tcpOptionsLen, TCP_ACK, 0, info);
    expect(info.receiverKeyOffset).toBeGreaterThan(0);
    decodeMptcp(plain.frame, plain.parsed.tcpOptionsOffset, plain.parsed.tcpOptionsLen, TCP_ACK, 0, info);
    expect(info.status).toBe(1);
    expect(info.offset).toBe(-1);
    expect(info.receiverKeyOffset).toBe(-1);
    expect(info.version).toBe(-1);
  });

  it('a UDP packet or a TCP packet without options is not inspected', () => {
    const plain = buildTcpFrame({ family: 4, flags: TCP_ACK, options: [] });
    expect(MPTCP_ACTION_NAMES[mptcpInspect(plain.frame, plain.parsed, info)]).toBe('none');
    const tcp = buildTcpFrame({ family: 4, flags: TCP_ACK, options: [optMpCapable({ version: 1, senderKey: K, receiverKey: K2 })] });
    tcp.parsed.protocol = 17;
    expect(MPTCP_ACTION_NAMES[mptcpInspect(tcp.frame, tcp.parsed, info)]).toBe('none');
  });
});

describe('MPTCP decode: fuzz', () => {
  it('50000 random option areas, flags and payload lengths: no throw, every located field inside the area', () => {
    const rnd = xorshift(0xc0ffee);
    const info = new MptcpInfo();
    const built = buildTcpFrame({ family: 4, flags: TCP_ACK, options: [new Array<number>(40).fill(1)] });
    const { frame, parsed: p } = built;
    const off = p.tcpOptionsOffset;
    const usefulLengths = [2, 3, 4, 8, 11, 12, 13, 16, 20, 22, 24, 30];
    const flagChoices = [TCP_SYN, TCP_SYN | TCP_ACK, TCP_ACK, TCP_ACK | TCP_PSH, TCP_ACK | TCP_RST, 0];
    const failures: string[] = [];
    const seen = new Set<string>();
    for (let n = 0; n < 50_000 && failures.length < 5; n++) {
      const len = rnd() % 41;
      for (let i = 0; i < len; i++) {
        const r = rnd() % 10;
        frame[off + i] =
          r < 2 ? 30 : r === 2 ? 1 : r === 3 ? usefulLengths[rnd() % usefulLengths.length] : r === 4 ? (rnd() & 0xf0) | (rnd() % 3) : rnd() & 0xff;
      }
      p.tcpOptionsLen = len;
      p.tcpFlags = flagChoices[rnd() % flagChoices.length];
      p.payloadLen = rnd() % 3 === 0 ? 0 : rnd() % 1400;
      const end = off + len;
      let status = -1;
      let action = -1;
      try {
        status = decodeMptcp(frame, off, len, p.tcpFlags, p.payloadLen, info);
        action = mptcpInspect(frame, p, info);
      } catch (err) {
        failures.push(`threw ${String(err)} on [${Array.from(frame.subarray(off, end)).join(',')}]`);
        continue;
      }
      seen.add(`${MPTCP_STATUS_NAMES[status]}/${MPTCP_FORM_NAMES[info.form]}/${MPTCP_ACTION_NAMES[action]}`);
      if (!(status >= 0 && status < MPTCP_STATUS_NAMES.length)) failures.push(`status ${status}`);
      if (status === 0) {
        const o = info.offset;
        if (o < off || o + info.length > end) failures.push(`option [${o}, +${info.length}) outside [${off}, ${end})`);
        const fields: [number, number][] = [
          [info.senderKeyOffset, 8],
          [info.receiverKeyOffset, 8],
          [info.tokenOffset, 4],
          [info.nonceOffset, 4],
          [info.hmacOffset, info.hmacLength],
        ];
        for (const [f, size] of fields) {
          if (f !== -1 && (f < o + 2 || f + size > o + info.length)) failures.push(`field at ${f}+${size} outside the option at ${o}`);
        }
      }
    }
    expect(failures).toEqual([]);
    // The fuzz must actually reach the learning and join paths, not only rejections.
    expect([...seen].some((s) => s.endsWith('/learn_v1'))).toBe(true);
    expect([...seen].some((s) => s.endsWith('/join_syn'))).toBe(true);
    expect([...seen].some((s) => s.startsWith('bad_length'))).toBe(true);
  });
});
