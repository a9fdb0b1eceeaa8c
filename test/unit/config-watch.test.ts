import { mkdtempSync, renameSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isMainThread } from 'node:worker_threads';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/config/load.js';
import type { SluiceConfig } from '../../src/config/types.js';
import { ConfigWatcher, type ConfigWatcherOptions } from '../../src/config/watch.js';

function configText(backends: string[], interfaceName = 'eth0'): string {
  return JSON.stringify(
    {
      interface: interfaceName,
      services: [
        {
          name: 'web',
          vip: '198.51.100.10',
          port: 80,
          protocol: 'tcp',
          forwarding: 'dsr-l2',
          backends: backends.map((address) => ({ address })),
        },
      ],
    },
    null,
    2,
  );
}

const V1 = configText(['10.1.0.11']);
const V2 = configText(['10.1.0.11', '10.1.0.12']);
const V3 = configText(['10.1.0.13']);
const INVALID = configText(['10.1.0.11', 'not-an-ip']);

async function waitFor(what: string, done: () => boolean, timeoutMs = 5000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Records what a watcher reports; `current` is what a caller that applies valid configs holds. */
class Recorder {
  configs: { config: SluiceConfig; text: string }[] = [];
  invalid: ConfigError[] = [];
  errors: unknown[] = [];
  current: SluiceConfig | undefined;

  options(path: string, extra: Partial<ConfigWatcherOptions> = {}): ConfigWatcherOptions {
    return {
      path,
      debounceMs: 30,
      onConfig: (config, text) => {
        this.configs.push({ config, text });
        this.current = config;
      },
      onInvalid: (e) => this.invalid.push(e),
      onError: (e) => this.errors.push(e),
      ...extra,
    };
  }

  get events(): number {
    return this.configs.length + this.invalid.length + this.errors.length;
  }
}

describe('ConfigWatcher', () => {
  let dir: string;
  let file: string;
  let watcher: ConfigWatcher | undefined;
  let rec: Recorder;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'sluice-watch-'));
    file = join(dir, 'sluice.json');
    writeFileSync(file, V1);
    rec = new Recorder();
  });

  afterEach(() => {
    watcher?.stop();
    watcher = undefined;
    rmSync(dir, { recursive: true, force: true });
  });

  function startWatcher(extra: Partial<ConfigWatcherOptions> = {}): ConfigWatcher {
    watcher = new ConfigWatcher(rec.options(file, { signal: false, ...extra }));
    watcher.start();
    return watcher;
  }

  it('records the current file as its baseline at start, without reporting it', async () => {
    startWatcher();
    await sleep(150);
    expect(rec.events).toBe(0);
    await watcher?.reload();
    expect(rec.events).toBe(0);
  });

  it('reports a valid rewrite through onConfig with the parsed config and its text', async () => {
    startWatcher();
    writeFileSync(file, V2);
    await waitFor('onConfig', () => rec.configs.length === 1);
    expect(rec.configs[0].text).toBe(V2);
    expect(rec.configs[0].config.services[0].backends.map((b) => b.address)).toEqual(['10.1.0.11', '10.1.0.12']);
    expect(rec.invalid).toEqual([]);
  });

  it('reports an invalid rewrite through onInvalid and leaves the caller on the previous config', async () => {
    startWatcher();
    writeFileSync(file, V2);
    await waitFor('onConfig', () => rec.configs.length === 1);
    const before = rec.current;
    writeFileSync(file, INVALID);
    await waitFor('onInvalid', () => rec.invalid.length === 1);
    expect(rec.invalid[0]).toBeInstanceOf(ConfigError);
    expect(rec.invalid[0].issues.map((i) => `${i.path} ${i.rule}`)).toEqual(['$.services[0].backends[1].address ip-address']);
    expect(rec.configs).toHaveLength(1);
    expect(rec.current).toBe(before);
    // Fixing the file brings the next generation.
    writeFileSync(file, V3);
    await waitFor('onConfig after the fix', () => rec.configs.length === 2);
    expect(rec.current?.services[0].backends[0].address).toBe('10.1.0.13');
  });

  it('ignores a rewrite with unchanged text', async () => {
    startWatcher();
    writeFileSync(file, V1);
    await sleep(200);
    expect(rec.events).toBe(0);
    // The same watcher still reacts to a real change, so the silence above was not deafness.
    writeFileSync(file, V2);
    await waitFor('onConfig', () => rec.configs.length === 1);
  });

  it('reports the same invalid text only once', async () => {
    startWatcher();
    writeFileSync(file, INVALID);
    await waitFor('onInvalid', () => rec.invalid.length === 1);
    writeFileSync(file, INVALID);
    await sleep(200);
    expect(rec.invalid).toHaveLength(1);
  });

  it('follows an atomic rename-replace, as editors and mv do', async () => {
    startWatcher();
    const staging = join(dir, '.sluice.json.tmp');
    writeFileSync(staging, V2);
    renameSync(staging, file);
    await waitFor('onConfig after rename', () => rec.configs.length === 1);
    expect(rec.configs[0].text).toBe(V2);
    // A second replace reaches the new inode too: the watch is on the directory, not the file.
    writeFileSync(staging, V3);
    renameSync(staging, file);
    await waitFor('onConfig after second rename', () => rec.configs.length === 2);
    expect(rec.configs[1].text).toBe(V3);
  });

  it('coalesces a burst of writes into one read of the final text', async () => {
    startWatcher({ debounceMs: 150 });
    writeFileSync(file, V2);
    writeFileSync(file, INVALID);
    writeFileSync(file, V3);
    await waitFor('onConfig', () => rec.configs.length === 1);
    await sleep(250);
    expect(rec.configs.map((c) => c.text)).toEqual([V3]);
    expect(rec.invalid).toEqual([]);
  });

  it('reports a deleted file once (rule "file") and picks the file up when it returns', async () => {
    startWatcher();
    unlinkSync(file);
    await waitFor('onInvalid', () => rec.invalid.length === 1);
    expect(rec.invalid[0].issues[0]).toMatchObject({ path: '$', rule: 'file' });
    await watcher?.reload();
    expect(rec.invalid).toHaveLength(1);
    writeFileSync(file, V2);
    await waitFor('onConfig', () => rec.configs.length === 1);
  });

  it('reports a change against initialText, even if the file did not change since start', async () => {
    startWatcher({ initialText: V3 });
    await watcher?.reload();
    expect(rec.configs.map((c) => c.text)).toEqual([V1]);
  });

  it('survives a callback that throws and keeps watching', async () => {
    let calls = 0;
    startWatcher({
      onConfig: (config, text) => {
        calls++;
        if (calls === 1) throw new Error('apply failed');
        rec.configs.push({ config, text });
      },
    });
    writeFileSync(file, V2);
    await waitFor('onError', () => rec.errors.length === 1);
    expect(String(rec.errors[0])).toContain('apply failed');
    writeFileSync(file, V3);
    await waitFor('second onConfig', () => rec.configs.length === 1);
    expect(rec.configs[0].text).toBe(V3);
  });

  it('stop() removes the SIGHUP listener and the file watch', async () => {
    const before = process.listenerCount('SIGHUP');
    startWatcher({ signal: true });
    expect(process.listenerCount('SIGHUP')).toBe(before + 1);
    watcher?.stop();
    expect(process.listenerCount('SIGHUP')).toBe(before);
    writeFileSync(file, V2);
    await sleep(200);
    expect(rec.events).toBe(0);
  });

  it('installs no SIGHUP listener with signal: false', () => {
    const before = process.listenerCount('SIGHUP');
    startWatcher({ signal: false });
    expect(process.listenerCount('SIGHUP')).toBe(before);
  });

  // A SIGHUP without a handler ends the process, so send it only from a process (not a worker
  // thread, which cannot receive signals) and only while the watcher's handler is installed.
  it.runIf(isMainThread)('re-reads on SIGHUP', async () => {
    // File events alone would take a minute to act: only the signal can explain a prompt read.
    startWatcher({ signal: true, debounceMs: 60_000 });
    expect(process.listenerCount('SIGHUP')).toBeGreaterThan(0);
    writeFileSync(file, V2);
    await sleep(100);
    expect(rec.events).toBe(0);
    process.kill(process.pid, 'SIGHUP');
    await waitFor('onConfig after SIGHUP', () => rec.configs.length === 1);
    expect(rec.configs[0].text).toBe(V2);
  });
});
