/**
 * The health state of one target as a pure function of its probe results.
 *
 * Choice for new targets: they start 'unknown', and 'unknown' takes traffic like 'up'. A backend
 * added by a reload therefore serves at once (no `rise * interval` blackout, and no table churn
 * when a whole fleet is first checked), and leaves only after `fall` consecutive failures, the
 * same bar as an 'up' backend. From 'unknown', `rise` consecutive successes confirm 'up' (a
 * transition that does not change traffic) and `fall` consecutive failures make it 'down'.
 * A caller that prefers "prove it first" starts targets in 'down' instead.
 *
 * Only consecutive results count, so alternating results (flapping) never change the state
 * while rise and fall are both above 1.
 */
import type { ProbeResult } from './types.js';

export type HealthState = 'unknown' | 'up' | 'down';

export interface Thresholds {
  rise: number;
  fall: number;
}

export interface HealthRecord {
  readonly state: HealthState;
  /** Successes in a row ending with the last result (0 after a failure). */
  readonly consecutiveOk: number;
  /** Failures in a row ending with the last result (0 after a success). */
  readonly consecutiveFail: number;
  readonly probes: number;
  readonly failures: number;
  readonly lastResult: 'ok' | 'fail' | null;
  /** Text of the most recent failure; kept after recovery so an operator can see what happened. */
  readonly lastError: string | null;
  readonly lastLatencyMs: number | null;
  readonly lastProbeAt: number | null;
  /** When the record was made (ms since epoch, from the caller's clock). */
  readonly createdAt: number;
  /** When the state last changed; null while it never has. */
  readonly lastChangeAt: number | null;
  readonly transitionsToUp: number;
  readonly transitionsToDown: number;
}

/** Whether a backend in `state` may take new flows. */
export function takesTraffic(state: HealthState): boolean {
  return state !== 'down';
}

export function initialRecord(at: number, state: HealthState = 'unknown'): HealthRecord {
  return {
    state,
    consecutiveOk: 0,
    consecutiveFail: 0,
    probes: 0,
    failures: 0,
    lastResult: null,
    lastError: null,
    lastLatencyMs: null,
    lastProbeAt: null,
    createdAt: at,
    lastChangeAt: null,
    transitionsToUp: 0,
    transitionsToDown: 0,
  };
}

/** The record after one more probe result observed at time `at`. Never mutates `prev`. */
export function step(prev: HealthRecord, result: Pick<ProbeResult, 'ok' | 'error' | 'latencyMs'>, at: number, t: Thresholds): HealthRecord {
  const consecutiveOk = result.ok ? prev.consecutiveOk + 1 : 0;
  const consecutiveFail = result.ok ? 0 : prev.consecutiveFail + 1;
  let state = prev.state;
  if (state !== 'up' && consecutiveOk >= t.rise) state = 'up';
  else if (state !== 'down' && consecutiveFail >= t.fall) state = 'down';
  const changed = state !== prev.state;
  return {
    state,
    consecutiveOk,
    consecutiveFail,
    probes: prev.probes + 1,
    failures: prev.failures + (result.ok ? 0 : 1),
    lastResult: result.ok ? 'ok' : 'fail',
    lastError: result.ok ? prev.lastError : (result.error ?? 'failed'),
    lastLatencyMs: result.latencyMs,
    lastProbeAt: at,
    createdAt: prev.createdAt,
    lastChangeAt: changed ? at : prev.lastChangeAt,
    transitionsToUp: prev.transitionsToUp + (changed && state === 'up' ? 1 : 0),
    transitionsToDown: prev.transitionsToDown + (changed && state === 'down' ? 1 : 0),
  };
}
