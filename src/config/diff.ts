/**
 * What changed between two config generations, so a reload can apply service and backend
 * changes in place and refuse (or warn about) the settings that only a restart can apply.
 * Services are matched by name and backends by address; file order never counts as a change,
 * because table order comes from backend identity (see src/hash/).
 */
import type { BackendConfig, ServiceConfig, SluiceConfig } from './types.js';

export type ServiceField = 'vip' | 'port' | 'protocol' | 'forwarding' | 'tableSize' | 'mptcp' | 'mptcpUnknownJoin' | 'icmpEcho' | 'icmpErrors' | 'minPrimaries' | 'healthCheck' | 'affinity';

export interface FieldChange {
  field: ServiceField;
  prev: string | number;
  next: string | number;
}

export interface WeightChange {
  address: string;
  prev: number;
  next: number;
}

export interface ServiceDiff {
  name: string;
  /** Changed service fields, in the order of ServiceField. */
  fields: FieldChange[];
  /** In the new file's order. */
  backendsAdded: BackendConfig[];
  /** In the old file's order. */
  backendsRemoved: BackendConfig[];
  weightsChanged: WeightChange[];
  /** Backends whose role or state (primary/spare, active/draining) changed. */
  rolesChanged: { address: string; prev: string; next: string }[];
}

export interface ConfigDiff {
  /** Services only in `next`, in its order. */
  servicesAdded: ServiceConfig[];
  /** Services only in `prev`, in its order. */
  servicesRemoved: ServiceConfig[];
  /** Services in both whose fields or backends differ, in `next`'s order. */
  servicesChanged: ServiceDiff[];
  /** Changed settings that take effect only after a restart, named by their file path. */
  restartRequired: string[];
  /** Other changed top-level settings, applied by a reload, named by their file path. */
  settingsChanged: string[];
  /** Nothing changed at all. */
  empty: boolean;
}

const SERVICE_FIELDS: readonly ServiceField[] = ['vip', 'port', 'protocol', 'forwarding', 'tableSize', 'mptcp', 'mptcpUnknownJoin', 'icmpEcho', 'icmpErrors', 'minPrimaries', 'healthCheck', 'affinity'];

/** Objects (health check, affinity) compare and print as JSON. */
function fieldValue(s: ServiceConfig, f: ServiceField): string | number {
  const v = s[f];
  return typeof v === 'number' || typeof v === 'string' ? v : JSON.stringify(v ?? null);
}

type Setting = readonly [path: string, read: (c: SluiceConfig) => string | number | boolean | undefined];

/** Bound to the interfaces, sockets and buffers opened at start-up. */
const RESTART_SETTINGS: readonly Setting[] = [
  ['interface', (c) => c.interface],
  ['egressInterface', (c) => c.egressInterface],
  ['capture.engine', (c) => c.capture.engine],
  ['capture.bufferMiB', (c) => c.capture.bufferMiB],
  ['capture.batchSize', (c) => c.capture.batchSize],
  ['dataplane.workers', (c) => c.dataplane?.workers ?? 1],
  ['metrics.listen', (c) => c.metrics.listen],
  ['admin.socket', (c) => c.admin.socket],
  ['flowTable.capacity', (c) => c.flowTable.capacity],
  // The flow hash seed decides where every tracked flow lives: changing it live would strand them all.
  ['hashSeed', (c) => c.hashSeed],
  ['cluster', (c) => JSON.stringify(c.cluster ?? null)],
  // The BGP speaker is started with its sessions at start-up (src/announce/); the VIP set itself follows reloads.
  ['announce', (c) => JSON.stringify(c.announce ?? null)],
  ['flowTable.tcpIdleTimeoutS', (c) => c.flowTable.tcpIdleTimeoutS],
  ['flowTable.tcpClosingTimeoutS', (c) => c.flowTable.tcpClosingTimeoutS],
  ['flowTable.udpIdleTimeoutS', (c) => c.flowTable.udpIdleTimeoutS],
  ['flowTable.halfOpenTimeoutS', (c) => c.flowTable.halfOpenTimeoutS],
  ['flowTable.floodProtection', (c) => c.flowTable.floodProtection],
];

const RELOADABLE_SETTINGS: readonly Setting[] = [
  ['encap.source4', (c) => c.encapSource4],
  ['encap.source6', (c) => c.encapSource6],
  ['safety.allowHostForwarding', (c) => c.safety.allowHostForwarding],
  ['safety.allowLocalVip', (c) => c.safety.allowLocalVip],
  ['log.level', (c) => c.log.level],
  // Both reach the data plane with the next generation (a resized fragment table starts empty).
  ['fragments.tableSize', (c) => c.fragments?.tableSize],
  ['fragments.timeoutMs', (c) => c.fragments?.timeoutMs],
  ['fragments.holdMs', (c) => c.fragments?.holdMs],
  ['vlan.egress', (c) => c.vlan?.egress],
];

function changedSettings(settings: readonly Setting[], prev: SluiceConfig, next: SluiceConfig): string[] {
  return settings.filter(([, read]) => read(prev) !== read(next)).map(([path]) => path);
}

function diffService(prev: ServiceConfig, next: ServiceConfig): ServiceDiff {
  const fields: FieldChange[] = [];
  for (const field of SERVICE_FIELDS) {
    const a = fieldValue(prev, field);
    const b = fieldValue(next, field);
    if (a !== b) fields.push({ field, prev: a, next: b });
  }
  const before = new Map(prev.backends.map((b) => [b.address, b]));
  const after = new Map(next.backends.map((b) => [b.address, b]));
  const weightsChanged: WeightChange[] = [];
  const rolesChanged: { address: string; prev: string; next: string }[] = [];
  for (const b of next.backends) {
    const old = before.get(b.address);
    if (old && old.weight !== b.weight) weightsChanged.push({ address: b.address, prev: old.weight, next: b.weight });
    if (old && (old.state !== b.state || old.role !== b.role)) {
      rolesChanged.push({ address: b.address, prev: `${old.role}/${old.state}`, next: `${b.role}/${b.state}` });
    }
  }
  return {
    name: next.name,
    fields,
    backendsAdded: next.backends.filter((b) => !before.has(b.address)),
    backendsRemoved: prev.backends.filter((b) => !after.has(b.address)),
    weightsChanged,
    rolesChanged,
  };
}

function serviceChanged(d: ServiceDiff): boolean {
  return d.fields.length + d.backendsAdded.length + d.backendsRemoved.length + d.weightsChanged.length + d.rolesChanged.length > 0;
}

export function diffConfigs(prev: SluiceConfig, next: SluiceConfig): ConfigDiff {
  const before = new Map(prev.services.map((s) => [s.name, s]));
  const after = new Map(next.services.map((s) => [s.name, s]));
  const servicesChanged: ServiceDiff[] = [];
  for (const s of next.services) {
    const old = before.get(s.name);
    if (!old) continue;
    const d = diffService(old, s);
    if (serviceChanged(d)) servicesChanged.push(d);
  }
  const servicesAdded = next.services.filter((s) => !before.has(s.name));
  const servicesRemoved = prev.services.filter((s) => !after.has(s.name));
  const restartRequired = changedSettings(RESTART_SETTINGS, prev, next);
  const settingsChanged = changedSettings(RELOADABLE_SETTINGS, prev, next);
  return {
    servicesAdded,
    servicesRemoved,
    servicesChanged,
    restartRequired,
    settingsChanged,
    empty:
      servicesAdded.length + servicesRemoved.length + servicesChanged.length + restartRequired.length + settingsChanged.length === 0,
  };
}

function describeService(d: ServiceDiff): string {
  const parts: string[] = [];
  if (d.backendsAdded.length > 0) parts.push(`+${d.backendsAdded.length} backend${d.backendsAdded.length === 1 ? '' : 's'}`);
  if (d.backendsRemoved.length > 0) parts.push(`-${d.backendsRemoved.length} backend${d.backendsRemoved.length === 1 ? '' : 's'}`);
  if (d.weightsChanged.length > 0) parts.push(`${d.weightsChanged.length} weight${d.weightsChanged.length === 1 ? '' : 's'}`);
  if (d.rolesChanged.length > 0) parts.push(d.rolesChanged.map((r) => `${r.address} ${r.next}`).join(', '));
  for (const f of d.fields) parts.push(`${f.field} ${f.prev}->${f.next}`);
  return `${d.name}(${parts.join(', ')})`;
}

/** One line for logs, e.g. `services +1 -0 ~1: added dns; changed web(+1 backend, 2 weights); restart required: interface`. */
export function summarizeDiff(d: ConfigDiff): string {
  if (d.empty) return 'no changes';
  const parts: string[] = [];
  if (d.servicesAdded.length > 0) parts.push(`added ${d.servicesAdded.map((s) => s.name).join(', ')}`);
  if (d.servicesRemoved.length > 0) parts.push(`removed ${d.servicesRemoved.map((s) => s.name).join(', ')}`);
  if (d.servicesChanged.length > 0) parts.push(`changed ${d.servicesChanged.map(describeService).join(', ')}`);
  if (d.settingsChanged.length > 0) parts.push(`settings ${d.settingsChanged.join(', ')}`);
  if (d.restartRequired.length > 0) parts.push(`restart required: ${d.restartRequired.join(', ')}`);
  return `services +${d.servicesAdded.length} -${d.servicesRemoved.length} ~${d.servicesChanged.length}: ${parts.join('; ')}`;
}
