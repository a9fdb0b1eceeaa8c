/** The small statistics load reports are built from. */

export interface LatencySummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function round3(v: number): number {
  return Math.round(v * 1000) / 1000;
}

/** Nearest-rank percentile of an ascending-sorted array (0 when empty). */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
}

export function summarize(values: readonly number[]): LatencySummary {
  if (values.length === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  const s = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of s) sum += v;
  return {
    count: s.length,
    min: round3(s[0] ?? 0),
    mean: round3(sum / s.length),
    p50: round3(percentile(s, 0.5)),
    p90: round3(percentile(s, 0.9)),
    p99: round3(percentile(s, 0.99)),
    max: round3(s[s.length - 1] ?? 0),
  };
}
