/**
 * Turns a config file into a SluiceConfig, in four steps that each report ConfigIssues (JSON
 * path + rule + message; ./issues.ts) and all of them at once:
 *   1. ./json-scan.ts       strict JSON syntax with line and column, repeated keys, shape limits
 *   2. ./schema-check.ts    the JSON Schema in schema/sluice.schema.json, every error
 *   3. ./semantic-issues.ts what a schema cannot express (addresses, primes, uniqueness, cluster)
 *   4. buildConfig below    defaults (./defaults.ts) and canonical forms
 * Input is bounded: files over MAX_CONFIG_BYTES are refused unread, every step is linear in the
 * file size, and an IssueList keeps the first MAX_REPORTED_ISSUES issues and counts the rest.
 */
import { FileTooLargeError, readBounded } from './bounded-read.js';
import { validateClusterConfig } from '../control/cluster-config.js';
import { validateAnnounceConfig } from '../announce/config.js';
import { checkHealthCheck, type HealthCheckInput } from '../health/types.js';
import { normalizeAddress } from '../packet/address.js';
import { AFFINITY_DEFAULTS, BACKEND_DEFAULTS, CONFIG_DEFAULTS, SERVICE_DEFAULTS } from './defaults.js';
import { ConfigError, IssueList, type ConfigIssue } from './issues.js';
import { scanJson } from './json-scan.js';
import { checkSchema } from './schema-check.js';
import { checkAddress, checkSemantics } from './semantic-issues.js';
import type { AffinityConfig, Forwarding, Protocol, ServiceConfig, SluiceConfig } from './types.js';

export { ConfigError, formatIssue, formatIssues, MAX_REPORTED_ISSUES, type ConfigIssue } from './issues.js';
export { CONFIG_DEFAULTS } from './defaults.js';

/** Largest config file accepted: a 4096-service file with a dozen backends each is under 4 MiB. */
export const MAX_CONFIG_BYTES = 8 * 1024 * 1024;

/** The file as the schema describes it (before defaults). */
interface RawBackend {
  address: string;
  weight?: number;
  state?: 'active' | 'draining';
  role?: 'primary' | 'spare';
}
interface RawService {
  name: string;
  vip: string;
  port: number | 'all';
  protocol: Protocol;
  forwarding: Forwarding;
  tableSize?: number;
  backends: RawBackend[];
  mptcp?: boolean;
  mptcpUnknownJoin?: 'drop' | 'hash';
  icmpEcho?: 'reply' | 'forward' | 'drop';
  icmpErrors?: 'forward' | 'drop';
  minPrimaries?: number;
  healthCheck?: HealthCheckInput;
  affinity?: Partial<AffinityConfig> & { mode: 'source-ip' };
}
interface RawConfig {
  interface: string;
  egressInterface?: string;
  encap?: { source4?: string; source6?: string };
  hashSeed?: number;
  services: RawService[];
  flowTable?: Partial<SluiceConfig['flowTable']>;
  fragments?: Partial<SluiceConfig['fragments']>;
  vlan?: Partial<SluiceConfig['vlan']>;
  capture?: Partial<SluiceConfig['capture']>;
  dataplane?: Partial<NonNullable<SluiceConfig['dataplane']>>;
  safety?: Partial<SluiceConfig['safety']>;
  metrics?: { listen?: string };
  admin?: Partial<SluiceConfig['admin']>;
  log?: { level?: SluiceConfig['log']['level'] };
  cluster?: unknown;
  announce?: unknown;
}

// ---------------------------------------------------------------------------------------------
// Entry points

function tooLarge(size: string): ConfigIssue {
  return {
    path: '$',
    rule: 'file-size',
    message: `the config is ${size}; at most ${MAX_CONFIG_BYTES} bytes (${MAX_CONFIG_BYTES / 1024 / 1024} MiB) are accepted, far more than any real config needs`,
  };
}

export function parseConfig(text: string, sourceName = '<config>'): SluiceConfig {
  // A UTF-16 code unit is at least one UTF-8 byte: a text this long cannot fit the limit.
  if (text.length > MAX_CONFIG_BYTES) throw new ConfigError([tooLarge(`${text.length} characters`)], sourceName);
  // Editors on some systems prepend a byte-order mark; it is not JSON but carries no meaning.
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  const issues = new IssueList();
  const scan = scanJson(body, issues);
  if (scan.fatal) throw new ConfigError([scan.fatal], sourceName);
  // Past the shape limits the schema and rules would only repeat the same finding many times.
  if (scan.overLimits) throw new ConfigError(issues, sourceName);
  const doc: unknown = JSON.parse(body);
  const schemaOk = checkSchema(doc, issues);
  checkSemantics(doc, issues);
  if (issues.total > 0 || !schemaOk) throw new ConfigError(issues, sourceName);
  return buildConfig(doc as RawConfig);
}

/** What a config file holds: the config, advice that does not make it invalid, and its text. */
export interface LoadedConfig {
  config: SluiceConfig;
  /** configWarnings(config): `sluice check` prints them; `sluice run` should log them at start. */
  warnings: ConfigIssue[];
  /** The text parsed, so a watcher can tell whether the file changed. */
  text: string;
}

/** Reads (at most MAX_CONFIG_BYTES) and parses a file. Throws a ConfigError. */
export function readConfigFile(path: string): LoadedConfig {
  let text: string;
  try {
    text = readBounded(path, MAX_CONFIG_BYTES).toString('utf8');
  } catch (err) {
    throw fileError(path, err);
  }
  const config = parseConfig(text, path);
  return { config, warnings: configWarnings(config), text };
}

export function loadConfigFile(path: string): SluiceConfig {
  return readConfigFile(path).config;
}

/** A ConfigError (rule "file", or "file-size") for a config file that could not be read. */
export function fileError(path: string, err: unknown): ConfigError {
  if (err instanceof FileTooLargeError) return new ConfigError([tooLarge(`larger than that (${path})`)], path);
  const code = typeof err === 'object' && err !== null && 'code' in err ? String(err.code) : '';
  const reason = err instanceof Error ? err.message : String(err);
  const hint =
    code === 'ENOENT'
      ? 'check the path; `sluice check <file>` validates a file'
      : code === 'EACCES'
        ? 'make the file readable by the user running sluice'
        : code === 'EISDIR'
          ? 'give the path of the JSON file, not of its directory'
          : 'check the path and permissions';
  return new ConfigError([{ path: '$', rule: 'file', message: `cannot read ${path}: ${reason}; ${hint}` }], path);
}

/**
 * Advice that does not make a config invalid: a Maglev table with fewer than 10 slots per
 * backend cannot follow the weights closely and moves more flows when backends change.
 */
export function configWarnings(config: SluiceConfig): ConfigIssue[] {
  const out: ConfigIssue[] = [];
  config.services.forEach((s, i) => {
    if (s.tableSize < 10 * s.backends.length) {
      out.push({
        path: `$.services[${i}].tableSize`,
        rule: 'table-size-small',
        message: `${s.tableSize} slots for ${s.backends.length} backends is under 10 per backend; use a prime near ${100 * s.backends.length} or more`,
      });
    }
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Defaults and canonical form (the file is valid here)

function buildService(s: RawService): ServiceConfig {
  const vip = checkAddress(s.vip);
  if (!vip.ok) throw new Error(`unreachable: vip ${s.vip} passed validation`);
  const d = SERVICE_DEFAULTS;
  return {
    name: s.name,
    vip: vip.address,
    family: vip.family,
    port: s.port === 'all' ? 0 : s.port,
    protocol: s.protocol,
    forwarding: s.forwarding,
    tableSize: s.tableSize ?? d.tableSize,
    backends: s.backends.map((b) => ({
      address: normalizeAddress(b.address) as string,
      weight: b.weight ?? BACKEND_DEFAULTS.weight,
      state: b.state ?? BACKEND_DEFAULTS.state,
      role: b.role ?? BACKEND_DEFAULTS.role,
    })),
    mptcp: s.protocol === 'tcp' && (s.mptcp ?? d.mptcp),
    mptcpUnknownJoin: s.mptcpUnknownJoin ?? d.mptcpUnknownJoin,
    icmpEcho: s.icmpEcho ?? d.icmpEcho,
    icmpErrors: s.icmpErrors ?? d.icmpErrors,
    minPrimaries: s.minPrimaries ?? d.minPrimaries,
    ...(s.healthCheck ? { healthCheck: checkHealthCheck(s.healthCheck).check } : {}),
    ...(s.affinity ? { affinity: { ...AFFINITY_DEFAULTS, ...s.affinity } } : {}),
  };
}

function buildConfig(raw: RawConfig): SluiceConfig {
  const d = CONFIG_DEFAULTS;
  const config: SluiceConfig = {
    interface: raw.interface,
    egressInterface: raw.egressInterface ?? raw.interface,
    hashSeed: raw.hashSeed ?? d.hashSeed,
    services: raw.services.map(buildService),
    flowTable: { ...d.flowTable, ...raw.flowTable },
    fragments: { ...d.fragments, ...raw.fragments },
    vlan: { ...d.vlan, ...raw.vlan },
    capture: { ...d.capture, ...raw.capture },
    dataplane: { ...d.dataplane, ...raw.dataplane },
    safety: { ...d.safety, ...raw.safety },
    metrics: { ...d.metrics, ...raw.metrics },
    admin: { ...d.admin, ...raw.admin },
    log: { ...d.log, ...raw.log },
  };
  if (raw.cluster !== undefined) {
    const c = validateClusterConfig(raw.cluster, '$.cluster');
    if (c.ok) config.cluster = c.config;
  }
  if (raw.announce !== undefined) {
    const a = validateAnnounceConfig(raw.announce, '$.announce');
    if (a.ok) config.announce = a.config;
  }
  if (raw.encap?.source4 !== undefined) config.encapSource4 = normalizeAddress(raw.encap.source4);
  if (raw.encap?.source6 !== undefined) config.encapSource6 = normalizeAddress(raw.encap.source6);
  return config;
}
