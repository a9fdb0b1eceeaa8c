import { describe, expect, it } from 'vitest';
import { BACKEND_BASE, COUNTER_LENGTH, DROPS_BASE, G, GLOBAL_COUNT, SERVICE_BASE } from '../../src/dataplane/contract/counters.js';
import { DROP_REASON_COUNT } from '../../src/packet/drop-reasons.js';

// The counter array is one contract between two processes; two names on one index would make
// two metrics report one number. Appending counters from several changes at once did that once.
describe('counter layout (contract/counters.ts)', () => {
  const entries = Object.entries(G);

  it.each(entries)('%s has an index of its own inside the global block', (name, index) => {
    expect(Number.isInteger(index) && index >= 0 && index < GLOBAL_COUNT).toBe(true);
    const others = entries.filter(([n, i]) => i === index && n !== name).map(([n]) => n);
    expect(others, `${name} shares index ${index}`).toEqual([]);
  });

  it('the blocks follow each other without overlap: globals, drops, services, backends', () => {
    expect(DROPS_BASE).toBe(GLOBAL_COUNT);
    expect(SERVICE_BASE).toBe(DROPS_BASE + DROP_REASON_COUNT);
    expect(BACKEND_BASE).toBeGreaterThan(SERVICE_BASE);
    expect(COUNTER_LENGTH).toBeGreaterThan(BACKEND_BASE);
  });
});
