/**
 * A load run over time: completed operations, failures and latency percentiles per bucket, for
 * the report's plots. Buckets are fixed-width from the run's start.
 */
import { percentile, round3 } from './stats.js';

export interface TimelineBucket {
  /** Bucket start, seconds since the run started. */
  t: number;
  ok: number;
  errors: number;
  /** Operations per second in this bucket (ok only). */
  okPerS: number;
  errorsPerS: number;
  p50: number;
  p90: number;
  p99: number;
}

export interface TimelineData {
  bucketMs: number;
  buckets: TimelineBucket[];
}

/** A bucket width that gives about 100 points over the run (100 ms .. 5 s). */
export function bucketWidthFor(durationS: number): number {
  return Math.min(5000, Math.max(100, Math.round((durationS * 1000) / 100 / 100) * 100));
}

export class Timeline {
  readonly #bucketMs: number;
  readonly #ok: number[] = [];
  readonly #errors: number[] = [];
  readonly #latencies: number[][] = [];

  constructor(bucketMs: number) {
    this.#bucketMs = bucketMs;
  }

  #index(elapsedMs: number): number {
    const i = Math.max(0, Math.floor(elapsedMs / this.#bucketMs));
    while (this.#ok.length <= i) {
      this.#ok.push(0);
      this.#errors.push(0);
      this.#latencies.push([]);
    }
    return i;
  }

  ok(elapsedMs: number, latencyMs: number): void {
    const i = this.#index(elapsedMs);
    this.#ok[i] = (this.#ok[i] ?? 0) + 1;
    this.#latencies[i]?.push(latencyMs);
  }

  error(elapsedMs: number): void {
    const i = this.#index(elapsedMs);
    this.#errors[i] = (this.#errors[i] ?? 0) + 1;
  }

  data(): TimelineData {
    const perS = 1000 / this.#bucketMs;
    const buckets = this.#ok.map((ok, i): TimelineBucket => {
      const lat = Float64Array.from(this.#latencies[i] ?? []).sort();
      const errors = this.#errors[i] ?? 0;
      return {
        t: round3((i * this.#bucketMs) / 1000),
        ok,
        errors,
        okPerS: round3(ok * perS),
        errorsPerS: round3(errors * perS),
        p50: round3(percentile(lat, 0.5)),
        p90: round3(percentile(lat, 0.9)),
        p99: round3(percentile(lat, 0.99)),
      };
    });
    return { bucketMs: this.#bucketMs, buckets };
  }
}
