/**
 * The checks a JSON Schema cannot express: IP syntax and canonical form, address families,
 * unicast addresses, prime table sizes, unique services and backends, health-check timing, the
 * cluster section. They run even when the schema failed, and skip any value whose type is
 * already wrong, so one run reports everything. Every loop is over a list the scanner has
 * bounded (SCAN_LIMITS), with Maps for uniqueness: time linear in the file.
 */
import { isIP } from 'node:net';
import { validateClusterConfig } from '../control/cluster-config.js';
import { validateAnnounceConfig } from '../announce/config.js';
import { isPrime, MAGLEV_MAX_SIZE } from '../hash/maglev.js';
import { checkHealthCheck, type HealthCheckInput } from '../health/types.js';
import { ipv6ToBytes, isIpv4Mapped, normalizeAddress } from '../packet/address.js';
import { childPath, isRecord, jsonPath, show, type IssueList, type Segment } from './issues.js';

export type AddressCheck = { ok: true; address: string; family: 4 | 6 } | { ok: false; rule: string; message: string };

/** Why an address cannot be a VIP, backend or encap source, or undefined if it is unicast. */
function nonUnicastReason(address: string, family: 4 | 6): string | undefined {
  if (family === 4) {
    const [a, b, c, d] = address.split('.').map(Number);
    if (a === 0) return 'is in 0.0.0.0/8 ("this network")';
    if (a === 127) return 'is a loopback address';
    if (a >= 224 && a <= 239) return 'is a multicast address';
    if (a === 255 && b === 255 && c === 255 && d === 255) return 'is the broadcast address';
    return undefined;
  }
  const bytes = ipv6ToBytes(address);
  if (bytes.every((x) => x === 0)) return 'is the unspecified address';
  if (bytes.subarray(0, 15).every((x) => x === 0) && bytes[15] === 1) return 'is the loopback address';
  if (bytes[0] === 0xff) return 'is a multicast address';
  return undefined;
}

/** A VIP, backend or encap source: a unicast IPv4 or IPv6 address, returned in canonical form. */
export function checkAddress(value: string): AddressCheck {
  if (value.includes('%')) {
    return { ok: false, rule: 'ip-address', message: `${show(value)} has a zone index; write the address without "%..."` };
  }
  const family = isIP(value);
  if (family === 0) {
    const hint = /^[0-9.]+$/.test(value)
      ? ' (IPv4: four decimal octets 0..255 without leading zeros)'
      : value.includes(':')
        ? ' (IPv6: up to 8 hex groups, at most one "::")'
        : '';
    return { ok: false, rule: 'ip-address', message: `${show(value)} is not a valid IPv4 or IPv6 address${hint}` };
  }
  if (family === 6) {
    const bytes = ipv6ToBytes(value);
    if (isIpv4Mapped(bytes)) {
      const v4 = `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
      return { ok: false, rule: 'ipv4-mapped', message: `IPv4-mapped IPv6 address ${show(value)} is not accepted; write the IPv4 address "${v4}"` };
    }
  }
  const address = normalizeAddress(value) as string;
  const reason = nonUnicastReason(address, family === 4 ? 4 : 6);
  if (reason) return { ok: false, rule: 'unicast', message: `${show(value)} ${reason}; use a unicast address` };
  return { ok: true, address, family: family === 4 ? 4 : 6 };
}

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

/** Problem with a "host:port" / "[v6]:port" listen address, or undefined if it is fine. */
function listenProblem(value: string): string | undefined {
  const usage = 'write "host:port" or "[ipv6]:port", e.g. "127.0.0.1:9180" or "[::1]:9180"';
  let host: string;
  let port: string;
  const bracketed = /^\[([^\]]*)\]:([^:]*)$/.exec(value);
  if (bracketed) {
    host = bracketed[1];
    port = bracketed[2];
    if (isIP(host) !== 6 || host.includes('%')) return `${show(host)} in brackets is not an IPv6 address; ${usage}`;
  } else {
    const colon = value.lastIndexOf(':');
    if (colon < 0) return `has no port; ${usage}`;
    host = value.slice(0, colon);
    port = value.slice(colon + 1);
    if (host.includes(':')) return `an IPv6 host must be in brackets; ${usage}`;
    if (/^[0-9.]+$/.test(host) ? isIP(host) !== 4 : !HOSTNAME.test(host)) {
      return `${show(host)} is not an IPv4 address or host name; ${usage}`;
    }
  }
  if (!/^[0-9]{1,5}$/.test(port) || Number(port) < 1 || Number(port) > 65535) {
    return `port ${show(port)} must be 1..65535; ${usage}`;
  }
  return undefined;
}

function primeNeighbours(n: number): string {
  let below = n - 1;
  while (below >= 3 && !isPrime(below)) below--;
  let above = n + 1;
  while (!isPrime(above)) above++;
  const options = [...(below >= 3 ? [below] : []), ...(above <= MAGLEV_MAX_SIZE ? [above] : [])];
  return options.join(' or ');
}

function portValue(v: unknown): number | undefined {
  if (v === 'all') return 0;
  if (typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535) return v;
  return undefined;
}

/** Adds the findings on a parsed file to `issues`. */
export function checkSemantics(doc: unknown, issues: IssueList): void {
  if (!isRecord(doc)) return;

  if (doc.cluster !== undefined) issues.addAll(validateClusterConfig(doc.cluster, '$.cluster').issues);
  if (doc.announce !== undefined) {
    const a = validateAnnounceConfig(doc.announce, '$.announce');
    if (!a.ok) issues.addAll(a.issues);
  }

  if (isRecord(doc.encap)) {
    for (const [key, family] of [['source4', 4], ['source6', 6]] as const) {
      const v = doc.encap[key];
      if (typeof v !== 'string') continue;
      const path = jsonPath(['encap', key]);
      const r = checkAddress(v);
      if (!r.ok) issues.add({ path, rule: r.rule, message: r.message });
      else if (r.family !== family) issues.add({ path, rule: 'family', message: `must be an IPv${family} address, got IPv${r.family} ${show(v)}` });
    }
  }

  // Workers share one interface through PACKET_FANOUT, which only the ring engine's sockets join.
  if (isRecord(doc.dataplane) && doc.dataplane.workers !== undefined && doc.dataplane.workers !== 1) {
    const engine = isRecord(doc.capture) && typeof doc.capture.engine === 'string' ? doc.capture.engine : 'ring';
    if (engine !== 'ring') {
      issues.add({
        path: '$.dataplane.workers',
        rule: 'workers-engine',
        message: `more than one worker needs capture.engine "ring" (PACKET_FANOUT); engine ${show(engine)} captures with one handle: set workers to 1 or the engine to "ring"`,
      });
    }
  }

  if (isRecord(doc.metrics) && typeof doc.metrics.listen === 'string') {
    const problem = listenProblem(doc.metrics.listen);
    if (problem) issues.add({ path: '$.metrics.listen', rule: 'listen-address', message: problem });
  }

  if (isRecord(doc.admin) && typeof doc.admin.socket === 'string' && Buffer.byteLength(doc.admin.socket) > 107) {
    issues.add({ path: '$.admin.socket', rule: 'maxLength', message: 'must be at most 107 bytes (Unix socket path limit)' });
  }

  if (!Array.isArray(doc.services)) return;
  const names = new Map<string, number>();
  const endpoints = new Map<string, number>(); // vip|protocol|port -> service index
  const allPorts = new Map<string, number>(); // vip|protocol -> index of its "all"-ports service
  const singlePorts = new Map<string, number>(); // vip|protocol -> index of a single-port service

  doc.services.forEach((svc: unknown, i: number) => {
    if (!isRecord(svc)) return;
    const at = (...rest: Segment[]): string => jsonPath(['services', i, ...rest]);

    if (typeof svc.name === 'string') {
      const first = names.get(svc.name);
      if (first !== undefined) issues.add({ path: at('name'), rule: 'unique-name', message: `service name ${show(svc.name)} is already used by services[${first}]; rename one` });
      else names.set(svc.name, i);
    }

    let vip: { address: string; family: 4 | 6 } | undefined;
    if (typeof svc.vip === 'string') {
      const r = checkAddress(svc.vip);
      if (r.ok) vip = r;
      else issues.add({ path: at('vip'), rule: r.rule, message: r.message });
    }

    const port = portValue(svc.port);
    const protocol = svc.protocol === 'tcp' || svc.protocol === 'udp' ? svc.protocol : undefined;
    if (vip && port !== undefined && protocol) {
      const endpoint = `${vip.address}|${protocol}|${port}`;
      const group = `${vip.address}|${protocol}`;
      const portText = port === 0 ? 'all ports' : `port ${port}`;
      const same = endpoints.get(endpoint);
      if (same !== undefined) {
        issues.add({ path: at(), rule: 'unique-vip-port', message: `${vip.address} ${protocol} ${portText} is already served by services[${same}]; merge the two or change vip, protocol or port` });
      } else {
        endpoints.set(endpoint, i);
        const other = port === 0 ? singlePorts.get(group) : allPorts.get(group);
        if (other !== undefined) {
          issues.add({
            path: at(),
            rule: 'port-overlap',
            message: `${portText} on ${vip.address} ${protocol} overlaps services[${other}] (one of them matches all ports, so the match is ambiguous); remove the "all" service or give it another vip`,
          });
        }
        if (port === 0) allPorts.set(group, i);
        else if (!singlePorts.has(group)) singlePorts.set(group, i);
      }
    }

    const hc = svc.healthCheck;
    if (isRecord(hc) && typeof hc.type === 'string') {
      // Where the schema already named a field, its word stands; these add what it cannot say.
      for (const issue of checkHealthCheck(hc as unknown as HealthCheckInput, at('healthCheck')).issues) {
        if (!issues.hasPath(issue.path)) issues.add(issue);
      }
      if (svc.port === 'all' && hc.type !== 'icmp' && hc.port === undefined) {
        issues.add({ path: at('healthCheck', 'port'), rule: 'required', message: 'a service on all ports needs a health check port; add "port": N' });
      }
    }

    const backends = Array.isArray(svc.backends) ? svc.backends : [];
    const tableSize = svc.tableSize;
    if (typeof tableSize === 'number' && Number.isInteger(tableSize) && tableSize >= 3 && tableSize <= MAGLEV_MAX_SIZE) {
      if (!isPrime(tableSize)) {
        issues.add({ path: at('tableSize'), rule: 'prime', message: `${tableSize} is not prime; Maglev needs a prime table size, e.g. ${primeNeighbours(tableSize)}` });
      }
      if (tableSize < backends.length) {
        issues.add({
          path: at('tableSize'),
          rule: 'table-size',
          message: `${tableSize} slots cannot hold ${backends.length} backends; use a prime >= ${backends.length} (about ${100 * backends.length} spreads weights evenly)`,
        });
      }
    }

    const seen = new Map<string, number>();
    backends.forEach((b: unknown, j: number) => {
      if (!isRecord(b) || typeof b.address !== 'string') return;
      const path = childPath(at('backends', j), 'address');
      const r = checkAddress(b.address);
      if (!r.ok) {
        issues.add({ path, rule: r.rule, message: r.message });
        return;
      }
      const first = seen.get(r.address);
      if (first !== undefined) issues.add({ path, rule: 'unique-backend', message: `backend ${r.address} is already listed as backends[${first}]; remove one` });
      else seen.set(r.address, j);
      if (svc.forwarding === 'dsr-l2' && vip && r.family !== vip.family) {
        issues.add({
          path,
          rule: 'family',
          message: `dsr-l2 forwards the VIP's own packet, so an IPv${vip.family} VIP needs IPv${vip.family} backends, got ${r.address}; use "forwarding": "ipip" to mix families`,
        });
      }
    });
  });
}
