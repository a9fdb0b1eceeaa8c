/**
 * Helpers for the `sluice explain` e2e files: the MPTCP subflows the backends hold, as their own
 * `ss -tni` shows them (where each subflow actually is, independent of what Sluice says).
 */
import type { Lab } from '../../scripts/lab/topology.js';

/** One subflow as a backend's `ss -tni` shows it. */
export interface Subflow {
  /** The backend's lab name (b1, b2, ...). */
  backend: string;
  /** An MP_JOIN subflow (ss flag J), else the MP_CAPABLE one (M). */
  join: boolean;
  peer: string;
  peerPort: number;
  /** The connection's token (8 hex digits): the one a join SYN to this backend carries. */
  token: string;
}

/** `ss -tniH` output as one record per socket: its head line ("Recv-Q Send-Q local peer") and its indented details joined. */
export function ssRecords(stdout: string): { head: string; body: string }[] {
  const records: { head: string; body: string }[] = [];
  for (const line of stdout.split('\n')) {
    if (line.trim() === '') continue;
    const last = records[records.length - 1];
    if (/^\s/.test(line) && last) last.body += ` ${line.trim()}`;
    else records.push({ head: line.trim(), body: '' });
  }
  return records;
}

/** Every established MPTCP subflow on `port` of every backend of the lab. */
export async function backendSubflows(lab: Lab, port: number): Promise<Subflow[]> {
  const out: Subflow[] = [];
  for (const b of lab.backends()) {
    const { stdout } = await lab.exec(b.name, ['ss', '-tniH', 'state', 'established', `( sport = :${port} )`]);
    const records = ssRecords(stdout);
    for (const r of records) {
      const fields = r.head.split(/\s+/);
      const m = /^\[?(?:::ffff:)?([0-9.]+)\]?:(\d+)$/.exec(fields[fields.length - 1] ?? '');
      const ulp = /tcp-ulp-mptcp flags:(\w+) token:[0-9a-f]+\(id:\d+\)\/([0-9a-f]+)\(id:\d+\)/.exec(r.body);
      if (!m || !ulp) continue;
      out.push({ backend: b.name, join: ulp[1].includes('J'), peer: m[1], peerPort: Number(m[2]), token: ulp[2].padStart(8, '0') });
    }
  }
  return out;
}
