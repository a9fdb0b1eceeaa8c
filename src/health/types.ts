/**
 * Health checks: what is checked, against which backend, and the key under which identical
 * checks of one backend (shared by several services) are run once.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { HEALTH_DEFAULTS } from '../config/defaults.js';
import { childPath, type ConfigIssue } from '../config/issues.js';

export type HealthCheckType = 'tcp' | 'http' | 'udp' | 'icmp';

export interface HealthCheckConfig {
  type: HealthCheckType;
  /** Port to probe; default: the service port. Ignored by icmp. */
  port?: number;
  /** http: request path, default '/'. */
  path?: string;
  /** http: accepted status codes; default any of 200-399. */
  expectStatus?: number[] | number;
  /** http: Host header; default the backend address (and port when not 80). */
  host?: string;
  /** udp: payload sent, default '' (an empty datagram). */
  send?: string;
  /** udp: when set, the reply must contain this text. */
  expect?: string;
  /** Time between probe starts, default 2000. */
  intervalMs: number;
  /** Probe deadline, default 1000; must be below intervalMs. */
  timeoutMs: number;
  /** Consecutive successes that bring a backend up, default 2. */
  rise: number;
  /** Consecutive failures that bring a backend down, default 3. */
  fall: number;
}

export interface HealthTarget {
  /** Backend address, canonical IPv4/IPv6 text. */
  address: string;
  /** Port actually probed (check.port or the service port); 0 for icmp. */
  port: number;
  check: HealthCheckConfig;
}

/** The outcome of one probe. A probe never throws; failures carry readable text. */
export interface ProbeResult {
  ok: boolean;
  error?: string;
  latencyMs: number;
}

export { HEALTH_DEFAULTS };

/** A check as written in a config file: only `type` is required. */
export type HealthCheckInput = Partial<HealthCheckConfig> & Pick<HealthCheckConfig, 'type'>;

const CHECK_TYPES: readonly string[] = ['tcp', 'http', 'udp', 'icmp'];

/**
 * Apply defaults and validate. `path` is the JSON path of the check in the config (e.g.
 * `$.services[2].healthCheck`); every problem is an issue at the offending field, rule
 * "health-check". The config loader reports these beside the schema's findings.
 */
export function checkHealthCheck(input: HealthCheckInput, path = '$.healthCheck'): { check: HealthCheckConfig; issues: ConfigIssue[] } {
  const check: HealthCheckConfig = {
    ...input,
    intervalMs: input.intervalMs ?? HEALTH_DEFAULTS.intervalMs,
    timeoutMs: input.timeoutMs ?? HEALTH_DEFAULTS.timeoutMs,
    rise: input.rise ?? HEALTH_DEFAULTS.rise,
    fall: input.fall ?? HEALTH_DEFAULTS.fall,
  };
  const issues: ConfigIssue[] = [];
  const fail = (field: string, message: string): void => {
    issues.push({ path: childPath(path, field), rule: 'health-check', message });
  };
  if (!CHECK_TYPES.includes(check.type)) fail('type', 'must be one of tcp, http, udp, icmp');
  for (const field of ['intervalMs', 'timeoutMs', 'rise', 'fall'] as const) {
    const v = check[field];
    if (!Number.isInteger(v) || v < 1) fail(field, `must be an integer >= 1 (got ${v})`);
  }
  if (check.timeoutMs >= check.intervalMs) {
    fail('timeoutMs', `must be below intervalMs (${check.timeoutMs} >= ${check.intervalMs}) so probes of one backend never overlap`);
  }
  if (check.port !== undefined && (!Number.isInteger(check.port) || check.port < 1 || check.port > 65535)) {
    fail('port', `must be an integer 1..65535 (got ${check.port})`);
  }
  if (check.path !== undefined && (typeof check.path !== 'string' || !check.path.startsWith('/'))) {
    fail('path', `must start with '/' (got ${JSON.stringify(check.path)})`);
  }
  for (const s of statusList(check.expectStatus)) {
    if (!Number.isInteger(s) || s < 100 || s > 599) {
      fail('expectStatus', `status codes are integers 100..599 (got ${s})`);
      break;
    }
  }
  return { check, issues };
}

/**
 * Apply defaults to a check and validate it, for callers outside the config loader. `where`
 * names the place for the message (e.g. `services[2].healthCheck`). Throws a RangeError naming
 * the first offending field and the rule.
 */
export function resolveCheck(input: HealthCheckInput, where = 'healthCheck'): HealthCheckConfig {
  const { check, issues } = checkHealthCheck(input, '$');
  if (issues.length > 0) throw new RangeError(`${where}${issues[0].path.slice(1)}: ${issues[0].message}`);
  return check;
}

/**
 * The target a service's check makes of one backend. `servicePort` 0 ("all ports") needs an
 * explicit check port for tcp/http/udp.
 */
export function healthTarget(address: string, servicePort: number, check: HealthCheckConfig): HealthTarget {
  if (!isIPv4(address) && !isIPv6(address)) throw new RangeError(`health target: not an IP address: ${JSON.stringify(address)}`);
  if (check.type === 'icmp') return { address, port: 0, check };
  const port = check.port ?? servicePort;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new RangeError(`health target ${address}: a ${check.type} check needs a port 1..65535 (service port ${servicePort}; set healthCheck.port)`);
  }
  return { address, port, check };
}

export function statusList(expect: number[] | number | undefined): number[] {
  if (expect === undefined) return [];
  return Array.isArray(expect) ? expect : [expect];
}

/** Whether `status` is accepted by an http check. */
export function statusAccepted(check: HealthCheckConfig, status: number): boolean {
  const list = statusList(check.expectStatus);
  if (list.length === 0) return status >= HEALTH_DEFAULTS.statusMin && status <= HEALTH_DEFAULTS.statusMax;
  return list.includes(status);
}

/** Human text of the accepted statuses, for error messages. */
export function describeExpectedStatus(check: HealthCheckConfig): string {
  const list = statusList(check.expectStatus);
  return list.length === 0 ? `${HEALTH_DEFAULTS.statusMin}-${HEALTH_DEFAULTS.statusMax}` : list.join(',');
}

/**
 * Identity of a check of one backend: every field that changes what is sent, what is accepted
 * or how results are judged. Two services with the same check of the same backend get the same
 * key and share one probe schedule and one state. Fields are in a fixed order and free text is
 * JSON-quoted, so distinct checks never collide.
 */
export function targetKey(t: HealthTarget): string {
  const c = t.check;
  const parts: string[] = [c.type, t.address.toLowerCase(), String(c.type === 'icmp' ? 0 : t.port)];
  if (c.type === 'http') {
    const statuses = [...new Set(statusList(c.expectStatus))].sort((a, b) => a - b);
    parts.push(
      JSON.stringify(c.path ?? HEALTH_DEFAULTS.path),
      `host=${JSON.stringify(c.host ?? '')}`,
      `status=${statuses.length ? statuses.join(',') : `${HEALTH_DEFAULTS.statusMin}-${HEALTH_DEFAULTS.statusMax}`}`,
    );
  } else if (c.type === 'udp') {
    parts.push(`send=${JSON.stringify(c.send ?? HEALTH_DEFAULTS.send)}`, `expect=${JSON.stringify(c.expect ? c.expect : null)}`);
  }
  parts.push(`every=${c.intervalMs}`, `timeout=${c.timeoutMs}`, `rise=${c.rise}`, `fall=${c.fall}`);
  return parts.join('|');
}
