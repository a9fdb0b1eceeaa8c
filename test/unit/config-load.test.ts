import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { SocketAddress } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  CONFIG_DEFAULTS,
  ConfigError,
  configWarnings,
  formatIssues,
  loadConfigFile,
  parseConfig,
  readConfigFile,
} from '../../src/config/load.js';
import { formatAddress, ipToBytes, normalizeAddress } from '../../src/packet/address.js';
import { MAGLEV_MAX_SIZE } from '../../src/hash/maglev.js';
import { checkHealthCheck } from '../../src/health/types.js';
import { AFFINITY_DEFAULTS, BACKEND_DEFAULTS, HEALTH_DEFAULTS, SERVICE_DEFAULTS } from '../../src/config/defaults.js';
import type { SluiceConfig } from '../../src/config/types.js';

const ROOT = new URL('../../', import.meta.url);
const EXAMPLES = new URL('examples/', ROOT);

type Json = Record<string, unknown>;

/** The minimal config from the docs, as a fresh mutable object. */
function minimal(): Json {
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
          { address: '10.1.0.11', weight: 1 },
          { address: '10.1.0.12', weight: 2 },
        ],
      },
    ],
    metrics: { listen: '127.0.0.1:9180' },
  };
}

function services(doc: Json): Json[] {
  return doc.services as Json[];
}
function svc(doc: Json, i = 0): Json {
  return services(doc)[i];
}
function backends(doc: Json, i = 0): Json[] {
  return svc(doc, i).backends as Json[];
}
function addService(doc: Json, patch: Json): void {
  services(doc).push({ ...structuredClone(svc(doc)), name: `s${services(doc).length}`, ...patch });
}

function issuesOf(text: string): { path: string; rule: string; message: string }[] {
  try {
    parseConfig(text, 'test.json');
  } catch (err) {
    if (err instanceof ConfigError) return err.issues;
    throw err;
  }
  throw new Error('expected a ConfigError, but the config was accepted');
}

interface InvalidCase {
  name: string;
  /** Mutates the minimal config; or `text` gives the whole file. */
  edit?: (doc: Json) => void;
  text?: string;
  /** Every issue expected, in order. */
  want: { path: string; rule: string }[];
  /** Part of the first issue's message. */
  says?: string;
}

const invalidCases: InvalidCase[] = [
  {
    name: 'unknown top-level key',
    edit: (d) => (d.bogus = 1),
    want: [{ path: '$.bogus', rule: 'additionalProperties' }],
  },
  {
    name: 'unknown backend key suggests the right one',
    edit: (d) => (backends(d)[0] = { address: '10.1.0.11', wieght: 2 }),
    want: [{ path: '$.services[0].backends[0].wieght', rule: 'additionalProperties' }],
    says: 'did you mean "weight"?',
  },
  {
    name: 'unknown service key',
    edit: (d) => (svc(d).healthcheck = {}),
    want: [{ path: '$.services[0].healthcheck', rule: 'additionalProperties' }],
  },
  {
    name: 'unknown key in a nested settings object',
    edit: (d) => (d.capture = { engine: 'batch', ringMiB: 4 }),
    want: [{ path: '$.capture.ringMiB', rule: 'additionalProperties' }],
  },
  {
    name: 'missing interface',
    edit: (d) => delete d.interface,
    want: [{ path: '$.interface', rule: 'required' }],
    says: 'is required',
  },
  {
    name: 'missing backends',
    edit: (d) => delete svc(d).backends,
    want: [{ path: '$.services[0].backends', rule: 'required' }],
  },
  {
    name: 'missing backend address',
    edit: (d) => (backends(d)[1] = { weight: 1 }),
    want: [{ path: '$.services[0].backends[1].address', rule: 'required' }],
  },
  {
    name: 'empty services',
    edit: (d) => (d.services = []),
    want: [{ path: '$.services', rule: 'minItems' }],
  },
  {
    name: 'services is not an array',
    edit: (d) => (d.services = {}),
    want: [{ path: '$.services', rule: 'type' }],
  },
  {
    name: 'empty backends',
    edit: (d) => (svc(d).backends = []),
    want: [{ path: '$.services[0].backends', rule: 'minItems' }],
  },
  {
    name: 'bad IPv4 VIP (octet > 255)',
    edit: (d) => (svc(d).vip = '198.51.100.300'),
    want: [{ path: '$.services[0].vip', rule: 'ip-address' }],
  },
  {
    name: 'IPv4 backend with a leading zero',
    edit: (d) => (backends(d)[0].address = '10.1.0.011'),
    want: [{ path: '$.services[0].backends[0].address', rule: 'ip-address' }],
  },
  {
    name: 'bad IPv6 VIP (two "::")',
    edit: (d) => {
      svc(d).vip = '2001:db8::1::2';
      svc(d).forwarding = 'ipip';
    },
    want: [{ path: '$.services[0].vip', rule: 'ip-address' }],
  },
  {
    name: 'IPv6 with a zone index',
    edit: (d) => {
      svc(d).vip = 'fe80::10%eth0';
      svc(d).forwarding = 'ipip';
    },
    want: [{ path: '$.services[0].vip', rule: 'ip-address' }],
  },
  {
    name: 'IPv4-mapped IPv6 VIP',
    edit: (d) => (svc(d).vip = '::ffff:198.51.100.10'),
    want: [{ path: '$.services[0].vip', rule: 'ipv4-mapped' }],
    says: 'write the IPv4 address "198.51.100.10"',
  },
  {
    name: 'multicast VIP',
    edit: (d) => (svc(d).vip = '239.1.1.1'),
    want: [{ path: '$.services[0].vip', rule: 'unicast' }],
  },
  {
    name: 'loopback backend',
    edit: (d) => (backends(d)[1].address = '127.0.0.1'),
    want: [{ path: '$.services[0].backends[1].address', rule: 'unicast' }],
  },
  {
    name: 'VIP is not a string',
    edit: (d) => (svc(d).vip = 3325256714),
    want: [{ path: '$.services[0].vip', rule: 'type' }],
  },
  {
    name: 'port 0',
    edit: (d) => (svc(d).port = 0),
    want: [{ path: '$.services[0].port', rule: 'minimum' }],
  },
  {
    name: 'port 70000',
    edit: (d) => (svc(d).port = 70000),
    want: [{ path: '$.services[0].port', rule: 'maximum' }],
  },
  {
    name: 'port "some"',
    edit: (d) => (svc(d).port = 'some'),
    want: [{ path: '$.services[0].port', rule: 'pattern' }],
    says: 'must be an integer 1..65535 or the string "all"',
  },
  {
    name: 'port 80.5',
    edit: (d) => (svc(d).port = 80.5),
    want: [{ path: '$.services[0].port', rule: 'type' }],
  },
  {
    name: 'protocol "sctp"',
    edit: (d) => (svc(d).protocol = 'sctp'),
    want: [{ path: '$.services[0].protocol', rule: 'enum' }],
    says: 'must be one of "tcp", "udp"',
  },
  {
    name: 'forwarding "nat"',
    edit: (d) => (svc(d).forwarding = 'nat'),
    want: [{ path: '$.services[0].forwarding', rule: 'enum' }],
  },
  {
    name: 'service name with capitals',
    edit: (d) => (svc(d).name = 'Web'),
    want: [{ path: '$.services[0].name', rule: 'pattern' }],
  },
  {
    name: 'service name of 64 characters',
    edit: (d) => (svc(d).name = 'a'.repeat(64)),
    want: [{ path: '$.services[0].name', rule: 'pattern' }],
  },
  {
    name: 'non-prime tableSize',
    edit: (d) => (svc(d).tableSize = 65536),
    want: [{ path: '$.services[0].tableSize', rule: 'prime' }],
    says: '65521 or 65537',
  },
  {
    name: 'tableSize below 3',
    edit: (d) => (svc(d).tableSize = 2),
    want: [{ path: '$.services[0].tableSize', rule: 'minimum' }],
  },
  {
    name: 'tableSize above the cap',
    edit: (d) => (svc(d).tableSize = 1000033),
    want: [{ path: '$.services[0].tableSize', rule: 'maximum' }],
  },
  {
    name: 'tableSize smaller than the backend count',
    edit: (d) => {
      svc(d).tableSize = 3;
      svc(d).backends = ['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.4'].map((address) => ({ address }));
    },
    want: [{ path: '$.services[0].tableSize', rule: 'table-size' }],
  },
  {
    name: 'duplicate service name',
    edit: (d) => addService(d, { name: 'web', port: 443 }),
    want: [{ path: '$.services[1].name', rule: 'unique-name' }],
  },
  {
    name: 'duplicate vip/protocol/port',
    edit: (d) => addService(d, {}),
    want: [{ path: '$.services[1]', rule: 'unique-vip-port' }],
  },
  {
    name: 'duplicate vip/protocol/port through two spellings of one IPv6 VIP',
    edit: (d) => {
      Object.assign(svc(d), { vip: '2001:db8::10', forwarding: 'ipip' });
      addService(d, { vip: '2001:DB8:0:0:0:0:0:10' });
    },
    want: [{ path: '$.services[1]', rule: 'unique-vip-port' }],
  },
  {
    name: '"all" ports after port 80 on the same vip and protocol',
    edit: (d) => addService(d, { port: 'all' }),
    want: [{ path: '$.services[1]', rule: 'port-overlap' }],
  },
  {
    name: 'port 80 after "all" ports on the same vip and protocol',
    edit: (d) => {
      svc(d).port = 'all';
      addService(d, { port: 80 });
    },
    want: [{ path: '$.services[1]', rule: 'port-overlap' }],
  },
  {
    name: 'duplicate backend',
    edit: (d) => (backends(d)[1].address = '10.1.0.11'),
    want: [{ path: '$.services[0].backends[1].address', rule: 'unique-backend' }],
  },
  {
    name: 'duplicate IPv6 backend written two ways',
    edit: (d) => {
      Object.assign(svc(d), { vip: '2001:db8::10' });
      svc(d).backends = [{ address: 'fd00::0011' }, { address: 'FD00:0:0::11' }];
    },
    want: [{ path: '$.services[0].backends[1].address', rule: 'unique-backend' }],
  },
  {
    name: 'weight -1',
    edit: (d) => (backends(d)[0].weight = -1),
    want: [{ path: '$.services[0].backends[0].weight', rule: 'minimum' }],
  },
  {
    name: 'weight 1.5',
    edit: (d) => (backends(d)[0].weight = 1.5),
    want: [{ path: '$.services[0].backends[0].weight', rule: 'type' }],
  },
  {
    name: 'weight 1001',
    edit: (d) => (backends(d)[1].weight = 1001),
    want: [{ path: '$.services[0].backends[1].weight', rule: 'maximum' }],
  },
  {
    name: 'IPv6 backend behind an IPv4 VIP with dsr-l2',
    edit: (d) => (backends(d)[1].address = 'fd00::12'),
    want: [{ path: '$.services[0].backends[1].address', rule: 'family' }],
    says: '"forwarding": "ipip"',
  },
  {
    name: 'interface name longer than 15 characters',
    edit: (d) => (d.interface = 'a-very-long-ifname'),
    want: [{ path: '$.interface', rule: 'pattern' }],
  },
  {
    name: 'egressInterface with a slash',
    edit: (d) => (d.egressInterface = 'eth0/1'),
    want: [{ path: '$.egressInterface', rule: 'pattern' }],
  },
  {
    name: 'hashSeed above uint32',
    edit: (d) => (d.hashSeed = 4294967296),
    want: [{ path: '$.hashSeed', rule: 'maximum' }],
  },
  {
    name: 'encap.source4 given an IPv6 address',
    edit: (d) => (d.encap = { source4: '2001:db8::5' }),
    want: [{ path: '$.encap.source4', rule: 'family' }],
  },
  {
    name: 'flowTable.capacity below 1024',
    edit: (d) => (d.flowTable = { capacity: 100 }),
    want: [{ path: '$.flowTable.capacity', rule: 'minimum' }],
  },
  {
    name: 'flowTable.floodProtection given a string',
    edit: (d) => (d.flowTable = { floodProtection: 'off' }),
    want: [{ path: '$.flowTable.floodProtection', rule: 'type' }],
  },
  {
    name: 'capture.engine "pcap"',
    edit: (d) => (d.capture = { engine: 'pcap' }),
    want: [{ path: '$.capture.engine', rule: 'enum' }],
  },
  {
    name: 'capture.bufferMiB 2048',
    edit: (d) => (d.capture = { bufferMiB: 2048 }),
    want: [{ path: '$.capture.bufferMiB', rule: 'maximum' }],
  },
  {
    name: 'safety flag as a string',
    edit: (d) => (d.safety = { allowLocalVip: 'yes' }),
    want: [{ path: '$.safety.allowLocalVip', rule: 'type' }],
  },
  {
    name: 'metrics.listen with a bare IPv6 host',
    edit: (d) => (d.metrics = { listen: '::1:9180' }),
    want: [{ path: '$.metrics.listen', rule: 'listen-address' }],
    says: '[::1]:9180',
  },
  {
    name: 'dataplane.workers above 1 with a libpcap engine (no PACKET_FANOUT)',
    edit: (d) => {
      d.dataplane = { workers: 2 };
      d.capture = { engine: 'batch' };
    },
    want: [{ path: '$.dataplane.workers', rule: 'workers-engine' }],
    says: 'capture.engine "ring"',
  },
  {
    name: 'dataplane.workers 0',
    edit: (d) => (d.dataplane = { workers: 0 }),
    // Each branch of the oneOf says why it failed, then the oneOf itself.
    want: [
      { path: '$.dataplane.workers', rule: 'minimum' },
      { path: '$.dataplane.workers', rule: 'type' },
      { path: '$.dataplane.workers', rule: 'enum' },
      { path: '$.dataplane.workers', rule: 'oneOf' },
    ],
  },
  {
    name: 'dataplane.workers "all" (only a number or "auto")',
    edit: (d) => (d.dataplane = { workers: 'all' }),
    want: [
      { path: '$.dataplane.workers', rule: 'type' },
      { path: '$.dataplane.workers', rule: 'enum' },
      { path: '$.dataplane.workers', rule: 'oneOf' },
    ],
  },
  {
    name: 'metrics.listen without a port',
    edit: (d) => (d.metrics = { listen: 'localhost' }),
    want: [{ path: '$.metrics.listen', rule: 'listen-address' }],
  },
  {
    name: 'admin.socket relative path',
    edit: (d) => (d.admin = { socket: 'run/admin.sock' }),
    want: [{ path: '$.admin.socket', rule: 'pattern' }],
  },
  {
    name: 'log.level "verbose"',
    edit: (d) => (d.log = { level: 'verbose' }),
    want: [{ path: '$.log.level', rule: 'enum' }],
  },
  {
    name: 'top level is an array',
    text: '[]',
    want: [{ path: '$', rule: 'type' }],
  },
  {
    name: 'JSON syntax error: trailing comma, with line and column',
    text: '{\n  "interface": "eth0",\n}\n',
    want: [{ path: '$', rule: 'json-syntax' }],
    says: 'line 3, column 1',
  },
  {
    name: 'JSON syntax error: missing comma inside a service',
    text: '{"interface": "eth0",\n "services": [\n  {"name": "web"\n   "vip": "198.51.100.10"}]}',
    want: [{ path: '$.services[0]', rule: 'json-syntax' }],
    says: 'line 4, column 4',
  },
  {
    name: 'JSON syntax error: comment',
    text: '{\n  // the lab\n  "interface": "eth0"\n}',
    want: [{ path: '$', rule: 'json-syntax' }],
    says: 'comments are not allowed',
  },
  {
    name: 'empty file',
    text: '  \n',
    want: [{ path: '$', rule: 'json-syntax' }],
  },
  {
    name: 'duplicate key',
    text: JSON.stringify(minimal()).replace('"port":80', '"port":80,"port":81'),
    want: [{ path: '$.services[0].port', rule: 'duplicate-key' }],
  },
];

describe('parseConfig rejects', () => {
  it.each(invalidCases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    let text = c.text;
    if (text === undefined) {
      const doc = minimal();
      c.edit?.(doc);
      text = JSON.stringify(doc, null, 2);
    }
    const issues = issuesOf(text);
    expect(issues.map(({ path, rule }) => ({ path, rule }))).toEqual(c.want);
    if (c.says) expect(issues[0].message).toContain(c.says);
  });

  it('has at least 25 named invalid cases', () => {
    expect(invalidCases.length).toBeGreaterThanOrEqual(25);
  });

  it('reports every issue of a file at once, schema and semantic', () => {
    const doc = minimal();
    doc.bogus = true;
    svc(doc).port = 70000;
    svc(doc).tableSize = 100;
    backends(doc)[1].address = '10.1.0.11';
    const issues = issuesOf(JSON.stringify(doc));
    expect(issues.map((i) => `${i.path} ${i.rule}`).sort()).toEqual(
      [
        '$.bogus additionalProperties',
        '$.services[0].port maximum',
        '$.services[0].tableSize prime',
        '$.services[0].backends[1].address unique-backend',
      ].sort(),
    );
  });

  it('formats each issue as "path: message (rule: rule)", one per line', () => {
    const doc = minimal();
    svc(doc).port = 70000;
    backends(doc)[0].weight = -1;
    try {
      parseConfig(JSON.stringify(doc), 'web.json');
      expect.unreachable('config was accepted');
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      expect(formatIssues(err).split('\n')).toEqual([
        '$.services[0].port: must be <= 65535 (rule: maximum)',
        '$.services[0].backends[0].weight: must be >= 0 (rule: minimum)',
      ]);
      expect(err.message).toMatch(/^web\.json: invalid config \(2 issues\)\n\$\.services\[0\]\.port/);
      expect(err.sourceName).toBe('web.json');
    }
  });
});

describe('parseConfig accepts', () => {
  it('the minimal file, with every default applied', () => {
    const want: SluiceConfig = {
      interface: 'eth0',
      egressInterface: 'eth0',
      hashSeed: 0,
      services: [
        {
          name: 'web',
          vip: '198.51.100.10',
          family: 4,
          port: 80,
          protocol: 'tcp',
          forwarding: 'dsr-l2',
          tableSize: 65537,
          mptcp: true,
          mptcpUnknownJoin: 'drop',
          icmpEcho: 'reply',
          icmpErrors: 'forward',
          minPrimaries: 1,
          backends: [
            { address: '10.1.0.11', weight: 1, state: 'active', role: 'primary' },
            { address: '10.1.0.12', weight: 2, state: 'active', role: 'primary' },
          ],
        },
      ],
      flowTable: { capacity: 1048576, tcpIdleTimeoutS: 300, tcpClosingTimeoutS: 10, udpIdleTimeoutS: 30, halfOpenTimeoutS: 10, floodProtection: true },
      fragments: { tableSize: 65536, timeoutMs: 2000, holdMs: 200 },
      vlan: { egress: 'untagged' },
      capture: { engine: 'ring', bufferMiB: 32, batchSize: 256 },
      dataplane: { workers: 1 },
      safety: { allowHostForwarding: false, allowLocalVip: false, allowOtherInstances: false },
      metrics: { listen: '127.0.0.1:9180' },
      admin: { socket: '/run/sluice/admin.sock', socketMode: '0660', readers: 'group' },
      log: { level: 'info' },
    };
    expect(parseConfig(JSON.stringify(minimal()))).toEqual(want);
  });

  it('full.json, with every key mapped', () => {
    const c = loadConfigFile(new URL('full.json', EXAMPLES).pathname);
    expect(c.egressInterface).toBe('eth1');
    expect(c.encapSource4).toBe('192.0.2.5');
    expect(c.encapSource6).toBe('2001:db8:5::5');
    expect(c.hashSeed).toBe(2654435769);
    expect(c.flowTable).toEqual({ capacity: 2097152, tcpIdleTimeoutS: 600, tcpClosingTimeoutS: 15, udpIdleTimeoutS: 60, halfOpenTimeoutS: 5, floodProtection: true });
    expect(c.capture).toEqual({ engine: 'cap', bufferMiB: 64, batchSize: 512 });
    expect(c.safety).toEqual({ allowHostForwarding: true, allowLocalVip: true, allowOtherInstances: false });
    expect(c.metrics.listen).toBe('[::1]:9180');
    expect(c.log.level).toBe('debug');
    expect(c.services.map((s) => [s.name, s.port, s.tableSize, s.family])).toEqual([
      ['web', 80, 65537, 4],
      ['dns', 53, 251, 4],
      ['anyport6', 0, 4099, 6],
    ]);
    expect(c.services[0].backends[2]).toEqual({ address: '10.1.0.13', weight: 0, state: 'active', role: 'primary' });
  });

  const validCases: { name: string; edit: (d: Json) => void; check: (c: SluiceConfig) => void }[] = [
    {
      name: 'IPv6 VIP and backends, canonicalised',
      edit: (d) => {
        svc(d).vip = '2001:DB8:0100:0:0:0:0:0010';
        svc(d).backends = [{ address: 'FD00:99:0:0:0:0:0:11' }, { address: 'fd00:99::0012' }];
      },
      check: (c) => {
        expect(c.services[0].vip).toBe('2001:db8:100::10');
        expect(c.services[0].family).toBe(6);
        expect(c.services[0].backends.map((b) => b.address)).toEqual(['fd00:99::11', 'fd00:99::12']);
      },
    },
    {
      name: '"all" ports becomes port 0',
      edit: (d) => (svc(d).port = 'all'),
      check: (c) => expect(c.services[0].port).toBe(0),
    },
    {
      name: 'backend weight defaults to 1 and backends keep file order',
      edit: (d) => (svc(d).backends = [{ address: '10.1.0.13' }, { address: '10.1.0.2', weight: 5, state: 'active', role: 'primary' }, { address: '10.1.0.1' }]),
      check: (c) =>
        expect(c.services[0].backends).toEqual([
          { address: '10.1.0.13', weight: 1, state: 'active', role: 'primary' },
          { address: '10.1.0.2', weight: 5, state: 'active', role: 'primary' },
          { address: '10.1.0.1', weight: 1, state: 'active', role: 'primary' },
        ]),
    },
    {
      name: 'ipip mixes backend families',
      edit: (d) => {
        svc(d).forwarding = 'ipip';
        backends(d)[1].address = '2001:db8::12';
      },
      check: (c) => expect(c.services[0].backends[1].address).toBe('2001:db8::12'),
    },
    {
      name: 'same vip and port on tcp and udp, and "all" on another protocol',
      edit: (d) => {
        addService(d, { protocol: 'udp' });
        addService(d, { protocol: 'udp', vip: '198.51.100.11', port: 'all' });
      },
      check: (c) => expect(c.services.map((s) => `${s.protocol}/${s.port}`)).toEqual(['tcp/80', 'udp/80', 'udp/0']),
    },
    {
      name: 'partial settings objects are completed with defaults',
      edit: (d) => {
        d.flowTable = { udpIdleTimeoutS: 5 };
        d.capture = { engine: 'cap' };
      },
      check: (c) => {
        expect(c.flowTable).toEqual({ ...CONFIG_DEFAULTS.flowTable, udpIdleTimeoutS: 5 });
        expect(c.capture).toEqual({ ...CONFIG_DEFAULTS.capture, engine: 'cap' });
      },
    },
    {
      name: 'egressInterface given',
      edit: (d) => (d.egressInterface = 'eth1'),
      check: (c) => expect([c.interface, c.egressInterface]).toEqual(['eth0', 'eth1']),
    },
    {
      name: 'tableSize equal to the backend count',
      edit: (d) => {
        svc(d).tableSize = 3;
        svc(d).backends = [{ address: '10.1.0.1' }, { address: '10.1.0.2' }, { address: '10.1.0.3' }];
      },
      check: (c) => expect(c.services[0].tableSize).toBe(3),
    },
    {
      name: 'metrics on a host name',
      edit: (d) => (d.metrics = { listen: 'localhost:9180' }),
      check: (c) => expect(c.metrics.listen).toBe('localhost:9180'),
    },
  ];

  it.each(validCases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const doc = minimal();
    c.edit(doc);
    c.check(parseConfig(JSON.stringify(doc)));
  });

  it('a file starting with a byte-order mark', () => {
    expect(parseConfig(`\ufeff${JSON.stringify(minimal())}`).interface).toBe('eth0');
  });
});

describe('examples', () => {
  const files = readdirSync(EXAMPLES).filter((f) => f.endsWith('.json'));

  it('include minimal, lab, ipip and full', () => {
    expect(files).toEqual(expect.arrayContaining(['minimal.json', 'lab.json', 'ipip.json', 'full.json']));
  });

  it('cluster.json is one of three instances sharing one peer list and a key file', () => {
    const c = loadConfigFile(new URL('cluster.json', EXAMPLES).pathname).cluster;
    expect(c?.peers.map((p) => p.id)).toEqual(['lb1', 'lb2', 'lb3']);
    expect([c?.instanceId, c?.keyFile, c?.keyEnv]).toEqual(['lb1', '/etc/sluice/cluster.key', undefined]);
  });

  it.each(files)('%s is valid', (file) => {
    const text = readFileSync(new URL(file, EXAMPLES), 'utf8');
    expect(() => parseConfig(text, file)).not.toThrow();
  });

  it('minimal.json is the documented minimal file', () => {
    const text = readFileSync(new URL('minimal.json', EXAMPLES), 'utf8');
    expect(JSON.parse(text)).toEqual(minimal());
  });

  it('lab.json serves the lab VIPs from the lab backends', () => {
    const c = loadConfigFile(new URL('lab.json', EXAMPLES).pathname);
    expect(c.interface).toBe('sl-lb0');
    expect(c.services.map((s) => [s.vip, s.protocol, s.port, s.forwarding, s.backends.map((b) => b.address)])).toEqual([
      ['198.51.100.10', 'tcp', 80, 'dsr-l2', ['10.99.0.11', '10.99.0.12', '10.99.0.13']],
      ['198.51.100.10', 'udp', 53, 'dsr-l2', ['10.99.0.11', '10.99.0.12', '10.99.0.13']],
      ['2001:db8:100::10', 'tcp', 80, 'dsr-l2', ['fd00:99::11', 'fd00:99::12', 'fd00:99::13']],
    ]);
  });
});

describe('loadConfigFile', () => {
  it('reports an unreadable file as rule "file" naming the path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-load-'));
    try {
      const missing = join(dir, 'nope.json');
      expect(() => loadConfigFile(missing)).toThrow(ConfigError);
      try {
        loadConfigFile(missing);
      } catch (err) {
        if (!(err instanceof ConfigError)) throw err;
        expect(err.issues).toHaveLength(1);
        expect(err.issues[0]).toMatchObject({ path: '$', rule: 'file' });
        expect(err.issues[0].message).toContain(missing);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the file in errors and returns the text it parsed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'sluice-load-'));
    try {
      const file = join(dir, 'sluice.json');
      const text = JSON.stringify(minimal());
      writeFileSync(file, text);
      expect(readConfigFile(file).text).toBe(text);
      writeFileSync(file, '{');
      expect(() => loadConfigFile(file)).toThrow(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}: invalid config`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('normalizeAddress', () => {
  const cases: [name: string, input: string, want: string | undefined][] = [
    ['IPv4 unchanged', '198.51.100.10', '198.51.100.10'],
    ['lowercase and leading zeros dropped', '2001:0DB8::0001', '2001:db8::1'],
    ['longest zero run compressed', '2001:db8:0:0:1:0:0:0', '2001:db8:0:0:1::'],
    ['first of equal zero runs compressed', '2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['a single zero group is not compressed', '2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['all zeros', '0:0:0:0:0:0:0:0', '::'],
    ['IPv4-mapped keeps dotted form', '::FFFF:c633:640a', '::ffff:198.51.100.10'],
    ['deprecated IPv4-compatible written in hex', '::198.51.100.10', '::c633:640a'],
    ['not an address', 'web.example', undefined],
    ['zone index', 'fe80::1%eth0', undefined],
  ];
  it.each(cases)('%s', (_name, input, want) => {
    expect(normalizeAddress(input)).toBe(want);
  });

  it('agrees with the kernel-style formatter for 2000 random IPv6 addresses', () => {
    let seed = 12345;
    const next = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed >>> 16;
    };
    for (let n = 0; n < 2000; n++) {
      // Mostly zero groups, so compression cases dominate.
      const groups = Array.from({ length: 8 }, () => (next() % 3 === 0 ? next() : 0));
      // inet_ntop prints ::/96 and ::ffff:0:0/96 with a dotted tail; RFC 5952 keeps that only for the latter.
      if (groups.slice(0, 5).every((g) => g === 0)) continue;
      const text = groups.map((g) => g.toString(16).padStart(4, '0')).join(':');
      expect(normalizeAddress(text), text).toBe(new SocketAddress({ address: text, family: 'ipv6' }).address);
    }
  });
});

describe('one IP text form (packet/address.ts)', () => {
  it.each([
    ['IPv4-mapped, written in hex', '::ffff:c633:640a', '::ffff:198.51.100.10'],
    ['IPv4-mapped, written dotted and long', '0:0:0:0:0:FFFF:198.51.100.10', '::ffff:198.51.100.10'],
    ['not mapped: ::fffe:0:0/96 stays hex', '::fffe:c633:640a', '::fffe:c633:640a'],
    ['plain IPv6', '2001:DB8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
  ])('%s: bytes and text agree', (_name, text, want) => {
    expect(normalizeAddress(text)).toBe(want);
    expect(formatAddress(ipToBytes(text), 0, 16)).toBe(want);
    expect(formatAddress(ipToBytes(want), 0, 16)).toBe(want);
  });
});

describe('health checks report issues', () => {
  it('every problem of one check at once, at its field, rule "health-check"', () => {
    const { issues } = checkHealthCheck({ type: 'http', rise: 0, timeoutMs: 3000, path: 'healthz' }, '$.services[4].healthCheck');
    expect(issues.map((i) => `${i.path} ${i.rule}`)).toEqual([
      '$.services[4].healthCheck.rise health-check',
      '$.services[4].healthCheck.timeoutMs health-check',
      '$.services[4].healthCheck.path health-check',
    ]);
  });
  it('a field the schema already names is reported once, by the schema', () => {
    const doc = minimal();
    svc(doc).healthCheck = { type: 'tcp', rise: 0 };
    expect(issuesOf(JSON.stringify(doc)).map((i) => `${i.path} ${i.rule}`)).toEqual(['$.services[0].healthCheck.rise minimum']);
  });
});

describe('schema', () => {
  it('states the health-check, affinity and service defaults of config/defaults.ts', () => {
    const s = JSON.parse(readFileSync(new URL('schema/sluice.schema.json', ROOT), 'utf8')) as { $defs: Record<string, { properties: Record<string, { default?: unknown; properties?: Record<string, { default?: unknown }> }> }> };
    const service = s.$defs.service.properties;
    const defaultsOf = (props: Record<string, { default?: unknown }> = {}): Record<string, unknown> =>
      Object.fromEntries(Object.entries(props).filter(([, p]) => p.default !== undefined).map(([k, p]) => [k, p.default]));
    const { statusMin: _min, statusMax: _max, ...health } = HEALTH_DEFAULTS;
    expect(defaultsOf(service.healthCheck.properties)).toEqual(health);
    expect(defaultsOf(service.affinity.properties)).toEqual({ ...AFFINITY_DEFAULTS });
    expect(defaultsOf(service)).toEqual({ ...SERVICE_DEFAULTS });
    expect(defaultsOf(s.$defs.backend.properties)).toEqual({ ...BACKEND_DEFAULTS });
  });

  it('states the Maglev table-size ceiling', () => {
    const s = JSON.parse(readFileSync(new URL('schema/sluice.schema.json', ROOT), 'utf8')) as { $defs: { service: { properties: { tableSize: { maximum: number } } } } };
    expect(s.$defs.service.properties.tableSize.maximum).toBe(MAGLEV_MAX_SIZE);
  });

  const schema = JSON.parse(readFileSync(new URL('schema/sluice.schema.json', ROOT), 'utf8')) as Json;
  const defs = schema.$defs as Record<string, Json>;
  const props = (s: Json): Record<string, Json> => s.properties as Record<string, Json>;

  it('states the same defaults the loader applies', () => {
    const top = props(schema);
    expect(top.hashSeed.default).toBe(CONFIG_DEFAULTS.hashSeed);
    expect(props(defs.service).tableSize.default).toBe(CONFIG_DEFAULTS.tableSize);
    expect(props(defs.backend).weight.default).toBe(CONFIG_DEFAULTS.weight);
    for (const group of ['flowTable', 'capture', 'safety', 'metrics', 'admin', 'log'] as const) {
      const fromSchema = Object.fromEntries(Object.entries(props(top[group])).map(([k, v]) => [k, v.default]));
      expect(fromSchema, group).toEqual(CONFIG_DEFAULTS[group]);
    }
  });

  it('documents every property with a title or description', () => {
    const undocumented: string[] = [];
    const walk = (s: Json, where: string): void => {
      for (const [key, sub] of Object.entries((s.properties ?? {}) as Record<string, Json>)) {
        if (typeof sub.title !== 'string' && typeof sub.description !== 'string') undocumented.push(`${where}.${key}`);
        walk(sub, `${where}.${key}`);
      }
    };
    walk(schema, '$');
    for (const [name, def] of Object.entries(defs)) walk(def, `$defs.${name}`);
    expect(undocumented).toEqual([]);
  });
});

describe('configWarnings', () => {
  it.each([
    ['no warning at 10 slots per backend', 31, 3, 0],
    ['warns under 10 slots per backend', 29, 3, 1],
  ] as const)('%s', (_name, tableSize, count, warnings) => {
    const doc = minimal();
    svc(doc).tableSize = tableSize;
    svc(doc).backends = Array.from({ length: count }, (_, i) => ({ address: `10.1.0.${i + 1}` }));
    const found = configWarnings(parseConfig(JSON.stringify(doc)));
    expect(found).toHaveLength(warnings);
    if (warnings > 0) expect(found[0]).toMatchObject({ path: '$.services[0].tableSize', rule: 'table-size-small' });
  });
});

describe('lifecycle and MPTCP settings', () => {
  const base = (): Record<string, unknown> => JSON.parse(readFileSync(new URL('minimal.json', EXAMPLES), 'utf8')) as Record<string, unknown>;
  const svc0 = (d: Record<string, unknown>): Record<string, unknown> => (d.services as Record<string, unknown>[])[0];
  it.each([
    { name: 'health check defaults applied', edit: (d: Record<string, unknown>) => (svc0(d).healthCheck = { type: 'http', path: '/healthz' }), check: (c: SluiceConfig) => expect(c.services[0].healthCheck).toMatchObject({ type: 'http', path: '/healthz', intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 }) },
    { name: 'mptcp on by default for TCP', edit: () => undefined, check: (c: SluiceConfig) => expect([c.services[0].mptcp, c.services[0].mptcpUnknownJoin]).toEqual([true, 'drop']) },
    { name: 'spare role, draining state, minPrimaries', edit: (d: Record<string, unknown>) => { svc0(d).minPrimaries = 2; (svc0(d).backends as Record<string, unknown>[])[1].role = 'spare'; (svc0(d).backends as Record<string, unknown>[])[0].state = 'draining'; }, check: (c: SluiceConfig) => expect([c.services[0].minPrimaries, c.services[0].backends[1].role, c.services[0].backends[0].state]).toEqual([2, 'spare', 'draining']) },
    { name: 'affinity defaults', edit: (d: Record<string, unknown>) => (svc0(d).affinity = { mode: 'source-ip' }), check: (c: SluiceConfig) => expect(c.services[0].affinity).toEqual({ mode: 'source-ip', timeoutS: 300, ipv4Prefix: 32, ipv6Prefix: 64 }) },
  ])('$name', ({ edit, check }) => {
    const d = base();
    edit(d);
    check(parseConfig(JSON.stringify(d)));
  });

  it.each([
    { name: 'health check timeout not below interval', edit: (d: Record<string, unknown>) => (svc0(d).healthCheck = { type: 'tcp', intervalMs: 500, timeoutMs: 500 }), path: '$.services[0].healthCheck.timeoutMs', rule: 'health-check' },
    { name: 'health check type unknown', edit: (d: Record<string, unknown>) => (svc0(d).healthCheck = { type: 'smtp' }), path: '$.services[0].healthCheck.type', rule: 'enum' },
    { name: 'all-ports service health check without a port', edit: (d: Record<string, unknown>) => { svc0(d).port = 'all'; svc0(d).healthCheck = { type: 'tcp' }; }, path: '$.services[0].healthCheck.port', rule: 'required' },
    { name: 'backend role misspelt', edit: (d: Record<string, unknown>) => ((svc0(d).backends as Record<string, unknown>[])[0].role = 'backup'), path: '$.services[0].backends[0].role', rule: 'enum' },
    { name: 'affinity prefix too long', edit: (d: Record<string, unknown>) => (svc0(d).affinity = { mode: 'source-ip', ipv4Prefix: 33 }), path: '$.services[0].affinity.ipv4Prefix', rule: 'maximum' },
  ])('rejects: $name', ({ edit, path, rule }) => {
    const d = base();
    edit(d);
    try {
      parseConfig(JSON.stringify(d));
      expect.unreachable('parseConfig accepted an invalid file');
    } catch (e) {
      expect((e as ConfigError).issues).toContainEqual(expect.objectContaining({ path, rule }));
    }
  });
});

describe('cluster settings', () => {
  const base = (): Record<string, unknown> => JSON.parse(readFileSync(new URL('minimal.json', EXAMPLES), 'utf8')) as Record<string, unknown>;
  it('a valid cluster section is defaulted (sync on, heartbeat 200 ms, failure 1 s)', () => {
    const d = base();
    d.cluster = { instanceId: 'lb1', listen: '10.1.0.2:7946', peers: [{ id: 'lb2', address: '10.1.0.3:7946' }], keyEnv: 'SLUICE_CLUSTER_KEY' };
    expect(parseConfig(JSON.stringify(d)).cluster).toMatchObject({ instanceId: 'lb1', sync: true, heartbeatMs: 200, failureMs: 1000 });
  });
  it.each([
    { name: 'key written inline', cluster: { instanceId: 'lb1', listen: '10.1.0.2:7946', peers: [], key: 'abc' }, path: '$.cluster.key' },
    { name: 'bad instance id', cluster: { instanceId: 'LB 1', listen: '10.1.0.2:7946', peers: [], keyEnv: 'K' }, path: '$.cluster.instanceId' },
    { name: 'sync not a boolean', cluster: { instanceId: 'lb1', listen: '10.1.0.2:7946', peers: [], keyEnv: 'K', sync: 'yes' }, path: '$.cluster.sync' },
  ])('rejects: $name', ({ cluster, path }) => {
    const d = base();
    d.cluster = cluster;
    try {
      parseConfig(JSON.stringify(d));
      expect.unreachable('accepted');
    } catch (e) {
      expect((e as ConfigError).issues).toContainEqual(expect.objectContaining({ path, rule: 'cluster' }));
    }
  });
});
