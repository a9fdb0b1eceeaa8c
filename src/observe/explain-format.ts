/**
 * `sluice explain` for a person: one block per flow, one decision per line, in the order the
 * forwarder takes them (service, hash and slot, tracked entry, token, owners, the verdict).
 */
import type { ExplainFlowReport, ExplainReport } from './admin-api.js';

const hostPort = (a: string, p: number): string => (a.includes(':') ? `[${a}]:${p}` : `${a}:${p}`);
const hex8 = (n: number): string => n.toString(16).padStart(8, '0');
const s1 = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

const BY: Record<ExplainFlowReport['next']['by'], string> = {
  'flow-entry': 'its tracked flow entry',
  'mptcp-token': 'its MPTCP connection token',
  'owner-query': "its owner's answer (the data plane asks the cluster, holding the packet)",
  affinity: 'client affinity',
  table: 'the Maglev table',
  drop: 'dropped',
};

function portNote(f: ExplainFlowReport): string {
  if (f.portSource === 'tracked') return ' (a tracked flow of this client)';
  if (f.portSource === 'representative') return ` (no client port given and no tracked flow of this client: the table pick for representative client port ${f.clientPort}; other ports hash elsewhere)`;
  return '';
}

/** A packet held for its owner's answer: where that answer sends it, when the admin API could ask. */
function ownerVerdict(f: ExplainFlowReport): string {
  const join = f.next.asks === 'token';
  const what = join ? 'the join SYN' : 'a mid-flow packet';
  const syn = !join && f.newFlowBackend ? `; a SYN goes to ${f.newFlowBackend}` : '';
  const c = f.cluster;
  if (c === null) return `${what} goes where ${BY['owner-query']} says${syn}`;
  const held = c.asked ? c.heldByOwners : c.heldHere;
  const by = c.owner === c.self ? 'this instance' : c.owner;
  if (f.nextBackend !== null && held !== null && held.endsWith(`/${f.nextBackend}`)) return `${what} goes to ${f.nextBackend} by its owner's answer (${by ?? '-'})${syn}`;
  const none = join ? "its token's owner and replica hold nothing" : 'its owner and replica hold nothing';
  if (f.nextBackend === null) return `${what} is dropped: ${none}`;
  // Instances publish only the flows the table would misplace: nothing held means the table's pick.
  return `${what} goes to ${f.nextBackend} by ${BY.table} (${none})${syn}`;
}

export function formatFlow(f: ExplainFlowReport): string {
  const lines = [`flow ${f.protocol} ${hostPort(f.client, f.clientPort)} -> ${hostPort(f.vip, f.port)}${portNote(f)}`];
  const kv = (k: string, v: string): number => lines.push(`  ${k.padEnd(13)}${v}`);
  kv('service:', f.service === null ? 'none (no service on this VIP, port and protocol)' : `${f.service} (generation ${f.generation})`);
  if (f.hash !== null) {
    const slot = f.tableSlot === null ? 'no table' : `Maglev slot ${f.tableSlot} of ${f.tableSize} -> ${f.tableBackend ?? 'no backend takes new flows'}`;
    kv('hash:', `0x${hex8(f.hash)} -> ${slot}`);
  }
  if (f.affinityBackendId !== null) kv('affinity:', f.affinityBackend ? `entry for the client's prefix: ${f.affinityBackend}` : 'no live entry for the client\'s prefix');
  if (f.service !== null) kv('new flow:', f.newFlowBackend ?? 'no backend');
  if (f.tracked === null) kv('tracked:', 'no');
  else {
    const t = f.tracked;
    const on = t.pendingOwnerQuery ? 'waiting for its owner\'s answer' : `on ${f.trackedBackend}`;
    kv('tracked:', `yes, since ${t.since} (age ${s1(t.ageMs)}, idle ${s1(t.idleMs)}), ${t.state}, ${on}, recorded in generation ${t.generation}${t.keeps || t.pendingOwnerQuery ? '' : '; its backend is gone or down: the next packet takes the current table'}`);
  }
  if (f.mptcpToken !== null) kv('mptcp token:', `${hex8(f.mptcpToken)} (token table: ${f.tokenBackend ?? 'no live entry'})`);
  if (f.cluster) {
    const c = f.cluster;
    const role = c.owner === c.self ? ' (this instance)' : '';
    const rrole = c.replica === c.self ? ' (this instance)' : '';
    // A join SYN the data plane does not know asks about its token: the token's owners, not the flow's.
    kv(c.kind === 'token' ? 'token owner:' : 'owner:', `${c.owner ?? '-'}${role}, replica ${c.replica ?? '-'}${rrole}`);
    kv('held:', `here ${c.heldHere ?? 'nothing'}; ${c.asked ? `owner/replica answer ${c.heldByOwners ?? 'nothing'}` : 'owner/replica not asked (this instance is one of them)'}`);
  } else if (f.ownerQueries) kv('owner:', 'cluster not reachable from the admin API');
  const n = f.next;
  if (n.drop !== null) kv('verdict:', `DROP ${n.drop}${n.backendId !== null ? ` (backend ${f.nextBackend} by ${BY[n.by]})` : ''}`);
  else if (n.by === 'owner-query') kv('verdict:', ownerVerdict(f));
  else kv('verdict:', `next packet to ${f.nextBackend} by ${BY[n.by]}`);
  return lines.join('\n');
}

export function formatExplain(r: ExplainReport): string {
  return r.flows.map(formatFlow).join('\n\n');
}
