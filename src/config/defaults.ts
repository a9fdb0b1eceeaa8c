/**
 * Every value Sluice uses when a config file leaves a key out, in one place. The JSON Schema
 * (schema/sluice.schema.json) states the same defaults for editors and readers; the unit tests
 * check that the two agree. Modules that apply a default import it from here.
 */
import { MAGLEV_DEFAULT_SIZE } from '../hash/maglev.js';
import type { CaptureEngine, SluiceConfig } from './types.js';

/** Where the admin API listens, and where the CLI looks for it when given no socket or config. */
export const DEFAULT_ADMIN_SOCKET = '/run/sluice/admin.sock';

export const BACKEND_DEFAULTS = {
  weight: 1,
  state: 'active' as const,
  role: 'primary' as const,
};

export const SERVICE_DEFAULTS = {
  tableSize: MAGLEV_DEFAULT_SIZE,
  mptcp: true,
  mptcpUnknownJoin: 'drop' as const,
  icmpEcho: 'reply' as const,
  icmpErrors: 'forward' as const,
  minPrimaries: 1,
};

export const AFFINITY_DEFAULTS = { timeoutS: 300, ipv4Prefix: 32, ipv6Prefix: 64 } as const;

export const HEALTH_DEFAULTS = {
  intervalMs: 2000,
  timeoutMs: 1000,
  rise: 2,
  fall: 3,
  path: '/',
  send: '',
  /** Default accepted http status range, inclusive. */
  statusMin: 200,
  statusMax: 399,
} as const;

export const CLUSTER_DEFAULTS = { heartbeatMs: 200, failureMs: 1000, queryTimeoutMs: 20, sync: true } as const;

/** The top level and its settings groups. */
export const CONFIG_DEFAULTS = {
  hashSeed: 0,
  tableSize: SERVICE_DEFAULTS.tableSize,
  weight: BACKEND_DEFAULTS.weight,
  flowTable: { capacity: 1048576, tcpIdleTimeoutS: 300, tcpClosingTimeoutS: 10, udpIdleTimeoutS: 30, halfOpenTimeoutS: 10, floodProtection: true },
  fragments: { tableSize: 65536, timeoutMs: 2000, holdMs: 200 },
  vlan: { egress: 'untagged' as 'untagged' | 'keep' | number },
  capture: { engine: 'ring' as CaptureEngine, bufferMiB: 32, batchSize: 256 },
  dataplane: { workers: 1 as number | 'auto' },
  safety: { allowHostForwarding: false, allowLocalVip: false, allowOtherInstances: false },
  metrics: { listen: '127.0.0.1:9180' },
  admin: { socket: DEFAULT_ADMIN_SOCKET, socketMode: '0660', readers: 'group' as 'anyone' | 'group' },
  log: { level: 'info' as SluiceConfig['log']['level'] },
} as const;
