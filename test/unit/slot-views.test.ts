import { describe, expect, it } from 'vitest';
import { slotViews } from '../../src/dataplane/slot-views.js';

describe('slotViews: one view per slot over a backing buffer', () => {
  const layouts = [
    { name: 'four slots of 16 bytes fill the buffer', bytes: 64, slots: 4, slotBytes: 16 },
    { name: 'three slots of 10 bytes leave a tail unused', bytes: 32, slots: 3, slotBytes: 10 },
    { name: 'no slots', bytes: 8, slots: 0, slotBytes: 8 },
  ];
  for (const c of layouts) {
    it(c.name, () => {
      const backing = Buffer.alloc(c.bytes);
      const views = slotViews(backing, c.slots, c.slotBytes);
      expect(views).toHaveLength(c.slots);
      views.forEach((v, i) => {
        expect(v.length).toBe(c.slotBytes);
        // A view is the backing buffer's memory at its slot, not a copy.
        v[0] = i + 1;
        expect(backing[i * c.slotBytes]).toBe(i + 1);
        expect(v.byteOffset - backing.byteOffset).toBe(i * c.slotBytes);
      });
    });
  }

  const refused = [
    { name: 'more slots than the buffer holds', bytes: 63, slots: 4, slotBytes: 16, message: /need 64 bytes; the buffer has 63/ },
    { name: 'a zero slot size', bytes: 64, slots: 4, slotBytes: 0, message: /not a layout/ },
    { name: 'a fractional slot count', bytes: 64, slots: 1.5, slotBytes: 8, message: /not a layout/ },
  ];
  for (const c of refused) {
    it(`refuses ${c.name}`, () => {
      expect(() => slotViews(Buffer.alloc(c.bytes), c.slots, c.slotBytes)).toThrow(c.message);
    });
  }
});
