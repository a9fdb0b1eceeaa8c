/**
 * The "cluster" config section: defaults, every rule with the JSON path it reports, and loading
 * the cluster key from a file or an environment variable (injected, no real files or env).
 */
import { readFileSync } from 'node:fs';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { describe, expect, it } from 'vitest';
import { formatIssueLines } from '../../src/config/issues.js';
import { CLUSTER_DEFAULTS, clusterKeyIssues, loadClusterKey, parseHostPort, validateClusterConfig } from '../../src/control/cluster-config.js';

const base = {
  instanceId: 'lb-a',
  listen: '10.0.0.1:7946',
  peers: [
    { id: 'lb-b', address: '10.0.0.2:7946' },
    { id: 'lb-c', address: '10.0.0.3:7946' },
  ],
  keyFile: '/etc/sluice/cluster.key',
};

describe('validateClusterConfig', () => {
  it('accepts a minimal section and fills defaults', () => {
    const r = validateClusterConfig(base);
    expect(r).toEqual({
      ok: true,
      issues: [],
      config: { ...base, heartbeatMs: 200, failureMs: 1000, queryTimeoutMs: 20, sync: true },
    });
  });

  const valid: { name: string; raw: Record<string, unknown> }[] = [
    { name: 'IPv6 listen and peers', raw: { ...base, listen: '[2001:db8::1]:7946', peers: [{ id: 'lb-b', address: '[2001:db8::2]:7946' }] } },
    { name: 'no peers (one instance)', raw: { ...base, peers: [] } },
    { name: 'the shared peer list includes this instance', raw: { ...base, peers: [{ id: 'lb-a', address: '10.0.0.1:7946' }, ...base.peers] } },
    { name: 'keyEnv instead of keyFile', raw: { ...base, keyFile: undefined, keyEnv: 'SLUICE_CLUSTER_KEY' } },
    { name: 'explicit timings at their limits', raw: { ...base, heartbeatMs: 100, failureMs: 201, queryTimeoutMs: 50, holdPackets: 8 } },
  ];
  for (const c of valid) it(`accepts: ${c.name}`, () => expect(validateClusterConfig(c.raw).issues).toEqual([]));

  const invalid: { name: string; raw: unknown; path: string; says: RegExp }[] = [
    { name: 'not an object', raw: 'lb-a', path: '$.cluster', says: /expected an object/ },
    { name: 'bad instance id', raw: { ...base, instanceId: 'LB A' }, path: '$.cluster.instanceId', says: /a-z, 0-9/ },
    { name: 'instance id too long', raw: { ...base, instanceId: 'a'.repeat(64) }, path: '$.cluster.instanceId', says: /1\.\.63/ },
    { name: 'listen without port', raw: { ...base, listen: '10.0.0.1' }, path: '$.cluster.listen', says: /no port/ },
    { name: 'listen with a host name', raw: { ...base, listen: 'lb-a.local:7946' }, path: '$.cluster.listen', says: /IP literals only/ },
    { name: 'listen port 0', raw: { ...base, listen: '10.0.0.1:0' }, path: '$.cluster.listen', says: /1\.\.65535/ },
    { name: 'bare IPv6 listen', raw: { ...base, listen: '2001:db8::1:7946' }, path: '$.cluster.listen', says: /brackets/ },
    { name: 'peers not an array', raw: { ...base, peers: {} }, path: '$.cluster.peers', says: /array/ },
    { name: 'peer address without port', raw: { ...base, peers: [base.peers[0], { id: 'lb-c', address: '10.0.0.3' }] }, path: '$.cluster.peers[1].address', says: /no port/ },
    { name: 'duplicate peer id', raw: { ...base, peers: [base.peers[0], { id: 'lb-b', address: '10.0.0.9:1' }] }, path: '$.cluster.peers[1].id', says: /already used by peers\[0\]/ },
    { name: 'duplicate peer address', raw: { ...base, peers: [base.peers[0], { id: 'lb-c', address: '10.0.0.2:7946' }] }, path: '$.cluster.peers[1].address', says: /already used/ },
    { name: 'peer of the other family', raw: { ...base, peers: [{ id: 'lb-b', address: '[2001:db8::2]:7946' }] }, path: '$.cluster.peers[0].address', says: /listen is IPv4/ },
    { name: 'unknown peer field', raw: { ...base, peers: [{ ...base.peers[0], port: 1 }] }, path: '$.cluster.peers[0].port', says: /unknown field/ },
    { name: 'key written inline', raw: { ...base, key: 'abcd' }, path: '$.cluster.key', says: /never be written in the config/ },
    { name: 'no key source', raw: { ...base, keyFile: undefined }, path: '$.cluster.keyFile', says: /missing: set keyFile/ },
    { name: 'both key sources', raw: { ...base, keyEnv: 'K' }, path: '$.cluster.keyFile', says: /not both/ },
    { name: 'keyEnv holding a key instead of a name', raw: { ...base, keyFile: undefined, keyEnv: '0123abcd==' }, path: '$.cluster.keyEnv', says: /the name, not the key/ },
    { name: 'failureMs not above 2 x heartbeat', raw: { ...base, heartbeatMs: 200, failureMs: 400 }, path: '$.cluster.failureMs', says: /more than 2 x heartbeatMs/ },
    { name: 'queryTimeoutMs above 50', raw: { ...base, queryTimeoutMs: 51 }, path: '$.cluster.queryTimeoutMs', says: /1\.\.50/ },
    { name: 'heartbeatMs not an integer', raw: { ...base, heartbeatMs: 12.5 }, path: '$.cluster.heartbeatMs', says: /integer/ },
    { name: 'unknown field', raw: { ...base, heartbeat: 200 }, path: '$.cluster.heartbeat', says: /unknown field/ },
  ];
  for (const c of invalid) {
    it(`reports ${c.name} at ${c.path}`, () => {
      const r = validateClusterConfig(c.raw);
      expect(r.ok).toBe(false);
      const hit = r.issues.find((i) => i.path === c.path);
      expect(hit, formatIssueLines(r.issues)).toBeDefined();
      expect(hit?.message).toMatch(c.says);
    });
  }

  it('uses the caller-given path prefix', () => {
    const r = validateClusterConfig({ ...base, listen: 'x' }, '$.instances[2].cluster');
    expect(formatIssueLines(r.issues)).toMatch(/^\$\.instances\[2\]\.cluster\.listen: /);
  });
});

describe('parseHostPort', () => {
  const cases: { text: string; want: ReturnType<typeof parseHostPort> | RegExp }[] = [
    { text: '127.0.0.1:1', want: { host: '127.0.0.1', port: 1, family: 4 } },
    { text: '[::1]:65535', want: { host: '::1', port: 65535, family: 6 } },
    { text: '[::1]', want: /not \[IPv6\]:port/ },
    { text: '[fe80::1%eth0]:1', want: /no zone ids/ },
    { text: '1.2.3.4:65536', want: /outside/ },
    { text: '1.2.3.4:x', want: /not a number/ },
  ];
  for (const c of cases) {
    it(c.text, () => {
      const r = parseHostPort(c.text);
      if (c.want instanceof RegExp) expect(r).toMatch(c.want);
      else expect(r).toEqual(c.want);
    });
  }
});

describe('loadClusterKey', () => {
  const hex32 = 'ab'.repeat(32);
  const raw32 = Buffer.from(Array.from({ length: 40 }, (_, i) => (i * 37 + 200) & 0xff));
  const files: Record<string, Buffer> = {
    '/k/hex': Buffer.from(`${hex32}\n`),
    '/k/b64': Buffer.from(`${Buffer.alloc(32, 7).toString('base64')}\n`),
    '/k/raw': raw32,
    '/k/short': Buffer.from('abcd'),
  };
  const readFile = (p: string): Buffer => {
    const f = files[p];
    if (f === undefined) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return f;
  };
  const env = { HEXKEY: hex32, B64KEY: Buffer.alloc(48, 1).toString('base64'), SHORT: 'abcd', WORDS: 'not a key at all', EMPTY: '' };

  const cases: { name: string; cfg: { keyFile?: string; keyEnv?: string }; want: Buffer | RegExp }[] = [
    { name: 'hex file with a newline', cfg: { keyFile: '/k/hex' }, want: Buffer.from(hex32, 'hex') },
    { name: 'base64 file', cfg: { keyFile: '/k/b64' }, want: Buffer.alloc(32, 7) },
    { name: 'raw bytes file', cfg: { keyFile: '/k/raw' }, want: raw32 },
    { name: 'short file names the file, the size and the fix', cfg: { keyFile: '/k/short' }, want: /\/k\/short holds 2 bytes after hex decoding; at least 32.*openssl rand -hex 32/ },
    { name: 'missing file', cfg: { keyFile: '/k/none' }, want: /cannot read cluster.keyFile \/k\/none \(ENOENT\)/ },
    { name: 'hex env', cfg: { keyEnv: 'HEXKEY' }, want: Buffer.from(hex32, 'hex') },
    { name: 'base64 env', cfg: { keyEnv: 'B64KEY' }, want: Buffer.alloc(48, 1) },
    { name: 'unset env', cfg: { keyEnv: 'NOPE' }, want: /environment variable NOPE \(cluster.keyEnv\) is not set/ },
    { name: 'empty env', cfg: { keyEnv: 'EMPTY' }, want: /is not set/ },
    { name: 'env that is not hex or base64', cfg: { keyEnv: 'WORDS' }, want: /neither hex nor base64/ },
    { name: 'short env', cfg: { keyEnv: 'SHORT' }, want: /SHORT holds 2 bytes/ },
    { name: 'no source', cfg: {}, want: /neither cluster.keyFile nor cluster.keyEnv/ },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const load = (): Buffer => loadClusterKey(c.cfg, { env, readFile });
      if (c.want instanceof RegExp) expect(load).toThrow(c.want);
      else expect(load().equals(c.want)).toBe(true);
    });
  }
});

describe('the schema and the validator agree on the cluster section', () => {
  const schema = JSON.parse(readFileSync(new URL('../../schema/sluice.schema.json', import.meta.url), 'utf8')) as { $defs: Record<string, Record<string, unknown>> };
  const ajv = new Ajv2020({ allErrors: true, allowUnionTypes: true, strict: true });
  ajv.addKeyword({ keyword: 'patternHint', schemaType: 'string' });
  const schemaAccepts = ajv.compile({ $ref: '#/$defs/cluster', $defs: schema.$defs });

  // What a schema can say: types, patterns, ranges, required keys, exactly one key source.
  const both: { name: string; raw: Record<string, unknown> }[] = [
    { name: 'bad instance id', raw: { ...base, instanceId: 'LB A' } },
    { name: 'listen without port', raw: { ...base, listen: '10.0.0.1' } },
    { name: 'listen with a host name', raw: { ...base, listen: 'lb-a.local:7946' } },
    { name: 'peers not an array', raw: { ...base, peers: {} } },
    { name: '65 peers', raw: { ...base, peers: Array.from({ length: 65 }, (_, i) => ({ id: `p${i}`, address: `10.0.1.${i}:7946` })) } },
    { name: 'unknown peer field', raw: { ...base, peers: [{ ...base.peers[0], port: 1 }] } },
    { name: 'key written inline', raw: { ...base, key: 'abcd' } },
    { name: 'no key source', raw: { ...base, keyFile: undefined } },
    { name: 'both key sources', raw: { ...base, keyEnv: 'K' } },
    { name: 'keyEnv holding a key', raw: { ...base, keyFile: undefined, keyEnv: '0123abcd==' } },
    { name: 'queryTimeoutMs 51', raw: { ...base, queryTimeoutMs: 51 } },
    { name: 'heartbeatMs 12.5', raw: { ...base, heartbeatMs: 12.5 } },
    { name: 'heartbeatMs 5', raw: { ...base, heartbeatMs: 5 } },
    { name: 'holdPackets -1', raw: { ...base, holdPackets: -1 } },
    { name: 'sync "yes"', raw: { ...base, sync: 'yes' } },
  ];
  // What only the validator can say: address syntax, uniqueness, families, timing relations.
  const validatorOnly: { name: string; raw: Record<string, unknown> }[] = [
    { name: 'listen port 0', raw: { ...base, listen: '10.0.0.1:0' } },
    { name: 'duplicate peer id', raw: { ...base, peers: [base.peers[0], { id: 'lb-b', address: '10.0.0.9:1' }] } },
    { name: 'peer of the other family', raw: { ...base, peers: [{ id: 'lb-b', address: '[2001:db8::2]:7946' }] } },
    { name: 'failureMs not above 2 x heartbeat', raw: { ...base, heartbeatMs: 200, failureMs: 400 } },
  ];
  const json = (raw: Record<string, unknown>): unknown => JSON.parse(JSON.stringify(raw));

  it.each(both)('both refuse: $name', ({ raw }) => {
    expect(validateClusterConfig(json(raw)).ok).toBe(false);
    expect(schemaAccepts(json(raw))).toBe(false);
  });
  it.each(validatorOnly)('the validator refuses, the schema allows: $name', ({ raw }) => {
    expect(validateClusterConfig(json(raw)).ok).toBe(false);
    expect(schemaAccepts(json(raw))).toBe(true);
  });
  const accepted: { name: string; raw: Record<string, unknown> }[] = [
    { name: 'the base section', raw: base },
    { name: 'IPv6 listen and peers', raw: { ...base, listen: '[2001:db8::1]:7946', peers: [{ id: 'lb-b', address: '[2001:db8::2]:7946' }] } },
    { name: 'no peers', raw: { ...base, peers: [] } },
    { name: 'keyEnv instead of keyFile', raw: { ...base, keyFile: undefined, keyEnv: 'SLUICE_CLUSTER_KEY' } },
    { name: 'every field', raw: { ...base, heartbeatMs: 100, failureMs: 201, queryTimeoutMs: 50, holdPackets: 8, sync: false } },
  ];
  it.each(accepted)('both accept: $name', ({ raw }) => {
    expect(validateClusterConfig(json(raw)).ok).toBe(true);
    expect(schemaAccepts(json(raw)), JSON.stringify(schemaAccepts.errors)).toBe(true);
  });
  it('the schema states the defaults the validator applies', () => {
    const props = schema.$defs.cluster.properties as Record<string, { default?: unknown }>;
    const stated = Object.fromEntries(Object.entries(props).filter(([, p]) => p.default !== undefined).map(([k, p]) => [k, p.default]));
    expect(stated).toEqual({ ...CLUSTER_DEFAULTS });
  });
});

describe('clusterKeyIssues (what sluice check says about the key)', () => {
  const files: Record<string, Buffer> = { '/k/good': Buffer.from(`${Buffer.alloc(32, 9).toString('base64')}\n`), '/k/short': Buffer.from('abcd') };
  const readFile = (p: string): Buffer => {
    const f = files[p];
    if (f === undefined) throw Object.assign(new Error('no such file'), { code: 'ENOENT' });
    return f;
  };
  const env = { GOOD: 'ab'.repeat(32), BAD: 'not a key' };
  const cases: { name: string; cfg: { keyFile?: string; keyEnv?: string }; errors: string[]; warnings: string[] }[] = [
    { name: 'a good key file', cfg: { keyFile: '/k/good' }, errors: [], warnings: [] },
    { name: 'a missing key file', cfg: { keyFile: '/k/none' }, errors: ['$.cluster.keyFile cluster-key'], warnings: [] },
    { name: 'a key file too short', cfg: { keyFile: '/k/short' }, errors: ['$.cluster.keyFile cluster-key'], warnings: [] },
    { name: 'a good key variable', cfg: { keyEnv: 'GOOD' }, errors: [], warnings: [] },
    { name: 'a key variable that is not a key', cfg: { keyEnv: 'BAD' }, errors: ['$.cluster.keyEnv cluster-key'], warnings: [] },
    { name: 'a key variable unset where check runs', cfg: { keyEnv: 'UNSET' }, errors: [], warnings: ['$.cluster.keyEnv cluster-key'] },
  ];
  it.each(cases)('$name', ({ cfg, errors, warnings }) => {
    const r = clusterKeyIssues(cfg, { env, readFile });
    expect(r.errors.map((i) => `${i.path} ${i.rule}`)).toEqual(errors);
    expect(r.warnings.map((i) => `${i.path} ${i.rule}`)).toEqual(warnings);
  });
  it('reads at most 4 KiB of a key file (a wrong path such as /dev/zero is refused, not read forever)', () => {
    const r = clusterKeyIssues({ keyFile: '/dev/zero' });
    expect(r.errors[0]?.message).toMatch(/larger than 4096 bytes/);
  });
});
