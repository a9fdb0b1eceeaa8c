import { describe, expect, it } from 'vitest';
import { fairness, parseWeights } from '../../scripts/lib/fairness.js';

const counts = (o: Record<string, number>): Map<string, number> => new Map(Object.entries(o));

describe('load fairness: shares judged against configured weights', () => {
  const cases: {
    name: string;
    counts: Record<string, number>;
    weights?: Record<string, number>;
    expected?: number;
    want: Record<string, { expectedShare: number; deviationPct: number; unexpected?: boolean }>;
    basis: 'weights' | 'equal';
    fairOver: number;
    maxDeviationPct: number;
  }[] = [
    {
      name: 'a weight-2 backend getting twice the others is exactly fair',
      counts: { b1: 500, b2: 250, b3: 250 },
      weights: { b1: 2, b2: 1, b3: 1 },
      want: { b1: { expectedShare: 0.5, deviationPct: 0 }, b2: { expectedShare: 0.25, deviationPct: 0 }, b3: { expectedShare: 0.25, deviationPct: 0 } },
      basis: 'weights',
      fairOver: 3,
      maxDeviationPct: 0,
    },
    {
      name: 'without weights the same counts are judged against an equal split',
      counts: { b1: 500, b2: 250, b3: 250 },
      want: { b1: { expectedShare: 0.333, deviationPct: 50 }, b2: { expectedShare: 0.333, deviationPct: -25 }, b3: { expectedShare: 0.333, deviationPct: -25 } },
      basis: 'equal',
      fairOver: 3,
      maxDeviationPct: 50,
    },
    {
      name: 'a weighted backend that got nothing shows -100%',
      counts: { b1: 100 },
      weights: { b1: 1, b2: 1 },
      want: { b1: { expectedShare: 0.5, deviationPct: 100 }, b2: { expectedShare: 0.5, deviationPct: -100 } },
      basis: 'weights',
      fairOver: 2,
      maxDeviationPct: 100,
    },
    {
      name: 'a backend with weight 0 (drained) that still got traffic is unexpected',
      counts: { b1: 90, b2: 10 },
      weights: { b1: 1, b2: 0 },
      want: { b1: { expectedShare: 1, deviationPct: -10 }, b2: { expectedShare: 0, deviationPct: 100, unexpected: true } },
      basis: 'weights',
      fairOver: 1,
      maxDeviationPct: 100,
    },
    {
      name: 'a seen backend missing from the weights is unexpected',
      counts: { b1: 50, b9: 50 },
      weights: { b1: 3 },
      want: { b1: { expectedShare: 1, deviationPct: -50 }, b9: { expectedShare: 0, deviationPct: 100, unexpected: true } },
      basis: 'weights',
      fairOver: 1,
      maxDeviationPct: 100,
    },
    {
      name: 'all-zero weights fall back to an equal split',
      counts: { b1: 50, b2: 50 },
      weights: { b1: 0, b2: 0 },
      want: { b1: { expectedShare: 0.5, deviationPct: 0 }, b2: { expectedShare: 0.5, deviationPct: 0 } },
      basis: 'equal',
      fairOver: 2,
      maxDeviationPct: 0,
    },
    {
      name: '--backends 4 with 3 seen expects a quarter each',
      counts: { b1: 30, b2: 30, b3: 40 },
      expected: 4,
      want: { b1: { expectedShare: 0.25, deviationPct: 20 }, b2: { expectedShare: 0.25, deviationPct: 20 }, b3: { expectedShare: 0.25, deviationPct: 60 } },
      basis: 'equal',
      fairOver: 4,
      maxDeviationPct: 60,
    },
    {
      name: 'no traffic at all: shares 0, nothing deviates beyond -100%',
      counts: {},
      weights: { b1: 1 },
      want: { b1: { expectedShare: 1, deviationPct: -100 } },
      basis: 'weights',
      fairOver: 1,
      maxDeviationPct: 100,
    },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const f = fairness(counts(c.counts), { weights: c.weights ? counts(c.weights) : undefined, expected: c.expected });
      expect(f.basis).toBe(c.basis);
      expect(f.fairOver).toBe(c.fairOver);
      expect(f.maxDeviationPct).toBe(c.maxDeviationPct);
      expect(Object.keys(f.backends)).toEqual(Object.keys(c.want));
      for (const [name, w] of Object.entries(c.want)) {
        const b = f.backends[name];
        expect(b?.expectedShare, `${name} expected share`).toBe(w.expectedShare);
        expect(b?.deviationPct, `${name} deviation`).toBe(w.deviationPct);
        expect(b?.unexpected, `${name} unexpected`).toBe(w.unexpected);
      }
    });
  }

  it('the weight-2 backend of the issue: +50% against an equal split, 0% against its weight (feature off vs on)', () => {
    const seen = counts({ b1: 1000, b2: 500, b3: 500 });
    const off = fairness(seen).backends.b1?.deviationPct;
    const on = fairness(seen, { weights: counts({ b1: 2, b2: 1, b3: 1 }) }).backends.b1?.deviationPct;
    console.log(`load fairness: weight-2 backend with twice the traffic: equal split ${off}%, by weight ${on}%`);
    expect(off).toBe(50);
    expect(on).toBe(0);
  });
});

describe('load --weights parsing', () => {
  const good: { name: string; text: string; want: [string, number][] }[] = [
    { name: 'names and weights', text: 'b1=2,b2=1', want: [['b1', 2], ['b2', 1]] },
    { name: 'addresses, spaces, a zero weight', text: ' 10.0.0.11=3 , 10.0.0.12=0', want: [['10.0.0.11', 3], ['10.0.0.12', 0]] },
    { name: 'a name holding "=" splits at the last one', text: 'a=b=2', want: [['a=b', 2]] },
  ];
  for (const c of good) it(c.name, () => expect([...parseWeights(c.text)]).toEqual(c.want));

  const bad: { name: string; text: string }[] = [
    { name: 'empty', text: '' },
    { name: 'no weight', text: 'b1' },
    { name: 'negative', text: 'b1=-1' },
    { name: 'not a number', text: 'b1=two' },
    { name: 'no name', text: '=2' },
  ];
  for (const c of bad) it(`refuses ${c.name}`, () => expect(() => parseWeights(c.text)).toThrow(/--weights/));
});
