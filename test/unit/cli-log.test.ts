/**
 * Log lines (src/observe/log.ts): level names instead of pino's numbers, JSON unless stdout is a
 * terminal, a readable form on a terminal.
 */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { createLogger, defaultLogFormat, type LogFormat } from '../../src/observe/log.js';

function capture(format: LogFormat, write: (log: ReturnType<typeof createLogger>) => void): string {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      out += chunk.toString('utf8');
      cb();
    },
  });
  // pino writes to a plain stream synchronously; pino-pretty (sync) writes through at once too.
  write(createLogger('info', format, sink));
  return out;
}

describe('log lines', () => {
  it.each([
    { name: 'info', call: 'info' as const, level: 'info' },
    { name: 'warn', call: 'warn' as const, level: 'warn' },
    { name: 'error', call: 'error' as const, level: 'error' },
  ])('json: $name is written by name', ({ call, level }) => {
    const out = capture('json', (log) => log[call]({ event: 'e' }, 'hello'));
    const line = JSON.parse(out.trim()) as Record<string, unknown>;
    expect(line.level).toBe(level);
    expect(line).toMatchObject({ event: 'e', msg: 'hello' });
  });

  it('pretty: a readable line with the level name, no JSON', () => {
    const out = capture('pretty', (log) => log.warn({ event: 'health_change', backend: '10.0.0.1' }, 'backend 10.0.0.1 is down'));
    expect(out).toMatch(/WARN.*backend 10\.0\.0\.1 is down/);
    expect(out).toContain('backend: "10.0.0.1"');
    expect(() => JSON.parse(out.trim())).toThrow();
  });

  it('below the level: nothing', () => {
    expect(capture('json', (log) => log.debug('hidden'))).toBe('');
  });

  it.each([
    { name: 'terminal', env: {}, tty: true, want: 'pretty' },
    { name: 'pipe or journald', env: {}, tty: false, want: 'json' },
    { name: 'forced json on a terminal', env: { SLUICE_LOG_FORMAT: 'json' }, tty: true, want: 'json' },
    { name: 'forced pretty in a pipe', env: { SLUICE_LOG_FORMAT: 'pretty' }, tty: false, want: 'pretty' },
    { name: 'unknown value: the default', env: { SLUICE_LOG_FORMAT: 'xml' }, tty: false, want: 'json' },
  ])('format: $name -> $want', ({ env, tty, want }) => {
    expect(defaultLogFormat(env, tty)).toBe(want);
  });
});
