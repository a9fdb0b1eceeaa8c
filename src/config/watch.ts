/**
 * Hot reload: re-reads the config file when it changes on disk or on SIGHUP, and hands each new
 * valid generation (or the reason it was rejected) to the caller. The caller keeps running on
 * its current config until onConfig hands it a new one.
 *
 * The file's directory is watched, not the file: editors and `mv` replace a file by renaming a
 * new one over it, which leaves a watch on the old inode silent.
 */
import { watch, type FSWatcher } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { readBounded, readBoundedAsync } from './bounded-read.js';
import { ConfigError, fileError, MAX_CONFIG_BYTES, parseConfig } from './load.js';
import type { SluiceConfig } from './types.js';

export interface ConfigWatcherOptions {
  path: string;
  /** A new valid config whose text differs from the last one seen. */
  onConfig: (config: SluiceConfig, text: string) => void;
  /** The file changed but is invalid or unreadable; the caller should keep its current config. */
  onInvalid: (error: ConfigError) => void;
  /** Quiet time after the last file event before reading. Default 200 ms. */
  debounceMs?: number;
  /** Re-read on SIGHUP. Default true. */
  signal?: boolean;
  /**
   * The text the caller's current config came from (see readConfigFile). If given, only a
   * different text is reported; if not, start() records the file's current text as the baseline
   * without reporting it.
   */
  initialText?: string;
  /** A callback threw or the directory watch failed. Default: process.emitWarning. */
  onError?: (error: unknown) => void;
}

export const DEFAULT_DEBOUNCE_MS = 200;

export class ConfigWatcher {
  readonly path: string;
  readonly #options: ConfigWatcherOptions;
  readonly #debounceMs: number;
  #running = false;
  #fsWatcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  #lastText: string | undefined;
  #lastReadError: string | undefined;
  /** A read in progress, and whether another trigger arrived meanwhile. */
  #inFlight: Promise<void> | undefined;
  #again = false;
  readonly #onSignal = (): void => this.#schedule(0);

  constructor(options: ConfigWatcherOptions) {
    this.#options = options;
    this.path = resolve(options.path);
    this.#debounceMs = options.debounceMs ?? DEFAULT_DEBOUNCE_MS;
    this.#lastText = options.initialText;
  }

  get running(): boolean {
    return this.#running;
  }

  start(): void {
    if (this.#running) return;
    this.#running = true;
    if (this.#lastText === undefined) {
      try {
        this.#lastText = readBounded(this.path, MAX_CONFIG_BYTES).toString('utf8');
      } catch {
        // No baseline: the first readable text will be reported.
      }
    }
    const name = basename(this.path);
    try {
      this.#fsWatcher = watch(dirname(this.path), { persistent: false }, (_event, filename) => {
        // Some platforms do not name the file; then any change in the directory counts.
        if (filename === null || filename === name) this.#schedule(this.#debounceMs);
      });
      this.#fsWatcher.on('error', (err) => this.#reportError(err));
    } catch (err) {
      this.#reportError(err);
    }
    if (this.#options.signal ?? true) process.on('SIGHUP', this.#onSignal);
  }

  stop(): void {
    if (!this.#running) return;
    this.#running = false;
    process.removeListener('SIGHUP', this.#onSignal);
    this.#fsWatcher?.close();
    this.#fsWatcher = undefined;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** Re-read now (for an admin "reload" command); resolves after the callbacks ran. */
  async reload(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    await this.#check();
  }

  #schedule(delayMs: number): void {
    if (!this.#running) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#check();
    }, delayMs);
  }

  /** Reads serially: a trigger during a read causes one more read after it. */
  async #check(): Promise<void> {
    if (this.#inFlight) {
      this.#again = true;
      return this.#inFlight;
    }
    this.#inFlight = (async () => {
      do {
        this.#again = false;
        await this.#readOnce();
      } while (this.#again && this.#running);
    })();
    try {
      await this.#inFlight;
    } finally {
      this.#inFlight = undefined;
    }
  }

  async #readOnce(): Promise<void> {
    let text: string;
    try {
      text = (await readBoundedAsync(this.path, MAX_CONFIG_BYTES)).toString('utf8');
    } catch (err) {
      if (!this.#running) return;
      const error = fileError(this.path, err);
      // A missing file stays missing across many events; say so once.
      if (error.message !== this.#lastReadError) {
        this.#lastReadError = error.message;
        this.#deliver(() => this.#options.onInvalid(error));
      }
      return;
    }
    this.#lastReadError = undefined;
    if (!this.#running || text === this.#lastText) return;
    this.#lastText = text;
    let config: SluiceConfig;
    try {
      config = parseConfig(text, this.#options.path);
    } catch (err) {
      if (err instanceof ConfigError) this.#deliver(() => this.#options.onInvalid(err));
      else this.#reportError(err);
      return;
    }
    this.#deliver(() => this.#options.onConfig(config, text));
  }

  #deliver(callback: () => void): void {
    try {
      callback();
    } catch (err) {
      this.#reportError(err);
    }
  }

  #reportError(err: unknown): void {
    try {
      if (this.#options.onError) this.#options.onError(err);
      else process.emitWarning(err instanceof Error ? err : new Error(String(err)), { code: 'SLUICE_CONFIG_WATCH' });
    } catch {
      // Nothing may escape the watcher's event handlers.
    }
  }
}
