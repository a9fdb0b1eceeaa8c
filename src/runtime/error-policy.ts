/**
 * What the control process does with an error nobody caught.
 *
 * Policy: log it (event "unexpected_error", with the stack), count it in
 * sluice_control_unexpected_errors_total, and keep running. The control process holds no
 * packet state: forwarding lives in the data-plane process, and every request handler and
 * timer that can fail already contains its own errors (a failing HTTP handler answers 500).
 * An error that still escapes has cost at most the operation it was part of; exiting would
 * cost every connection through the balancer, because the data plane goes down with its
 * supervisor. So Sluice never exits on its own for one: the counter is the alarm, and a
 * restart, if the log shows it is needed, is the operator's decision.
 */
import { Counter, type Registry } from 'prom-client';
import type { Logger } from '../observe/log.js';

export type UnexpectedKind = 'exception' | 'rejection';

export function installErrorPolicy(log: Logger, registry: Registry): Counter<'kind'> {
  const counter = new Counter({
    name: 'sluice_control_unexpected_errors_total',
    help: 'Errors no handler caught in the control process (logged as unexpected_error; the process keeps running and forwarding continues)',
    labelNames: ['kind'],
    registers: [registry],
  });
  const record = (kind: UnexpectedKind, e: unknown): void => {
    counter.inc({ kind });
    const err = e instanceof Error ? e : new Error(String(e));
    try {
      log.error({ event: 'unexpected_error', kind, error: err.message, stack: err.stack }, 'unexpected error in the control process; still running');
    } catch {
      // A failing logger must not turn into a second uncaught exception.
    }
  };
  process.on('uncaughtException', (e) => record('exception', e));
  process.on('unhandledRejection', (e) => record('rejection', e));
  return counter;
}
