import { describe, expect, it } from 'vitest';
import {
  FIND_MALFORMED,
  FIND_NOT_FOUND,
  OPT_BAD_AREA,
  OPT_BAD_LENGTH,
  OPT_CODE_NAMES,
  OPT_OK,
  OPT_OVERRUN,
  OPT_TRUNCATED,
  TcpOptionCursor,
  checkOptions,
  findOption,
} from '../../src/packet/tcp-options.js';
import { xorshift32 as xorshift } from '../fixtures/random.js';

/** Puts `area` at offset 7 of a frame, followed by bytes that look like options, to catch over-reads. */
function place(area: readonly number[]): { frame: Uint8Array; off: number; len: number } {
  const frame = new Uint8Array(7 + area.length + 8);
  frame.fill(0xee);
  frame.set([30, 4, 0x01, 0x01, 8, 2, 30, 2], 7 + area.length);
  frame.set(area, 7);
  return { frame, off: 7, len: area.length };
}

const TS = [8, 10, 1, 2, 3, 4, 5, 6, 7, 8];

interface LayoutCase {
  name: string;
  area: number[];
  code: number;
  /** Expected findOption for kind 8 (timestamps), relative to the area (or -1 / -2). */
  findTs: number;
  /** Expected kinds visited by the cursor. */
  kinds: number[];
}

const LAYOUTS: LayoutCase[] = [
  { name: 'empty area', area: [], code: OPT_OK, findTs: FIND_NOT_FOUND, kinds: [] },
  { name: 'NOP NOP timestamps', area: [1, 1, ...TS], code: OPT_OK, findTs: 2, kinds: [1, 1, 8] },
  { name: 'MSS then EOL padding', area: [2, 4, 5, 0xb4, 0, 0, 0, 0], code: OPT_OK, findTs: FIND_NOT_FOUND, kinds: [2] },
  { name: 'EOL then garbage is ignored (valid)', area: [0, 8, 0, 0xff, 30], code: OPT_OK, findTs: FIND_NOT_FOUND, kinds: [] },
  { name: 'EOL then a well-formed timestamps option is not seen', area: [0, 1, ...TS, 0], code: OPT_OK, findTs: FIND_NOT_FOUND, kinds: [] },
  { name: 'option exactly filling the area', area: TS, code: OPT_OK, findTs: 0, kinds: [8] },
  { name: 'unknown kind 254 with a sane length', area: [254, 4, 0, 0, ...TS, 0, 0], code: OPT_OK, findTs: 4, kinds: [254, 8] },
  { name: 'length 0', area: [8, 0, 1, 1], code: OPT_BAD_LENGTH, findTs: FIND_MALFORMED, kinds: [] },
  { name: 'length 1', area: [1, 3, 1, 1], code: OPT_BAD_LENGTH, findTs: FIND_MALFORMED, kinds: [1] },
  { name: 'option past the end of the header', area: [1, 1, 8, 10, 1, 2, 3, 4], code: OPT_OVERRUN, findTs: FIND_MALFORMED, kinds: [1, 1] },
  { name: 'truncated: kind byte alone at the end', area: [1, 1, 1, 3], code: OPT_TRUNCATED, findTs: FIND_MALFORMED, kinds: [1, 1, 1] },
  { name: 'NOP run then truncated', area: [1, 1, 1, 1, 1, 1, 1, 8], code: OPT_TRUNCATED, findTs: FIND_MALFORMED, kinds: [1, 1, 1, 1, 1, 1, 1] },
  { name: 'kind 30 with a length exceeding the area', area: [30, 20, 0x01, 0x01, 0, 0, 0, 0], code: OPT_OVERRUN, findTs: FIND_MALFORMED, kinds: [] },
  { name: 'length 255', area: [3, 255, 7, 0], code: OPT_OVERRUN, findTs: FIND_MALFORMED, kinds: [] },
  { name: 'found before a later malformation (Linux acts on it too)', area: [...TS, 3, 0], code: OPT_BAD_LENGTH, findTs: 0, kinds: [8] },
  { name: 'malformation before the option hides it', area: [3, 1, ...TS], code: OPT_BAD_LENGTH, findTs: FIND_MALFORMED, kinds: [] },
  { name: 'valid option, then EOL, then a bad length after EOL is ignored', area: [2, 4, 5, 0xb4, 0, 8, 0, 0], code: OPT_OK, findTs: FIND_NOT_FOUND, kinds: [2] },
];

describe('TCP option walker: layouts', () => {
  for (const c of LAYOUTS) {
    it(`${c.name} -> ${OPT_CODE_NAMES[c.code]}`, () => {
      const { frame, off, len } = place(c.area);
      expect(checkOptions(frame, off, len)).toBe(c.code);
      const found = findOption(frame, off, len, 8);
      expect(found).toBe(c.findTs >= 0 ? off + c.findTs : c.findTs);
      const cur = new TcpOptionCursor();
      cur.reset(frame, off, len);
      const kinds: number[] = [];
      while (cur.next()) {
        kinds.push(cur.kind);
        expect(cur.offset + cur.size).toBeLessThanOrEqual(off + len);
      }
      expect(kinds).toEqual(c.kinds);
      expect(cur.status).toBe(c.code);
    });
  }
});

describe('TCP option walker: impossible areas', () => {
  const frame = new Uint8Array(60);
  const cases: { name: string; off: number; len: number }[] = [
    { name: 'negative offset', off: -1, len: 4 },
    { name: 'negative length', off: 0, len: -4 },
    { name: 'longer than 40 bytes', off: 0, len: 44 },
    { name: 'runs past the end of the frame', off: 40, len: 24 },
  ];
  for (const c of cases) {
    it(`${c.name} -> bad_area`, () => {
      expect(checkOptions(frame, c.off, c.len)).toBe(OPT_BAD_AREA);
      expect(findOption(frame, c.off, c.len, 8)).toBe(FIND_MALFORMED);
      const cur = new TcpOptionCursor();
      cur.reset(frame, c.off, c.len);
      expect(cur.next()).toBe(false);
      expect(cur.status).toBe(OPT_BAD_AREA);
    });
  }
});

/** Independent reference: list of [offset, kind] and the final code, written plainly. */
function referenceWalk(area: Uint8Array): { opts: [number, number][]; code: number } {
  const opts: [number, number][] = [];
  let i = 0;
  while (i < area.length) {
    const kind = area[i];
    if (kind === 0) return { opts, code: OPT_OK };
    if (kind === 1) {
      opts.push([i, 1]);
      i += 1;
      continue;
    }
    if (i + 1 === area.length) return { opts, code: OPT_TRUNCATED };
    const size = area[i + 1];
    if (size < 2) return { opts, code: OPT_BAD_LENGTH };
    if (size > area.length - i) return { opts, code: OPT_OVERRUN };
    opts.push([i, kind]);
    i += size;
  }
  return { opts, code: OPT_OK };
}

describe('TCP option walker: fuzz against a reference walker', () => {
  it('50000 random option areas: same code and same first match as the reference, never throws', () => {
    const rnd = xorshift(0x5eed);
    const frame = new Uint8Array(64);
    const cur = new TcpOptionCursor();
    const failures: string[] = [];
    for (let n = 0; n < 50_000 && failures.length < 5; n++) {
      const len = rnd() % 41;
      const off = 64 - len; // the area ends exactly at the end of the frame: no slack to over-read
      for (let i = 0; i < len; i++) {
        const r = rnd() % 8;
        // bias towards the interesting bytes: NOP, EOL, small lengths, kind 30
        frame[off + i] = r === 0 ? 1 : r === 1 ? 30 : r === 2 ? rnd() % 4 : r === 3 ? (rnd() % 24) + 2 : rnd() & 0xff;
      }
      const area = frame.subarray(off, off + len);
      const what = `area [${Array.from(area).join(',')}]`;
      const ref = referenceWalk(area);
      const code = checkOptions(frame, off, len);
      if (code !== ref.code) failures.push(`${what}: code ${code}, reference ${ref.code}`);
      for (const kind of [8, 30]) {
        const first = ref.opts.find(([, k]) => k === kind);
        const want = first ? off + first[0] : ref.code === OPT_OK ? FIND_NOT_FOUND : FIND_MALFORMED;
        const got = findOption(frame, off, len, kind);
        if (got !== want) failures.push(`${what}: findOption(${kind}) ${got}, reference ${want}`);
      }
      cur.reset(frame, off, len);
      let count = 0;
      while (cur.next()) {
        if (count >= ref.opts.length || cur.offset !== off + ref.opts[count][0]) failures.push(`${what}: cursor option ${count} at ${cur.offset}`);
        count++;
      }
      if (count !== ref.opts.length || cur.status !== ref.code) failures.push(`${what}: cursor saw ${count} options, status ${cur.status}`);
    }
    expect(failures).toEqual([]);
  });
});
