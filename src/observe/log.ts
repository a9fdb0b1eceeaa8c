import { pino, type DestinationStream, type Logger } from 'pino';
import { PinoPretty } from 'pino-pretty';

export type { Logger };

/**
 * How log lines are written: json (one object per line, the default when stdout is not a
 * terminal, so journald and log shippers get structure) or pretty (coloured, readable lines for a
 * person at a terminal).
 */
export type LogFormat = 'json' | 'pretty';

/** pretty on a terminal, json otherwise; SLUICE_LOG_FORMAT=json|pretty overrides. */
export function defaultLogFormat(env: NodeJS.ProcessEnv = process.env, isTty: boolean = process.stdout.isTTY === true): LogFormat {
  const f = env.SLUICE_LOG_FORMAT;
  if (f === 'json' || f === 'pretty') return f;
  return isTty ? 'pretty' : 'json';
}

/**
 * Structured lines on stdout, one per event that matters; never per packet. The level is written
 * by name ("level":"info"), not pino's number, so a reader or a query needs no table.
 */
export function createLogger(level: string = process.env.SLUICE_LOG_LEVEL ?? 'info', format: LogFormat = defaultLogFormat(), destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label: string) => ({ level: label }) },
  };
  if (format === 'pretty') {
    // Synchronous, in this thread: a worker-thread transport would lose the last lines on exit.
    return pino(options, PinoPretty({ sync: true, colorize: destination === undefined && process.stdout.isTTY === true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid', destination: destination ?? 1 }));
  }
  return destination ? pino(options, destination) : pino(options);
}
