import { describe, expect, it } from 'vitest';
import { effectiveBackends, type BackendOverride } from '../../src/runtime/generation.js';
import type { ServiceConfig } from '../../src/config/types.js';

const svc = (backends: [string, Partial<{ weight: number; state: 'active' | 'draining'; role: 'primary' | 'spare' }>][], minPrimaries = 1): ServiceConfig => ({
  name: 'web',
  vip: '198.51.100.10',
  family: 4,
  port: 80,
  protocol: 'tcp',
  forwarding: 'dsr-l2',
  tableSize: 251,
  mptcp: true,
  mptcpUnknownJoin: 'drop',
  minPrimaries,
  backends: backends.map(([address, b]) => ({ address, weight: 1, state: 'active', role: 'primary', ...b })),
});

describe('effectiveBackends: which backends take new flows', () => {
  it.each([
    {
      name: 'all healthy primaries serve',
      service: svc([['a', {}], ['b', {}]]),
      down: [] as string[],
      want: { a: 'serving', b: 'serving' },
    },
    {
      name: 'draining state and weight 0 take no new flows',
      service: svc([['a', { state: 'draining' }], ['b', { weight: 0 }], ['c', {}]]),
      down: [],
      want: { a: 'draining', b: 'draining', c: 'serving' },
    },
    {
      name: 'a down backend is out',
      service: svc([['a', {}], ['b', {}]]),
      down: ['a'],
      want: { a: 'down', b: 'serving' },
    },
    {
      name: '2 primaries + 1 spare, min 2: spare waits while both primaries are up',
      service: svc([['p1', {}], ['p2', {}], ['s1', { role: 'spare' }]], 2),
      down: [],
      want: { p1: 'serving', p2: 'serving', s1: 'spare-standby' },
    },
    {
      name: '2 primaries + 1 spare, min 2: one primary down, the spare serves',
      service: svc([['p1', {}], ['p2', {}], ['s1', { role: 'spare' }]], 2),
      down: ['p1'],
      want: { p1: 'down', p2: 'serving', s1: 'spare-serving' },
    },
    {
      name: 'spares fill the gap in their configured order, and only as many as needed',
      service: svc([['p1', {}], ['s2', { role: 'spare' }], ['s1', { role: 'spare' }], ['s3', { role: 'spare' }]], 3),
      down: ['p1'],
      want: { p1: 'down', s2: 'spare-serving', s1: 'spare-serving', s3: 'spare-serving' },
    },
    {
      name: 'a down spare is skipped for the next one',
      service: svc([['p1', {}], ['s1', { role: 'spare' }], ['s2', { role: 'spare' }]], 1),
      down: ['p1', 's1'],
      want: { p1: 'down', s1: 'down', s2: 'spare-serving' },
    },
    {
      name: 'a draining primary does not count toward the minimum',
      service: svc([['p1', { state: 'draining' }], ['s1', { role: 'spare' }]], 1),
      down: [],
      want: { p1: 'draining', s1: 'spare-serving' },
    },
  ])('$name', ({ service, down, want }) => {
    const isDown = new Set<string>(down);
    const got = effectiveBackends(service, () => true, (a) => !isDown.has(a));
    expect(Object.fromEntries(got.map((b) => [b.address, b.status]))).toEqual(want);
  });

  it('operator overrides win over the file (drain, weight)', () => {
    const overrides = new Map<string, BackendOverride>([
      ['web|a', { state: 'draining' }],
      ['web|b', { weight: 7 }],
    ]);
    const got = effectiveBackends(svc([['a', {}], ['b', {}]]), () => true, () => true, overrides);
    expect(got.map((b) => [b.address, b.status, b.weight])).toEqual([
      ['a', 'draining', 1],
      ['b', 'serving', 7],
    ]);
  });

  it('an unresolved next hop keeps a backend out', () => {
    const got = effectiveBackends(svc([['a', {}], ['b', {}]]), (a) => a !== 'a', () => true);
    expect(got.map((b) => b.status)).toEqual(['unresolved', 'serving']);
  });
});
