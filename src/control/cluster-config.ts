/**
 * The "cluster" section of the config: who this instance is, where it listens for control
 * messages, its peers, where the cluster key comes from, and the timing of heartbeats and owner
 * queries. validateClusterConfig() checks raw JSON and returns ConfigIssues (the config's one
 * dialect: JSON path, rule "cluster", message); loadClusterKey() reads the key (never from the
 * JSON itself) and clusterKeyIssues() says, for `sluice check`, why it could not.
 * schema/sluice.schema.json describes the same fields; a unit test keeps the two in agreement.
 *
 * Addresses are IP literals with a port ("192.0.2.10:7946", "[2001:db8::10]:7946"): no DNS, so
 * every instance resolves the peer list the same way at any time. The peer list may contain
 * this instance's own id (every instance can then share one list); that entry is skipped.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { FileTooLargeError, readBounded } from '../config/bounded-read.js';
import { CLUSTER_DEFAULTS } from '../config/defaults.js';
import { childPath, isRecord, show, type ConfigIssue } from '../config/issues.js';
import { hashInstanceId } from '../hash/rendezvous.js';
import { MIN_KEY_BYTES } from './auth.js';

export { CLUSTER_DEFAULTS };

export interface ClusterPeer {
  id: string;
  /** "host:port" or "[v6]:port". */
  address: string;
}

export interface ClusterConfig {
  /** 1..63 characters of [a-z0-9_-], unique in the cluster. */
  instanceId: string;
  /** Where this instance receives control datagrams: "host:port" or "[v6]:port". */
  listen: string;
  peers: ClusterPeer[];
  /** A file holding the key: hex or base64 text, or >= 32 raw bytes. Exactly one of keyFile / keyEnv. */
  keyFile?: string;
  /** The name of an environment variable holding the key as hex or base64. */
  keyEnv?: string;
  /** Interval between heartbeats to each peer. Default 200. */
  heartbeatMs: number;
  /** A peer is down after this long without a valid heartbeat; > 2 x heartbeatMs. Default 1000. */
  failureMs: number;
  /** Default wait for an owner's answer, 1..50 ms. Default 20. */
  queryTimeoutMs: number;
  /** Packets held per flow while its owner is asked; interpreted by the data plane. */
  holdPackets?: number;
  /** Publish and query flow owners (default true). false: membership only, every instance on its own
   * (what consistent hashing alone gives; useful to compare). */
  sync: boolean;
}

export type ClusterConfigResult = { ok: true; config: ClusterConfig; issues: [] } | { ok: false; issues: ConfigIssue[] };
export const MAX_QUERY_TIMEOUT_MS = 50;
export const MAX_PEERS = 64;
const INSTANCE_ID = /^[a-z0-9_-]{1,63}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const KNOWN_FIELDS = new Set(['instanceId', 'listen', 'peers', 'keyFile', 'keyEnv', 'heartbeatMs', 'failureMs', 'queryTimeoutMs', 'holdPackets', 'sync']);
const INLINE_KEY_FIELDS = new Set(['key', 'clusterKey', 'secret', 'psk']);

export interface HostPort {
  host: string;
  port: number;
  family: 4 | 6;
}

/** "192.0.2.1:7946" / "[2001:db8::1]:7946" -> parts, or a message saying what is wrong. */
export function parseHostPort(text: string): HostPort | string {
  let host: string;
  let portText: string;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0 || text[close + 1] !== ':') return `${show(text)} is not [IPv6]:port`;
    host = text.slice(1, close);
    portText = text.slice(close + 2);
    if (!isIPv6(host) || host.includes('%')) return `"${host}" is not an IPv6 address (no zone ids)`;
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return `"${text}" has no port: expected host:port, e.g. 192.0.2.10:7946`;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(':')) return `"${text}": write an IPv6 address in brackets, e.g. [2001:db8::10]:7946`;
    if (!isIPv4(host)) return `"${host}" is not an IPv4 address (IP literals only, no host names)`;
  }
  if (!/^[0-9]{1,5}$/.test(portText)) return `port "${portText}" is not a number`;
  const port = Number(portText);
  if (port < 1 || port > 65535) return `port ${port} is outside 1..65535`;
  return { host, port, family: isIPv4(host) ? 4 : 6 };
}

/** Every finding here has the rule "cluster": the section's own checks, beside the schema's keywords. */
function issue(path: string, message: string): ConfigIssue {
  return { path, rule: 'cluster', message };
}

function intField(
  raw: Record<string, unknown>,
  name: string,
  path: string,
  def: number,
  min: number,
  max: number,
  issues: ConfigIssue[],
): number {
  const v = raw[name];
  if (v === undefined) return def;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    issues.push(issue(`${path}.${name}`, `${show(v)}: expected an integer ${min}..${max} (default ${def})`));
    return def;
  }
  return v;
}

/** Check the raw "cluster" object (parsed JSON). `path` is the JSON path of that object. */
export function validateClusterConfig(raw: unknown, path = '$.cluster'): ClusterConfigResult {
  const issues: ConfigIssue[] = [];
  if (!isRecord(raw)) return { ok: false, issues: [issue(path, 'expected an object with instanceId, listen, peers and keyFile or keyEnv')] };

  for (const k of Object.keys(raw)) {
    if (INLINE_KEY_FIELDS.has(k)) {
      issues.push(issue(childPath(path, k), 'the cluster key must never be written in the config: put it in a file (keyFile) or an environment variable (keyEnv)'));
    } else if (!KNOWN_FIELDS.has(k)) {
      issues.push(issue(childPath(path, k), `unknown field; expected one of ${[...KNOWN_FIELDS].join(', ')}`));
    }
  }

  const instanceId = raw.instanceId;
  if (typeof instanceId !== 'string' || !INSTANCE_ID.test(instanceId)) {
    issues.push(issue(`${path}.instanceId`, `${show(instanceId)}: expected 1..63 characters of a-z, 0-9, "_" and "-"`));
  }

  let listenFamily: 4 | 6 | undefined;
  if (typeof raw.listen !== 'string') {
    issues.push(issue(`${path}.listen`, 'expected "host:port" or "[v6]:port", e.g. "192.0.2.10:7946"'));
  } else {
    const hp = parseHostPort(raw.listen);
    if (typeof hp === 'string') issues.push(issue(`${path}.listen`, hp));
    else listenFamily = hp.family;
  }

  const peers: ClusterPeer[] = [];
  if (!Array.isArray(raw.peers)) {
    issues.push(issue(`${path}.peers`, 'expected an array of { "id": ..., "address": "host:port" } (may be empty)'));
  } else if (raw.peers.length > MAX_PEERS) {
    issues.push(issue(`${path}.peers`, `${raw.peers.length} peers: at most ${MAX_PEERS}`));
  } else {
    const ids = new Map<string, number>();
    const hashes = new Map<number, string>();
    const addresses = new Map<string, number>();
    if (typeof instanceId === 'string') hashes.set(hashInstanceId(instanceId), instanceId);
    raw.peers.forEach((p: unknown, i: number) => {
      const pp = `${path}.peers[${i}]`;
      if (!isRecord(p)) {
        issues.push(issue(pp, 'expected { "id": ..., "address": "host:port" }'));
        return;
      }
      for (const k of Object.keys(p)) {
        if (k !== 'id' && k !== 'address') issues.push(issue(childPath(pp, k), 'unknown field; expected id and address'));
      }
      let ok = true;
      if (typeof p.id !== 'string' || !INSTANCE_ID.test(p.id)) {
        issues.push(issue(`${pp}.id`, `${show(p.id)}: expected 1..63 characters of a-z, 0-9, "_" and "-"`));
        ok = false;
      } else if (ids.has(p.id)) {
        issues.push(issue(`${pp}.id`, `"${p.id}" is already used by peers[${ids.get(p.id)}]`));
        ok = false;
      } else {
        ids.set(p.id, i);
        const h = hashInstanceId(p.id);
        const other = hashes.get(h);
        if (other !== undefined && other !== p.id) {
          issues.push(issue(`${pp}.id`, `"${p.id}" and "${other}" have the same 32-bit id hash; rename one of them`));
          ok = false;
        }
        hashes.set(h, p.id);
      }
      if (typeof p.address !== 'string') {
        issues.push(issue(`${pp}.address`, 'expected "host:port" or "[v6]:port"'));
        ok = false;
      } else {
        const hp = parseHostPort(p.address);
        if (typeof hp === 'string') {
          issues.push(issue(`${pp}.address`, hp));
          ok = false;
        } else if (p.id !== instanceId) {
          if (listenFamily !== undefined && hp.family !== listenFamily) {
            issues.push(issue(`${pp}.address`, `IPv${hp.family} address, but listen is IPv${listenFamily}: one socket reaches one family; use the peer's IPv${listenFamily} address`));
            ok = false;
          }
          const canon = `${hp.host}:${hp.port}`;
          if (addresses.has(canon)) {
            issues.push(issue(`${pp}.address`, `"${p.address}" is already used by peers[${addresses.get(canon)}]`));
            ok = false;
          }
          addresses.set(canon, i);
        }
      }
      if (ok) peers.push({ id: p.id as string, address: p.address as string });
    });
  }

  const hasFile = raw.keyFile !== undefined;
  const hasEnv = raw.keyEnv !== undefined;
  if (hasFile === hasEnv) {
    issues.push(issue(`${path}.keyFile`, hasFile ? 'set keyFile or keyEnv, not both' : 'missing: set keyFile (a file holding the key) or keyEnv (an environment variable name)'));
  }
  if (hasFile && (typeof raw.keyFile !== 'string' || raw.keyFile.length === 0)) {
    issues.push(issue(`${path}.keyFile`, 'expected a file path'));
  }
  if (hasEnv && (typeof raw.keyEnv !== 'string' || !ENV_NAME.test(raw.keyEnv))) {
    issues.push(issue(`${path}.keyEnv`, `${show(raw.keyEnv)}: expected an environment variable name like SLUICE_CLUSTER_KEY (the name, not the key)`));
  }

  const heartbeatMs = intField(raw, 'heartbeatMs', path, CLUSTER_DEFAULTS.heartbeatMs, 10, 60_000, issues);
  const failureMs = intField(raw, 'failureMs', path, CLUSTER_DEFAULTS.failureMs, 1, 600_000, issues);
  if (failureMs <= 2 * heartbeatMs) {
    issues.push(issue(`${path}.failureMs`, `${failureMs} ms must be more than 2 x heartbeatMs (${2 * heartbeatMs} ms), or one lost heartbeat marks a peer down`));
  }
  const queryTimeoutMs = intField(raw, 'queryTimeoutMs', path, CLUSTER_DEFAULTS.queryTimeoutMs, 1, MAX_QUERY_TIMEOUT_MS, issues);
  let holdPackets: number | undefined;
  if (raw.holdPackets !== undefined) holdPackets = intField(raw, 'holdPackets', path, 0, 0, 65_536, issues);

  if (raw.sync !== undefined && typeof raw.sync !== 'boolean') issues.push(issue(`${path}.sync`, 'expected true or false'));
  if (issues.length > 0) return { ok: false, issues };
  const config: ClusterConfig = {
    instanceId: instanceId as string,
    listen: raw.listen as string,
    peers,
    heartbeatMs,
    failureMs,
    queryTimeoutMs,
    sync: typeof raw.sync === 'boolean' ? raw.sync : CLUSTER_DEFAULTS.sync,
  };
  if (hasFile) config.keyFile = raw.keyFile as string;
  if (hasEnv) config.keyEnv = raw.keyEnv as string;
  if (holdPackets !== undefined) config.holdPackets = holdPackets;
  return { ok: true, config, issues: [] };
}


const HEX = /^(?:[0-9a-fA-F]{2})+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Text key -> bytes: hex if it is all hex digits, else base64, else undefined. */
function decodeKeyText(text: string): { bytes: Buffer; encoding: 'hex' | 'base64' } | undefined {
  const t = text.trim();
  if (t.length === 0) return undefined;
  if (HEX.test(t)) return { bytes: Buffer.from(t, 'hex'), encoding: 'hex' };
  if (BASE64.test(t)) return { bytes: Buffer.from(t, 'base64'), encoding: 'base64' };
  return undefined;
}

export interface KeySources {
  env?: NodeJS.ProcessEnv;
  readFile?: (path: string) => Buffer;
}

const GENERATE = 'openssl rand -hex 32';

/** Largest key file read: a key is 32..64 bytes, as text at most ~130; anything bigger is a wrong path. */
export const MAX_KEY_FILE_BYTES = 4096;

/**
 * The cluster key as bytes (>= MIN_KEY_BYTES). keyFile: the file's text as hex or base64 if it
 * is entirely that (surrounding whitespace ignored), else the raw bytes. keyEnv: the variable's
 * value as hex or base64. Throws an Error saying what to fix.
 */
export function loadClusterKey(cfg: Pick<ClusterConfig, 'keyFile' | 'keyEnv'>, sources: KeySources = {}): Buffer {
  const env = sources.env ?? process.env;
  const read = sources.readFile ?? ((p: string) => readBounded(p, MAX_KEY_FILE_BYTES));
  if (cfg.keyFile !== undefined && cfg.keyEnv !== undefined) throw new Error('cluster key: set cluster.keyFile or cluster.keyEnv, not both');
  if (cfg.keyFile !== undefined) {
    let raw: Buffer;
    try {
      raw = read(cfg.keyFile);
    } catch (err) {
      if (err instanceof FileTooLargeError) {
        throw new Error(`cluster key: cluster.keyFile ${cfg.keyFile} is larger than ${MAX_KEY_FILE_BYTES} bytes, so it is not a key file; create one with: ${GENERATE} > ${cfg.keyFile}`);
      }
      const code = (err as NodeJS.ErrnoException).code;
      throw new Error(`cluster key: cannot read cluster.keyFile ${cfg.keyFile} (${code ?? (err as Error).message}); create it with: ${GENERATE} > ${cfg.keyFile}`);
    }
    const decoded = decodeKeyText(raw.toString('latin1'));
    const bytes = decoded?.bytes ?? raw;
    const how = decoded ? `after ${decoded.encoding} decoding` : 'as raw bytes';
    if (bytes.length < MIN_KEY_BYTES) {
      throw new Error(`cluster key: ${cfg.keyFile} holds ${bytes.length} bytes ${how}; at least ${MIN_KEY_BYTES} are needed (create one with: ${GENERATE} > ${cfg.keyFile})`);
    }
    return bytes;
  }
  if (cfg.keyEnv !== undefined) {
    const value = env[cfg.keyEnv];
    if (value === undefined || value.trim() === '') {
      throw new Error(`cluster key: environment variable ${cfg.keyEnv} (cluster.keyEnv) is not set; set it to hex or base64, e.g. ${cfg.keyEnv}=$(${GENERATE})`);
    }
    const decoded = decodeKeyText(value);
    if (decoded === undefined) throw new Error(`cluster key: ${cfg.keyEnv} is neither hex nor base64; set it to e.g. the output of ${GENERATE}`);
    if (decoded.bytes.length < MIN_KEY_BYTES) {
      throw new Error(`cluster key: ${cfg.keyEnv} holds ${decoded.bytes.length} bytes after ${decoded.encoding} decoding; at least ${MIN_KEY_BYTES} are needed (${GENERATE})`);
    }
    return decoded.bytes;
  }
  throw new Error('cluster key: neither cluster.keyFile nor cluster.keyEnv is set');
}

/**
 * Why the cluster key cannot be loaded, as issues for `sluice check` (rule "cluster-key"): a key
 * file that is missing, unreadable, or too short after decoding; a key variable that is set but
 * not a usable key. A key variable that is unset here is only a warning, because `sluice run` may
 * get its environment from elsewhere (a systemd EnvironmentFile, for example).
 */
export function clusterKeyIssues(
  cfg: Pick<ClusterConfig, 'keyFile' | 'keyEnv'>,
  sources: KeySources = {},
): { errors: ConfigIssue[]; warnings: ConfigIssue[] } {
  const path = cfg.keyFile !== undefined ? '$.cluster.keyFile' : '$.cluster.keyEnv';
  if (cfg.keyFile === undefined && cfg.keyEnv !== undefined) {
    const value = (sources.env ?? process.env)[cfg.keyEnv];
    if (value === undefined || value.trim() === '') {
      return {
        errors: [],
        warnings: [{ path, rule: 'cluster-key', message: `environment variable ${cfg.keyEnv} is not set here; \`sluice run\` needs it set to the key as hex or base64 (generate one with: ${GENERATE})` }],
      };
    }
  }
  try {
    loadClusterKey(cfg, sources);
    return { errors: [], warnings: [] };
  } catch (err) {
    const message = (err instanceof Error ? err.message : String(err)).replace(/^cluster key: /, '');
    return { errors: [{ path, rule: 'cluster-key', message }], warnings: [] };
  }
}
