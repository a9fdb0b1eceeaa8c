/**
 * Small process helpers for the namespace lab: run a command (rejecting with its stderr),
 * run it inside a network namespace, spawn long-lived processes there (tracked, so teardown
 * can kill every one of them), and set sysctls.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';

export interface RunOptions {
  /** Written to the command's stdin. */
  input?: string;
  /** Kill the command after this many ms. Default 30 s. */
  timeoutMs?: number;
  /** Extra environment variables. */
  env?: NodeJS.ProcessEnv;
}

export interface RunResult {
  stdout: string;
  stderr: string;
}

/** Thrown when a command exits non-zero: carries the command line, exit code and stderr. */
export class CommandError extends Error {
  constructor(
    readonly argv: readonly string[],
    readonly code: number | string | null,
    readonly stdout: string,
    readonly stderr: string,
  ) {
    super(`command failed (exit ${String(code)}): ${argv.join(' ')}\n${stderr.trim() || stdout.trim()}`);
    this.name = 'CommandError';
  }
}

/** Run `file args...`; resolve with its output, reject with a CommandError carrying stderr. */
export function run(file: string, args: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      file,
      args,
      {
        timeout: opts.timeoutMs ?? 30_000,
        maxBuffer: 64 * 1024 * 1024,
        env: opts.env ? { ...process.env, ...opts.env } : process.env,
        encoding: 'utf8',
      },
      (err, stdout, stderr) => {
        if (err) {
          const code = (err as NodeJS.ErrnoException & { code?: number | string }).code ?? null;
          reject(new CommandError([file, ...args], code, stdout, stderr));
          return;
        }
        resolve({ stdout, stderr });
      },
    );
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Synchronous variant for exit hooks; never throws, returns stdout ('' on failure). */
export function runSyncQuiet(file: string, args: readonly string[]): string {
  try {
    return execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 10_000 });
  } catch {
    return '';
  }
}

/** `ip netns exec NS argv...` */
export function nsRun(ns: string, argv: readonly string[], opts: RunOptions = {}): Promise<RunResult> {
  if (argv.length === 0) throw new Error('nsRun: empty argv');
  return run('ip', ['netns', 'exec', ns, ...argv], opts);
}

/** Run a shell script inside a namespace (`sh -ec SCRIPT`). */
export function nsSh(ns: string, script: string, opts: RunOptions = {}): Promise<RunResult> {
  return nsRun(ns, ['sh', '-ec', script], opts);
}

/**
 * Feed iproute2 commands to `ip [-n NS] -batch -` (one process for many commands).
 * Lines are `ip` arguments without the leading `ip`, e.g. `link set lo up`.
 */
export async function ipBatch(ns: string | null, lines: readonly string[], opts: { force?: boolean; family?: 4 | 6 } = {}): Promise<void> {
  if (lines.length === 0) return;
  // Batch lines take no options: a family (needed by `rule` with IPv6 selectors) applies to the whole batch.
  const fam = opts.family === 6 ? ['-6'] : opts.family === 4 ? ['-4'] : [];
  const args = [...fam, ...(ns ? ['-n', ns] : []), ...(opts.force ? ['-force'] : []), '-batch', '-'];
  await run('ip', args, { input: lines.join('\n') + '\n' });
}

/** Set sysctls inside a namespace in one process: keys like `net.ipv4.ip_forward`. */
export async function sysctl(ns: string, values: Readonly<Record<string, string | number>>): Promise<void> {
  const pairs = Object.entries(values).map(([k, v]) => `${k}=${v}`);
  if (pairs.length === 0) return;
  await nsRun(ns, ['sysctl', '-q', '-w', ...pairs]);
}

/** Read one sysctl inside a namespace. */
export async function sysctlGet(ns: string, key: string): Promise<string> {
  const { stdout } = await nsRun(ns, ['sysctl', '-n', key]);
  return stdout.trim();
}

/** Names of every network namespace on the host (`ip netns list`). */
export async function listNamespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return parseNetnsList(stdout);
}

export function listNamespacesSync(): string[] {
  return parseNetnsList(runSyncQuiet('ip', ['netns', 'list']));
}

function parseNetnsList(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n.length > 0);
}

/** PIDs of processes whose network namespace is NS. */
export async function nsPids(ns: string): Promise<number[]> {
  try {
    const { stdout } = await run('ip', ['netns', 'pids', ns]);
    return parsePids(stdout);
  } catch {
    return [];
  }
}

function parsePids(text: string): number[] {
  return text
    .split(/\s+/)
    .filter((s) => /^\d+$/.test(s))
    .map(Number)
    .filter((p) => p !== process.pid);
}

/**
 * Kill every process left in NS and delete it. Waits up to `graceMs` for SIGTERM'd
 * processes before SIGKILL. Never throws: it is used on teardown paths.
 */
export async function deleteNamespace(ns: string, graceMs = 1000): Promise<void> {
  let pids = await nsPids(ns);
  for (const pid of pids) killQuiet(pid, 'SIGTERM');
  const deadline = Date.now() + graceMs;
  while (pids.length > 0 && Date.now() < deadline) {
    await sleep(50);
    pids = pids.filter(isAlive);
  }
  for (const pid of pids) killQuiet(pid, 'SIGKILL');
  try {
    await run('ip', ['netns', 'del', ns]);
  } catch {
    // already gone
  }
}

/** Synchronous teardown for exit hooks and signal handlers. */
export function deleteNamespaceSync(ns: string): void {
  for (const pid of parsePids(runSyncQuiet('ip', ['netns', 'pids', ns]))) killQuiet(pid, 'SIGKILL');
  runSyncQuiet('ip', ['netns', 'del', ns]);
}

export function killQuiet(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(pid, signal);
  } catch {
    // gone
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

export interface SpawnOptions {
  /** Append stdout and stderr to this file (default: inherit nothing, 'ignore'). */
  logFile?: string;
  /** Pipe stdout instead of logging it (stderr still goes to logFile if given). */
  pipeStdout?: boolean;
  /** Keep a pipe on stdin open; lab servers started with --watch-stdin exit when it closes. */
  pipeStdin?: boolean;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
}

/**
 * Tracks the long-lived processes a lab started so that teardown can stop every one of them
 * (SIGTERM, then SIGKILL after a grace period), also synchronously from an exit hook.
 */
export class ProcessGroup {
  readonly #children = new Set<ChildProcess>();

  /** Spawn `argv` inside NS (`ip netns exec` execs the command, so child.pid is the command itself). */
  spawnIn(ns: string, argv: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    if (argv.length === 0) throw new Error('spawnIn: empty argv');
    return this.spawn('ip', ['netns', 'exec', ns, ...argv], opts);
  }

  spawn(file: string, args: readonly string[], opts: SpawnOptions = {}): ChildProcess {
    let logFd: number | undefined;
    if (opts.logFile) logFd = openSync(opts.logFile, 'a');
    const out = opts.pipeStdout ? 'pipe' : (logFd ?? 'ignore');
    const err = logFd ?? 'ignore';
    const child = spawn(file, args, {
      stdio: [opts.pipeStdin ? 'pipe' : 'ignore', out, err],
      env: opts.env ? { ...process.env, ...opts.env } : process.env,
      cwd: opts.cwd,
    });
    if (logFd !== undefined) closeSync(logFd);
    this.#children.add(child);
    child.on('exit', () => this.#children.delete(child));
    child.on('error', () => this.#children.delete(child));
    return child;
  }

  get size(): number {
    return this.#children.size;
  }

  /** Stop one child: SIGTERM, wait up to graceMs, then SIGKILL. Resolves when it has exited. */
  async stop(child: ChildProcess, graceMs = 3000): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) {
      this.#children.delete(child);
      return;
    }
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
    this.#children.delete(child);
  }

  async stopAll(graceMs = 3000): Promise<void> {
    await Promise.all([...this.#children].map((c) => this.stop(c, graceMs)));
  }

  killAllSync(): void {
    for (const c of this.#children) {
      if (c.pid !== undefined) killQuiet(c.pid, 'SIGKILL');
    }
    this.#children.clear();
  }
}
