/**
 * The "announce" config section: defaults, every rule with the JSON path and rule name it
 * reports, and the section going through the whole config loader (schema + semantic checks).
 */
import { describe, expect, it } from 'vitest';
import { validateAnnounceConfig } from '../../src/announce/config.js';
import { ConfigError, parseConfig } from '../../src/config/load.js';

const base = { speaker: 'bird2', localAsn: 65001, peers: [{ address: '10.99.0.1', asn: 65000 }] };

describe('validateAnnounceConfig', () => {
  it('accepts a minimal section and fills defaults', () => {
    expect(validateAnnounceConfig(base)).toEqual({
      ok: true,
      issues: [],
      config: {
        speaker: 'bird2',
        localAsn: 65001,
        peers: [{ address: '10.99.0.1', asn: 65000 }],
        nextHop: {},
        communities: [],
        asPathPrepend: 0,
        bfd: { enabled: true, intervalMs: 100, multiplier: 3 },
        holdTimeS: 9,
      },
    });
  });

  const valid: { name: string; raw: Record<string, unknown> }[] = [
    { name: 'IPv4 and IPv6 peers with a password', raw: { ...base, peers: [{ address: '10.99.0.1', asn: 65000, password: 's3cret' }, { address: 'fd00:99::1', asn: 65000 }] } },
    { name: 'explicit next hops per family', raw: { ...base, nextHop: { ipv4: '10.99.0.2', ipv6: 'fd00:99::2' } } },
    { name: 'standard and large communities', raw: { ...base, communities: ['65000:100', '4200000000:1:2'] } },
    { name: 'backup by MED and prepends', raw: { ...base, med: 100, asPathPrepend: 3 } },
    { name: 'BFD off, longest hold time', raw: { ...base, bfd: { enabled: false }, holdTimeS: 65535 } },
    { name: '4-byte ASN and a router id', raw: { ...base, localAsn: 4200000000, routerId: '10.99.0.2' } },
    { name: 'run directory', raw: { ...base, runDir: '/run/sluice/lb1-bgp' } },
  ];
  for (const c of valid) it(`accepts: ${c.name}`, () => expect(validateAnnounceConfig(c.raw).issues).toEqual([]));

  const invalid: { name: string; raw: unknown; path: string; rule: string; says: RegExp }[] = [
    { name: 'not an object', raw: 'bird2', path: '$.announce', rule: 'type', says: /expected an object/ },
    { name: 'unknown speaker', raw: { ...base, speaker: 'quagga' }, path: '$.announce.speaker', rule: 'enum', says: /"bird2"/ },
    { name: 'ASN 0', raw: { ...base, localAsn: 0 }, path: '$.announce.localAsn', rule: 'asn', says: /1\.\.4294967295/ },
    { name: 'ASN too large', raw: { ...base, localAsn: 2 ** 32 }, path: '$.announce.localAsn', rule: 'asn', says: /AS number/ },
    { name: 'no peers', raw: { ...base, peers: [] }, path: '$.announce.peers', rule: 'required', says: /non-empty/ },
    { name: 'peer host name', raw: { ...base, peers: [{ address: 'router1', asn: 65000 }] }, path: '$.announce.peers[0].address', rule: 'ip-address', says: /not an IP address/ },
    { name: 'peer with zone index', raw: { ...base, peers: [{ address: 'fe80::1%eth0', asn: 65000 }] }, path: '$.announce.peers[0].address', rule: 'ip-address', says: /not an IP/ },
    { name: 'duplicate peer', raw: { ...base, peers: [base.peers[0], base.peers[0]] }, path: '$.announce.peers[1].address', rule: 'unique-peer', says: /already peers\[0\]/ },
    { name: 'peer without ASN', raw: { ...base, peers: [{ address: '10.99.0.1' }] }, path: '$.announce.peers[0].asn', rule: 'asn', says: /AS number/ },
    { name: 'password with a quote', raw: { ...base, peers: [{ address: '10.99.0.1', asn: 65000, password: 'a"b' }] }, path: '$.announce.peers[0].password', rule: 'password', says: /printable/ },
    { name: 'unknown peer key', raw: { ...base, peers: [{ address: '10.99.0.1', asn: 65000, port: 1179 }] }, path: '$.announce.peers[0].port', rule: 'additionalProperties', says: /address, asn, password/ },
    { name: 'IPv6 next hop under ipv4', raw: { ...base, nextHop: { ipv4: 'fd00:99::2' } }, path: '$.announce.nextHop.ipv4', rule: 'family', says: /expected an IPv4/ },
    { name: 'router id IPv6', raw: { ...base, routerId: '::1' }, path: '$.announce.routerId', rule: 'family', says: /IPv4/ },
    { name: 'community out of range', raw: { ...base, communities: ['65536:1'] }, path: '$.announce.communities[0]', rule: 'community', says: /0\.\.65535/ },
    { name: 'community not a pair', raw: { ...base, communities: ['no-export'] }, path: '$.announce.communities[0]', rule: 'community', says: /ASN:value/ },
    { name: 'too many prepends', raw: { ...base, asPathPrepend: 9 }, path: '$.announce.asPathPrepend', rule: 'range', says: /0\.\.8/ },
    { name: 'hold time below 3 s', raw: { ...base, holdTimeS: 1 }, path: '$.announce.holdTimeS', rule: 'range', says: /3\.\.65535/ },
    { name: 'BFD interval 0', raw: { ...base, bfd: { intervalMs: 0 } }, path: '$.announce.bfd.intervalMs', rule: 'range', says: /10\.\.60000/ },
    { name: 'BFD enabled not boolean', raw: { ...base, bfd: { enabled: 'yes' } }, path: '$.announce.bfd.enabled', rule: 'type', says: /true or false/ },
    { name: 'relative run dir', raw: { ...base, runDir: 'bgp' }, path: '$.announce.runDir', rule: 'path', says: /absolute/ },
    { name: 'misspelled key', raw: { ...base, localAS: 65001 }, path: '$.announce.localAS', rule: 'additionalProperties', says: /localAsn/ },
  ];
  for (const c of invalid) {
    it(`rejects: ${c.name} (${c.path})`, () => {
      const r = validateAnnounceConfig(c.raw);
      expect(r.ok).toBe(false);
      const hit = r.issues.find((i) => i.path === c.path);
      expect(hit, JSON.stringify(r.issues)).toBeDefined();
      expect(hit?.rule).toBe(c.rule);
      expect(hit?.message).toMatch(c.says);
    });
  }
});

describe('announce in a whole config file', () => {
  const file = (announce: unknown): string =>
    JSON.stringify({
      interface: 'eth0',
      services: [{ name: 'web', vip: '198.51.100.10', port: 80, protocol: 'tcp', forwarding: 'dsr-l2', backends: [{ address: '10.0.0.11' }] }],
      announce,
    });

  it('loads into config.announce', () => {
    const c = parseConfig(file(base));
    expect(c.announce?.localAsn).toBe(65001);
    expect(c.announce?.bfd.multiplier).toBe(3);
  });

  it('absent: no announce section in the loaded config', () => {
    const c = parseConfig(JSON.stringify({ interface: 'eth0', services: [{ name: 'web', vip: '198.51.100.10', port: 80, protocol: 'tcp', forwarding: 'dsr-l2', backends: [{ address: '10.0.0.11' }] }] }));
    expect(c.announce).toBeUndefined();
  });

  it('reports issues with their JSON path through the loader', () => {
    let err: unknown;
    try {
      parseConfig(file({ ...base, localAsn: -1 }));
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).issues).toContainEqual(expect.objectContaining({ path: '$.announce.localAsn', rule: 'asn' }));
  });
});
