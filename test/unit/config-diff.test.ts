import { describe, expect, it } from 'vitest';
import { diffConfigs, summarizeDiff, type ConfigDiff } from '../../src/config/diff.js';
import { parseConfig } from '../../src/config/load.js';
import type { SluiceConfig } from '../../src/config/types.js';

type Json = Record<string, unknown>;
type ServiceJson = Json & { backends: Json[] };

function base(): Json & { services: ServiceJson[] } {
  return {
    interface: 'eth0',
    services: [
      {
        name: 'web',
        vip: '198.51.100.10',
        port: 80,
        protocol: 'tcp',
        forwarding: 'dsr-l2',
        backends: [
          { address: '10.1.0.11', weight: 1, state: 'active', role: 'primary' },
          { address: '10.1.0.12', weight: 2, state: 'active', role: 'primary' },
        ],
      },
      {
        name: 'dns',
        vip: '198.51.100.10',
        port: 53,
        protocol: 'udp',
        forwarding: 'dsr-l2',
        backends: [{ address: '10.1.0.21' }],
      },
    ],
  };
}

function config(edit?: (d: ReturnType<typeof base>) => void): SluiceConfig {
  const d = base();
  edit?.(d);
  return parseConfig(JSON.stringify(d));
}

const EMPTY: ConfigDiff = {
  servicesAdded: [],
  servicesRemoved: [],
  servicesChanged: [],
  restartRequired: [],
  settingsChanged: [],
  empty: true,
};

interface DiffCase {
  name: string;
  edit: (d: ReturnType<typeof base>) => void;
  want: Partial<ConfigDiff>;
  summary: string;
}

const cases: DiffCase[] = [
  {
    name: 'identical configs',
    edit: () => undefined,
    want: {},
    summary: 'no changes',
  },
  {
    name: 'backend order and address spelling are not changes',
    edit: (d) => {
      d.services[0].backends.reverse();
      d.services.reverse();
    },
    want: {},
    summary: 'no changes',
  },
  {
    name: 'service added',
    edit: (d) =>
      d.services.push({
        name: 'api',
        vip: '198.51.100.11',
        port: 443,
        protocol: 'tcp',
        forwarding: 'ipip',
        backends: [{ address: '10.1.0.31' }],
      }),
    want: {
      servicesAdded: [
        {
          name: 'api',
          vip: '198.51.100.11',
          family: 4,
          port: 443,
          protocol: 'tcp',
          forwarding: 'ipip',
          tableSize: 65537,
          mptcp: true,
          mptcpUnknownJoin: 'drop',
          icmpEcho: 'reply',
          icmpErrors: 'forward',
          minPrimaries: 1,
          backends: [{ address: '10.1.0.31', weight: 1, state: 'active', role: 'primary' }],
        },
      ],
      empty: false,
    },
    summary: 'services +1 -0 ~0: added api',
  },
  {
    name: 'service removed',
    edit: (d) => d.services.splice(1, 1),
    want: {
      servicesRemoved: [
        {
          name: 'dns',
          vip: '198.51.100.10',
          family: 4,
          port: 53,
          protocol: 'udp',
          forwarding: 'dsr-l2',
          tableSize: 65537,
          mptcp: false,
          mptcpUnknownJoin: 'drop',
          icmpEcho: 'reply',
          icmpErrors: 'forward',
          minPrimaries: 1,
          backends: [{ address: '10.1.0.21', weight: 1, state: 'active', role: 'primary' }],
        },
      ],
      empty: false,
    },
    summary: 'services +0 -1 ~0: removed dns',
  },
  {
    name: 'backends added, removed and reweighted',
    edit: (d) => {
      d.services[0].backends = [
        { address: '10.1.0.12', weight: 5, state: 'active', role: 'primary' },
        { address: '10.1.0.13' },
        { address: '10.1.0.14', weight: 0, state: 'active', role: 'primary' },
      ];
    },
    want: {
      servicesChanged: [
        {
          name: 'web',
          fields: [],
          backendsAdded: [
            { address: '10.1.0.13', weight: 1, state: 'active', role: 'primary' },
            { address: '10.1.0.14', weight: 0, state: 'active', role: 'primary' },
          ],
          backendsRemoved: [{ address: '10.1.0.11', weight: 1, state: 'active', role: 'primary' }],
          weightsChanged: [{ address: '10.1.0.12', prev: 2, next: 5 }],
          rolesChanged: [],
        },
      ],
      empty: false,
    },
    summary: 'services +0 -0 ~1: changed web(+2 backends, -1 backend, 1 weight)',
  },
  {
    name: 'service fields changed',
    edit: (d) => Object.assign(d.services[1], { vip: '198.51.100.12', port: 5353, protocol: 'tcp', forwarding: 'ipip', tableSize: 251 }),
    want: {
      servicesChanged: [
        {
          name: 'dns',
          fields: [
            { field: 'vip', prev: '198.51.100.10', next: '198.51.100.12' },
            { field: 'port', prev: 53, next: 5353 },
            { field: 'protocol', prev: 'udp', next: 'tcp' },
            { field: 'forwarding', prev: 'dsr-l2', next: 'ipip' },
            { field: 'tableSize', prev: 65537, next: 251 },
            // A TCP service steers MPTCP joins by default; a UDP one cannot.
            { field: 'mptcp', prev: 'false', next: 'true' },
          ],
          backendsAdded: [],
          backendsRemoved: [],
          weightsChanged: [],
          rolesChanged: [],
        },
      ],
      empty: false,
    },
    summary:
      'services +0 -0 ~1: changed dns(vip 198.51.100.10->198.51.100.12, port 53->5353, protocol udp->tcp, forwarding dsr-l2->ipip, tableSize 65537->251, mptcp false->true)',
  },
  {
    name: 'renamed service is a removal plus an addition',
    edit: (d) => (d.services[1].name = 'resolver'),
    want: {
      servicesAdded: [expect.objectContaining({ name: 'resolver' })],
      servicesRemoved: [expect.objectContaining({ name: 'dns' })],
      empty: false,
    },
    summary: 'services +1 -1 ~0: added resolver; removed dns',
  },
  {
    name: 'settings that need a restart',
    edit: (d) => {
      d.interface = 'eth1';
      d.egressInterface = 'eth0';
      d.capture = { engine: 'cap', bufferMiB: 64, batchSize: 64 };
      d.metrics = { listen: '127.0.0.1:9181' };
      d.admin = { socket: '/run/sluice/other.sock' };
      d.flowTable = { capacity: 4096 };
    },
    want: {
      restartRequired: [
        'interface',
        'capture.engine',
        'capture.bufferMiB',
        'capture.batchSize',
        'metrics.listen',
        'admin.socket',
        'flowTable.capacity',
      ],
      empty: false,
    },
    summary:
      'services +0 -0 ~0: restart required: interface, capture.engine, capture.bufferMiB, capture.batchSize, metrics.listen, admin.socket, flowTable.capacity',
  },
  {
    name: 'an explicit egressInterface equal to the default is not a change',
    edit: (d) => (d.egressInterface = 'eth0'),
    want: {},
    summary: 'no changes',
  },
  {
    name: 'settings a reload applies, and those that need a restart',
    edit: (d) => {
      d.hashSeed = 7;
      d.encap = { source4: '192.0.2.5' };
      d.flowTable = { tcpIdleTimeoutS: 60, tcpClosingTimeoutS: 5, udpIdleTimeoutS: 10 };
      d.safety = { allowHostForwarding: true, allowLocalVip: true };
      d.log = { level: 'debug' };
    },
    want: {
      restartRequired: ['hashSeed', 'flowTable.tcpIdleTimeoutS', 'flowTable.tcpClosingTimeoutS', 'flowTable.udpIdleTimeoutS'],
      settingsChanged: [
        'encap.source4',
        'safety.allowHostForwarding',
        'safety.allowLocalVip',
        'log.level',
      ],
      empty: false,
    },
    summary:
      'services +0 -0 ~0: settings encap.source4, safety.allowHostForwarding, safety.allowLocalVip, log.level; restart required: hashSeed, flowTable.tcpIdleTimeoutS, flowTable.tcpClosingTimeoutS, flowTable.udpIdleTimeoutS',
  },
  {
    name: 'everything at once',
    edit: (d) => {
      d.interface = 'eth9';
      d.log = { level: 'warn' };
      d.services[0].backends.push({ address: '10.1.0.13' });
      d.services.splice(1, 1);
      d.services.push({ ...base().services[1], name: 'ntp', port: 123 });
    },
    want: {
      servicesAdded: [expect.objectContaining({ name: 'ntp', port: 123 })],
      servicesRemoved: [expect.objectContaining({ name: 'dns' })],
      servicesChanged: [expect.objectContaining({ name: 'web', backendsAdded: [{ address: '10.1.0.13', weight: 1, state: 'active', role: 'primary' }] })],
      // egressInterface defaults to interface, so it moves too.
      restartRequired: ['interface', 'egressInterface'],
      settingsChanged: ['log.level'],
      empty: false,
    },
    summary:
      'services +1 -1 ~1: added ntp; removed dns; changed web(+1 backend); settings log.level; restart required: interface, egressInterface',
  },
];

describe('diffConfigs', () => {
  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const d = diffConfigs(config(), config(c.edit));
    expect(d).toEqual({ ...EMPTY, ...c.want });
    expect(summarizeDiff(d)).toBe(c.summary);
  });

  it('is symmetric: swapping the arguments swaps added and removed', () => {
    const a = config();
    const b = config((d) => {
      d.services.splice(0, 1);
      d.services[0].backends = [{ address: '10.1.0.22' }];
    });
    const forward = diffConfigs(a, b);
    const backward = diffConfigs(b, a);
    expect(backward.servicesAdded).toEqual(forward.servicesRemoved);
    expect(backward.servicesRemoved).toEqual(forward.servicesAdded);
    expect(backward.servicesChanged[0].backendsAdded).toEqual(forward.servicesChanged[0].backendsRemoved);
  });
});
