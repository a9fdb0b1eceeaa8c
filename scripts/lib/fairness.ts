/**
 * Per-backend shares of a load run, judged against what the balancer was told to do: each
 * backend's expected share is its weight over the sum of weights (Maglev fills its table in that
 * proportion). Without weights every backend expects an equal share.
 */
import { round3 } from './stats.js';

export interface BackendShare {
  count: number;
  /** Fraction of the total, 0..1. */
  share: number;
  /** The weight the expectation is computed from (1 each when no weights are known). */
  weight: number;
  /** weight / sum of weights, 0..1. */
  expectedShare: number;
  /**
   * (share - expected) / expected * 100. A backend expected to get nothing (weight 0, or not
   * among the configured ones) that got something shows +100 and `unexpected`.
   */
  deviationPct: number;
  unexpected?: boolean;
}

export interface Fairness {
  /** "weights": from --weights or the balancer's admin API; "equal": 1/n each. */
  basis: 'weights' | 'equal';
  backends: Record<string, BackendShare>;
  /** Backends expected to receive traffic (weight > 0). */
  fairOver: number;
  /** The largest |deviationPct| over backends expected to get traffic, and unexpected ones. */
  maxDeviationPct: number;
}

export interface ShareBasis {
  /** Weight by backend name; a seen backend not listed expects nothing. */
  weights?: ReadonlyMap<string, number>;
  /** Equal shares over this many backends (--backends) instead of the number seen. */
  expected?: number;
}

const byName = (a: string, b: string): number => a.localeCompare(b, 'en', { numeric: true });

export function fairness(counts: ReadonlyMap<string, number>, basis: ShareBasis = {}): Fairness {
  let total = 0;
  for (const c of counts.values()) total += c;
  const weights = basis.weights && [...basis.weights.values()].some((w) => w > 0) ? basis.weights : undefined;

  const names = new Set(counts.keys());
  if (weights) for (const n of weights.keys()) names.add(n);
  let weightSum = 0;
  let fairOver: number;
  const weightOf = (name: string): number => (weights ? Math.max(0, weights.get(name) ?? 0) : 1);
  if (weights) {
    for (const n of names) weightSum += weightOf(n);
    fairOver = [...names].filter((n) => weightOf(n) > 0).length;
  } else {
    fairOver = basis.expected && basis.expected > 0 ? basis.expected : Math.max(1, counts.size);
    weightSum = fairOver;
  }

  const backends: Record<string, BackendShare> = {};
  let maxDeviationPct = 0;
  for (const name of [...names].sort(byName)) {
    const count = counts.get(name) ?? 0;
    const share = total > 0 ? count / total : 0;
    const weight = weightOf(name);
    const expectedShare = weightSum > 0 ? weight / weightSum : 0;
    const row: BackendShare = { count, share: round3(share), weight, expectedShare: round3(expectedShare), deviationPct: 0 };
    if (expectedShare > 0) {
      row.deviationPct = round3(((share - expectedShare) / expectedShare) * 100);
    } else if (count > 0) {
      row.deviationPct = 100;
      row.unexpected = true;
    }
    if (expectedShare > 0 || row.unexpected) maxDeviationPct = Math.max(maxDeviationPct, Math.abs(row.deviationPct));
    backends[name] = row;
  }
  return { basis: weights ? 'weights' : 'equal', backends, fairOver, maxDeviationPct: round3(maxDeviationPct) };
}

/** `--weights b1=2,b2=1` (names as the run attributes them: header values, addresses...). */
export function parseWeights(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const part of text.split(',')) {
    const item = part.trim();
    if (!item) continue;
    const eq = item.lastIndexOf('=');
    const name = eq > 0 ? item.slice(0, eq).trim() : '';
    const w = Number(eq > 0 ? item.slice(eq + 1) : NaN);
    if (!name || !Number.isFinite(w) || w < 0 || w > 1_000_000) {
      throw new Error(`--weights: "${item}" is not NAME=WEIGHT with a weight >= 0 (e.g. --weights b1=2,b2=1)`);
    }
    out.set(name, w);
  }
  if (out.size === 0) throw new Error('--weights: expected NAME=WEIGHT[,NAME=WEIGHT...]');
  return out;
}
