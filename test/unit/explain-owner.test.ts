/**
 * `sluice explain`, control side (src/runtime/admin-sources.ts): for a flow the data plane would
 * hold for its owner's answer, the admin API asks the cluster what the data plane's query would
 * get and names the backend that answer sends it to (OwnerHold#settle's rule: the answered backend
 * if it is one of the flow's service, else the table's pick; a join SYN of a service that drops
 * unknown joins is dropped). The data plane, the generation and the cluster are fakes; the
 * human form (src/observe/explain-format.ts) is checked on the same answers.
 */
import { describe, expect, it } from 'vitest';
import { ControlAdminSources, type ControlParts } from '../../src/runtime/admin-sources.js';
import { formatFlow } from '../../src/observe/explain-format.js';
import { tokenKey } from '../../src/packet/token-key.js';
import type { ExplainDecision, ExplainQuery } from '../../src/dataplane/contract/messages.js';
import type { BackendIdentity, EntryKind } from '../../src/control/index.js';

const FLOW_KEY = '06c6336404' + '0a630102' + 'a0a0' + '0050'; // any 13 bytes: the fake cluster does not parse it
const TOKEN = 0x464b4775;
const B1 = '10.99.0.11';
const B2 = '10.99.0.12';
const B3 = '10.99.0.13';
const OTHER = '10.99.0.21'; // a backend of another service

/** Backend ids: web 0..2 (B1..B3), mail 3 (OTHER). */
const spec = {
  services: [
    { id: 0, name: 'web' },
    { id: 1, name: 'mail' },
  ],
  backends: [
    { id: 0, serviceId: 0, address: B1 },
    { id: 1, serviceId: 0, address: B2 },
    { id: 2, serviceId: 0, address: B3 },
    { id: 3, serviceId: 1, address: OTHER },
  ],
};

function decision(o: { next: ExplainDecision['next']; token?: number; tracked?: boolean }): ExplainDecision {
  return {
    protocol: 'tcp',
    client: '10.99.1.2',
    clientPort: 41000,
    vip: '198.51.100.10',
    port: 80,
    portSource: 'given',
    generation: 4,
    serviceId: 0,
    hash: 0x9e3779b9,
    tableSize: 251,
    tableSlot: 0x9e3779b9 % 251,
    tableBackendId: 2,
    affinityBackendId: null,
    newFlowBackendId: 2,
    tracked: o.tracked ? { backendId: 0, pendingOwnerQuery: false, since: '2026-01-02T03:04:05.000Z', ageMs: 1500, idleMs: 200, state: 'active', generation: 3, keeps: true } : null,
    mptcpToken: o.token ?? null,
    tokenBackendId: null,
    ownerKey: FLOW_KEY,
    ownerQueries: true,
    next: o.next,
  };
}

interface Cluster {
  self: string;
  owners: string[];
  /** What this instance's store holds, and what the owner/replica answer. */
  here: BackendIdentity | null;
  remote: BackendIdentity | null;
}

function sources(d: ExplainDecision, cluster: Cluster | null, unknownJoin: 'drop' | 'hash' = 'drop'): { src: ControlAdminSources; asked: { kind: EntryKind; key: string }[] } {
  const asked: { kind: EntryKind; key: string }[] = [];
  const seen = { owners: [] as string[] };
  const controlPlane =
    cluster === null
      ? null
      : {
          instanceId: cluster.self,
          owners: (key: Uint8Array): string[] => {
            seen.owners.push(Buffer.from(key).toString('hex'));
            return cluster.owners;
          },
          lookupLocal: (_kind: EntryKind, _key: Uint8Array) => (cluster.here ? { backend: cluster.here } : undefined),
          query: (kind: EntryKind, key: Uint8Array): Promise<BackendIdentity | null> => {
            asked.push({ kind, key: Buffer.from(key).toString('hex') });
            return Promise.resolve(cluster.remote);
          },
        };
  const parts = {
    configPath: '/etc/sluice/sluice.json',
    metrics: {},
    supervisor: { request: () => Promise.resolve({ type: 'explain', requestId: 1, decisions: [d] }) },
    generations: {
      spec,
      config: { services: [{ name: 'web', mptcp: true, mptcpUnknownJoin: unknownJoin }, { name: 'mail', mptcp: false, mptcpUnknownJoin: 'drop' }] },
      backendId: (service: string, address: string): number => spec.backends.find((b) => b.address === address && spec.services[b.serviceId].name === service)?.id ?? -1,
    },
    bridge: { controlPlane },
  };
  return { src: new ControlAdminSources(parts as unknown as ControlParts), asked };
}

const OWNER_QUERY: ExplainDecision['next'] = { backendId: null, by: 'owner-query', drop: null, asks: 'flow' };
const JOIN_QUERY: ExplainDecision['next'] = { backendId: null, by: 'owner-query', drop: null, asks: 'token' };
const web = (address: string): BackendIdentity => ({ service: 'web', address });
const QUERY: ExplainQuery = { protocol: 'tcp', client: '10.99.1.2', clientPort: 41000, vip: '198.51.100.10', port: 80 };

describe('explain asks the owner what the data plane would be told', () => {
  it.each([
    {
      name: 'another instance owns the flow and holds B2: B2, not the table pick B3',
      d: decision({ next: OWNER_QUERY }),
      cluster: { self: 'lb3', owners: ['lb1', 'lb2'], here: null, remote: web(B2) },
      want: { next: B2, kind: 'flow', asked: [{ kind: 'flow', key: FLOW_KEY }], held: 'web/B2 by owners' },
      verdict: `a mid-flow packet goes to ${B2} by its owner's answer (lb1); a SYN goes to ${B3}`,
    },
    {
      name: 'the owners hold nothing: the table pick (what the data plane does on a miss)',
      d: decision({ next: OWNER_QUERY }),
      cluster: { self: 'lb3', owners: ['lb1', 'lb2'], here: null, remote: null },
      want: { next: B3, kind: 'flow', asked: [{ kind: 'flow', key: FLOW_KEY }], held: 'nothing' },
      verdict: `a mid-flow packet goes to ${B3} by the Maglev table (its owner and replica hold nothing); a SYN goes to ${B3}`,
    },
    {
      name: 'this instance is the owner: its own entry, nobody asked',
      d: decision({ next: OWNER_QUERY }),
      cluster: { self: 'lb1', owners: ['lb1', 'lb2'], here: web(B1), remote: web(B3) },
      want: { next: B1, kind: 'flow', asked: [], held: 'web/B1 here' },
      verdict: `a mid-flow packet goes to ${B1} by its owner's answer (this instance); a SYN goes to ${B3}`,
    },
    {
      name: 'this instance is the replica but holds nothing: the owner is asked, as the data plane would',
      d: decision({ next: OWNER_QUERY }),
      cluster: { self: 'lb2', owners: ['lb1', 'lb2'], here: null, remote: web(B2) },
      want: { next: B2, kind: 'flow', asked: [{ kind: 'flow', key: FLOW_KEY }], held: 'web/B2 by owners' },
      verdict: `a mid-flow packet goes to ${B2} by its owner's answer (lb1); a SYN goes to ${B3}`,
    },
    {
      name: "the answer names another service's backend: the table pick, as the data plane's belongsTo check",
      d: decision({ next: OWNER_QUERY }),
      cluster: { self: 'lb3', owners: ['lb1', 'lb2'], here: null, remote: { service: 'mail', address: OTHER } },
      want: { next: B3, kind: 'flow', asked: [{ kind: 'flow', key: FLOW_KEY }], held: 'mail/OTHER by owners' },
      verdict: `a mid-flow packet goes to ${B3} by the Maglev table (its owner and replica hold nothing); a SYN goes to ${B3}`,
    },
    {
      name: "a join SYN with an unknown token: the token's owners are asked for the token, and their backend B1 is the answer",
      d: decision({ next: JOIN_QUERY, token: TOKEN }),
      cluster: { self: 'lb2', owners: ['lb3', 'lb1'], here: null, remote: web(B1) },
      want: { next: B1, kind: 'token', asked: [{ kind: 'token', key: Buffer.from(tokenKey(TOKEN)).toString('hex') }], held: 'web/B1 by owners' },
      verdict: `the join SYN goes to ${B1} by its owner's answer (lb3)`,
    },
    {
      name: 'a join SYN whose token nobody holds, on a service that drops unknown joins: dropped',
      d: decision({ next: JOIN_QUERY, token: TOKEN }),
      cluster: { self: 'lb2', owners: ['lb3', 'lb1'], here: null, remote: null },
      want: { next: null, kind: 'token', asked: [{ kind: 'token', key: Buffer.from(tokenKey(TOKEN)).toString('hex') }], held: 'nothing' },
      verdict: "the join SYN is dropped: its token's owner and replica hold nothing",
    },
  ])('$name', async ({ d, cluster, want, verdict }) => {
    const { src, asked } = sources(d, cluster);
    const f = (await src.explain(QUERY)).flows[0];
    expect(f.nextBackend).toBe(want.next);
    expect(f.cluster?.kind).toBe(want.kind);
    expect(f.cluster?.owner).toBe(cluster.owners[0]);
    expect(asked).toEqual(want.asked);
    const held = f.cluster?.asked ? `${f.cluster.heldByOwners ?? 'nothing'} by owners` : `${f.cluster?.heldHere ?? 'nothing'} here`;
    const named = held.replace(B1, 'B1').replace(B2, 'B2').replace(B3, 'B3').replace(OTHER, 'OTHER');
    expect(named === 'nothing by owners' || named === 'nothing here' ? 'nothing' : named).toBe(want.held);
    const lines = formatFlow(f).split('\n');
    expect(lines.find((l) => l.startsWith('  verdict:'))).toBe(`  verdict:     ${verdict}`);
    const self = (id: string): string => (id === cluster.self ? ' (this instance)' : '');
    expect(lines).toContain(`  ${(want.kind === 'token' ? 'token owner:' : 'owner:').padEnd(13)}${cluster.owners[0]}${self(cluster.owners[0])}, replica ${cluster.owners[1]}${self(cluster.owners[1])}`);
  });

  it('a join SYN whose token nobody holds, on a service that hashes unknown joins: the table pick', async () => {
    const { src } = sources(decision({ next: JOIN_QUERY, token: TOKEN }), { self: 'lb2', owners: ['lb3', 'lb1'], here: null, remote: null }, 'hash');
    expect((await src.explain(QUERY)).flows[0].nextBackend).toBe(B3);
  });

  it('without a cluster: no owners, and no backend claimed for a packet waiting for one', async () => {
    const { src } = sources(decision({ next: OWNER_QUERY }), null);
    const f = (await src.explain(QUERY)).flows[0];
    expect(f.cluster).toBeNull();
    expect(f.nextBackend).toBeNull();
    expect(formatFlow(f)).toContain("  verdict:     a mid-flow packet goes where its owner's answer (the data plane asks the cluster, holding the packet) says; a SYN goes to");
  });

  it('a tracked flow: its entry decides; the cluster block still names the flow key\'s owners', async () => {
    const { src, asked } = sources(decision({ next: { backendId: 0, by: 'flow-entry', drop: null }, tracked: true }), { self: 'lb3', owners: ['lb1', 'lb2'], here: null, remote: web(B2) });
    const f = (await src.explain(QUERY)).flows[0];
    expect(f.nextBackend).toBe(B1);
    expect(f.cluster).toEqual({ kind: 'flow', owner: 'lb1', replica: 'lb2', self: 'lb3', heldHere: null, heldByOwners: `web/${B2}`, asked: true });
    expect(asked).toEqual([{ kind: 'flow', key: FLOW_KEY }]);
  });
});
