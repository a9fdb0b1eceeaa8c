import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON lines on stdout, one per event that matters; never per packet. */
export function createLogger(level: string = process.env.SLUICE_LOG_LEVEL ?? 'info'): Logger {
  return pino({ level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime });
}
