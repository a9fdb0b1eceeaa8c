/**
 * `sluice status --rate`: rates from two /status snapshots taken an interval apart (like
 * `ipvsadm --rate`, but measured by the CLI rather than averaged by the daemon). Counters that
 * went backwards (the data plane restarted between the snapshots) give no rate rather than a
 * negative one.
 */
import type { StatusReport } from './admin-api.js';

export interface RateFigures {
  pps: number;
  bps: number;
  newFlowsPerS: number;
}

export interface StatusRates {
  /** How the rates were measured, said in the output. */
  method: 'two /status snapshots';
  intervalS: number;
  /** Frames and bits in at the capture interface, and flows created. */
  total: RateFigures & { txPps: number; txBps: number };
  backends: (RateFigures & { service: string; address: string })[];
}

const per = (a: number | undefined, b: number | undefined, s: number): number => (a === undefined || b === undefined || b < a || s <= 0 ? 0 : (b - a) / s);

export function statusRates(first: StatusReport, second: StatusReport, intervalS: number): StatusRates {
  const before = new Map(first.services.flatMap((s) => s.backends.map((b) => [`${s.name}/${b.address}`, b] as const)));
  const t1 = first.traffic;
  const t2 = second.traffic;
  return {
    method: 'two /status snapshots',
    intervalS,
    total: {
      pps: per(t1.rxFrames, t2.rxFrames, intervalS),
      bps: 8 * per(t1.rxBytes, t2.rxBytes, intervalS),
      newFlowsPerS: per(first.flows.created, second.flows.created, intervalS),
      txPps: per(t1.txFrames, t2.txFrames, intervalS),
      txBps: 8 * per(t1.txBytes, t2.txBytes, intervalS),
    },
    backends: second.services.flatMap((s) =>
      s.backends.map((b) => {
        const a = before.get(`${s.name}/${b.address}`);
        return { service: s.name, address: b.address, pps: per(a?.packets, b.packets, intervalS), bps: 8 * per(a?.bytes, b.bytes, intervalS), newFlowsPerS: per(a?.flowsCreated, b.flowsCreated, intervalS) };
      }),
    ),
  };
}

/** 1234567 -> "1.23M": rates at a glance (exact figures in --json). */
export function si(n: number): string {
  if (n < 1000) return n < 10 && n % 1 !== 0 ? n.toFixed(1) : String(Math.round(n));
  const units = ['k', 'M', 'G', 'T'];
  let u = -1;
  while (n >= 1000 && u < units.length - 1) {
    n /= 1000;
    u++;
  }
  return `${n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0)}${units[u]}`;
}

export function formatRates(r: StatusRates, table: (headers: string[], rows: (string | number)[][]) => string): string {
  const t = r.total;
  return [
    `rates over ${r.intervalS.toFixed(2)} s (${r.method}): in ${si(t.pps)} pps ${si(t.bps)}bit/s, out ${si(t.txPps)} pps ${si(t.txBps)}bit/s, ${si(t.newFlowsPerS)} new flows/s`,
    table(
      ['SERVICE', 'BACKEND', 'PPS', 'BPS', 'NEW_FLOWS/S'],
      r.backends.map((b) => [b.service, b.address, si(b.pps), si(b.bps), si(b.newFlowsPerS)]),
    ),
  ].join('\n');
}
