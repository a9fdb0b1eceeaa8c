#!/usr/bin/env -S node --max-semi-space-size=1
// --max-semi-space-size=1: V8 grows the young generation up to 16 MiB per semi-space by default;
// capped at 1 MiB the idle control process measured about 11 MB less resident (README, flow table, "Idle memory").
/**
 * sluice run | check | status | backends | flows | explain | drain | undrain | weight | reload | restart
 *
 * `run` and `check` work in this process; the others are clients of a running instance's admin
 * API (answers typed in observe/admin-api.ts). Exit codes: 0 ok; 1 a failure (no daemon, an
 * answer refused); 2 a usage mistake (a filter or --config naming nothing that is running).
 */
import { realpathSync } from 'node:fs';
import { resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { loadConfigFile, ConfigError, formatIssues, formatIssue } from './config/load.js';
import { checkConfigFile } from './config/check.js';
import { DEFAULT_ADMIN_SOCKET as DEFAULT_SOCKET } from './config/defaults.js';
import { Daemon, StartupError } from './runtime/daemon.js';
import { createLogger } from './observe/log.js';
import { adminRequest } from './observe/admin-client.js';
import { FLOW_LIST_MAX, MAX_OPERATOR_WEIGHT, type AdminError, type BackendsReport, type ExplainReport, type InstanceResult, type FlowsReport, type OperateAction, type OperateResult, type ReloadResult, type RestartResult, type StatusReport } from './observe/admin-api.js';
import { formatExplain } from './observe/explain-format.js';
import { formatRates, statusRates } from './observe/status-rates.js';
import { VERSION } from './version.js';
import { installErrorPolicy } from './runtime/error-policy.js';

/** A mistake in what the operator asked for (exit 2), as opposed to a failure (exit 1). */
class UsageError extends Error {}

/** Widest a free-text table cell gets (the full text is in --json). */
const MAX_CELL = 48;

/** Text cut to `max` characters, the cut marked. */
function truncate(text: string, max = MAX_CELL): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** A file path as the kernel sees it, for comparing two names of one file. */
function canonicalPath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return resolve(p);
  }
}

function port(v: string): number {
  const n = Number(v);
  if (!/^\d{1,5}$/.test(v) || n > 65535) throw new InvalidArgumentError('must be a port number 0..65535');
  return n;
}

function seconds(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0.1 || n > 60) throw new InvalidArgumentError('must be a number of seconds 0.1..60');
  return n;
}

function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('must be a positive integer');
  return n;
}

/** The admin socket: --socket, else the one named by --config, else the default. */
function socketFrom(opts: { socket?: string; config?: string }): string {
  if (opts.socket) return opts.socket;
  if (opts.config) {
    try {
      return loadConfigFile(opts.config).admin.socket;
    } catch {
      // fall through to the default
    }
  }
  return DEFAULT_SOCKET;
}

/** address:port, with an IPv6 address in brackets so the port cannot be read as part of it. */
function hostPort(address: string, port: number | string): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function table(headers: string[], rows: (string | number)[][]): string {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (c ?? '').padEnd(widths[i])).join('  ').trimEnd()).join('\n');
}

/**
 * A GET of the admin API, read as the answer type of that route (observe/admin-api.ts): the
 * daemon writes it from the same type, and a field an older daemon lacks prints as "-".
 */
async function admin<T>(opts: { socket?: string; config?: string }, method: string, path: string): Promise<T> {
  const { status, body } = await adminRequest(socketFrom(opts), method, path);
  if (status >= 400) {
    const err = typeof body === 'object' && body && 'error' in body ? (body as AdminError) : null;
    // A filter naming nothing configured: the operator's mistake, said plainly.
    if (err?.code === 'not-configured') throw new UsageError(err.error);
    throw new Error(`admin API answered ${status}: ${err ? err.error : JSON.stringify(body)}`);
  }
  return body as T;
}

function printStatus(s: StatusReport): void {
  console.log(`sluice ${s.version}  generation ${s.generation}  config ${s.config}`);
  const origin = s.dataplane.origin && s.dataplane.origin !== 'started' ? `, ${s.dataplane.origin} with ${s.dataplane.keptFlows ?? 0} flows` : '';
  console.log(`data plane: ${s.dataplane.up ? 'up' : 'DOWN'} (engine ${s.dataplane.engine}, pid ${s.dataplane.pid}, restarts ${s.dataplane.restarts}${origin})`);
  // Older daemons report no closing split: the line stays as it was.
  const split = s.flows.closing === undefined ? '' : ` (${s.flows.active - s.flows.closing} open, ${s.flows.closing} closing)`;
  console.log(`flows: ${s.flows.active} active${split} of ${s.flows.capacity}, ${s.flows.created} created, ${s.flows.evictions} evicted`);
  console.log(`frames: ${s.traffic.rxFrames} in, ${s.traffic.txFrames} out, ${s.traffic.txErrors} tx errors, ${s.traffic.captureDropped} capture drops`);
  // One line per packet worker when there are several (dataplane.workers).
  const workers = s.dataplane.workers ?? [];
  if (workers.length > 1) {
    for (const w of workers) console.log(`  worker ${w.worker}: ${w.rxFrames} in, ${w.txFrames} out, ${w.drops} dropped, ${w.flows} flows, ${w.captureDropped} capture drops, ${w.cpuSeconds.toFixed(2)} s CPU${w.restarts > 0 ? `, restarted ${w.restarts} time(s)` : ''}`);
  }
  const drops = Object.entries(s.drops);
  console.log(`drops: ${drops.length === 0 ? 'none' : drops.map(([k, v]) => `${k}=${v}`).join(' ')}`);
  if (s.lastReload) console.log(`last reload: ${s.lastReload.at} ${s.lastReload.ok ? 'ok' : 'REFUSED'}: ${s.lastReload.message}`);
  if (s.announce) {
    const a = s.announce;
    console.log(`announce: ${a.speaker} ${a.speakerUp ? 'up' : 'DOWN'}${a.drained ? ', instance DRAINED' : ''}; sessions ${a.sessions.map((x) => `${x.peer} ${x.state}`).join(', ') || 'none'}${a.lastError ? `; last error: ${a.lastError}` : ''}`);
    for (const v of a.vips) console.log(`  ${v.vip}: ${v.announced ? 'announced' : 'withdrawn'} (${v.verdict}, ${v.servingBackends} serving backends)`);
  }
  const rows: (string | number)[][] = [];
  for (const svc of s.services) {
    for (const b of svc.backends) {
      // An older daemon's /status has no per-backend status: "-".
      rows.push([svc.name, `${hostPort(svc.vip, svc.port)}/${svc.protocol}`, svc.forwarding, b.address, b.weight, b.status ?? '-', b.mac ?? truncate(`unresolved (${b.problem})`), b.flowsCreated, b.packets]);
    }
  }
  console.log();
  console.log(table(['SERVICE', 'VIP', 'MODE', 'BACKEND', 'WEIGHT', 'STATUS', 'MAC', 'FLOWS', 'PACKETS'], rows));
}

const program = new Command();
program.name('sluice').description('Layer-4 packet-forwarding load balancer').version(VERSION, '-v, --version');

program
  .command('run')
  .description('run the balancer with a config file (needs CAP_NET_RAW; see examples/sluice.service)')
  .requiredOption('-c, --config <file>', 'config file (JSON)')
  .option('--log-level <level>', 'trace|debug|info|warn|error (overrides the config)')
  .action(async (opts: { config: string; logLevel?: string }) => {
    let level = opts.logLevel;
    if (!level) {
      try {
        level = loadConfigFile(opts.config).log.level;
      } catch {
        level = 'info';
      }
    }
    const log = createLogger(level);
    const daemon = new Daemon(opts.config, log);
    installErrorPolicy(log, daemon.metrics.registry);
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ event: 'signal', signal }, 'stopping');
      void daemon.stop().then(() => process.exit(0));
    };
    // A hitless restart: this control process leaves, the data plane forwards on for the next one.
    const release = (why: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ event: 'releasing', why }, 'handing over to the next control process');
      void daemon.release().then(() => process.exit(0));
    };
    daemon.onRestartRequest = () => release('restart request');
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGUSR2', () => release('SIGUSR2'));
    try {
      await daemon.start();
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      log.error({ event: 'start_failed', error: msg }, 'sluice could not start');
      process.stderr.write(`sluice: ${msg}\n`);
      await daemon.stop().catch(() => undefined);
      process.exit(e instanceof StartupError ? 2 : 1);
    }
  });

program
  .command('check')
  .description('validate a config file and the cluster key file it names; exit 0 if valid (warnings are advice), 2 if not')
  .argument('<file>', 'config file (JSON)')
  .option('--json', 'machine-readable output')
  .action((file: string, opts: { json?: boolean }) => {
    try {
      const { config: cfg, warnings } = checkConfigFile(file);
      // "warnings" only when there are some, so the clean answer stays {"ok":true,"services":N}.
      if (opts.json) console.log(JSON.stringify({ ok: true, services: cfg.services.length, ...(warnings.length > 0 ? { warnings } : {}) }));
      else {
        console.log(`${file}: ok (${cfg.services.length} services, ${cfg.services.reduce((n, s) => n + s.backends.length, 0)} backends)`);
        for (const w of warnings) process.stderr.write(`${file}: warning: ${formatIssue(w)}\n`);
      }
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      // issues: the first MAX_REPORTED_ISSUES found; total: how many there were.
      if (opts.json) console.log(JSON.stringify({ ok: false, total: e.total, issues: e.issues }));
      else process.stderr.write(`${file}: invalid (${e.total} issue${e.total === 1 ? '' : 's'})\n${formatIssues(e)}\n`);
      process.exitCode = 2;
    }
  });

const withSocket = (c: Command): Command =>
  c.option('-s, --socket <path>', `admin socket (default: from --config, else ${DEFAULT_SOCKET})`).option('-c, --config <file>', 'read the admin socket path from this config');

withSocket(program.command('status').description('show the running instance: generation, data plane, services, backends, drops'))
  .option('--rate', 'also show rates (pps, bps, new flows/s): the difference of two /status snapshots --interval apart')
  .option('--interval <seconds>', 'seconds between the two snapshots of --rate', seconds, 1)
  .option('--json', 'machine-readable output')
  .action(async (opts: { socket?: string; config?: string; json?: boolean; rate?: boolean; interval: number }) => {
    const first = await admin<StatusReport>(opts, 'GET', '/status');
    if (!opts.rate) {
      if (opts.json) console.log(JSON.stringify(first, null, 2));
      else printStatus(first);
      return;
    }
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, opts.interval * 1000));
    const second = await admin<StatusReport>(opts, 'GET', '/status');
    const rates = statusRates(first, second, (performance.now() - t0) / 1000);
    if (opts.json) console.log(JSON.stringify({ ...second, rates }, null, 2));
    else {
      printStatus(second);
      console.log();
      console.log(formatRates(rates, table));
    }
  });

withSocket(program.command('flows').description('list tracked flows (bounded)'))
  .option('--vip <address>', 'only flows to this VIP')
  .option('--backend <address>', 'only flows on this backend')
  .option('--client <address>', 'only flows from this client address')
  .option('--limit <n>', `at most this many rows (max ${FLOW_LIST_MAX})`, positiveInt, 100)
  .option('--json', 'machine-readable output')
  .action(async (opts: { socket?: string; config?: string; vip?: string; backend?: string; client?: string; limit: number; json?: boolean }) => {
    const q = new URLSearchParams({ limit: String(opts.limit) });
    if (opts.vip) q.set('vip', opts.vip);
    if (opts.backend) q.set('backend', opts.backend);
    if (opts.client) q.set('client', opts.client);
    const out = await admin<FlowsReport>(opts, 'GET', `/flows?${q}`);
    if (opts.json) {
      console.log(JSON.stringify(out, null, 2));
      return;
    }
    console.log(
      table(
        ['PROTO', 'CLIENT', 'VIP', 'SERVICE', 'BACKEND', 'AGE_S', 'IDLE_S', 'STATE'],
        out.rows.map((r) => [r.protocol, hostPort(r.client, r.clientPort), hostPort(r.vip, r.port), r.service, r.backend, (r.ageMs / 1000).toFixed(1), (r.idleMs / 1000).toFixed(1), r.state]),
      ),
    );
    console.log(`${out.rows.length} of ${out.total} matching flows shown`);
  });

withSocket(program.command('backends').description('list backends: status in the current generation, health, active flows'))
  .option('--service <name>', 'only this service')
  .option('--json', 'machine-readable output')
  .action(async (opts: { socket?: string; config?: string; service?: string; json?: boolean }) => {
    const out = await admin<BackendsReport>(opts, 'GET', '/backends');
    const rows = out.backends.filter((b) => !opts.service || b.service === opts.service);
    if (opts.service && rows.length === 0) {
      const names = [...new Set(out.backends.map((b) => b.service))];
      throw new UsageError(`no service named ${JSON.stringify(opts.service)} (services: ${names.join(', ') || 'none'})`);
    }
    if (opts.json) {
      console.log(JSON.stringify({ backends: rows }, null, 2));
      return;
    }
    console.log(
      table(
        ['SERVICE', 'BACKEND', 'ROLE', 'WEIGHT', 'STATUS', 'HEALTH', 'ACTIVE_FLOWS', 'CLOSING', 'FLOWS', 'PACKETS'],
        rows.map((b) => [
          b.service,
          b.address,
          b.role,
          b.weight,
          `${b.status}${b.overridden ? ' (operator)' : ''}`,
          b.health ? truncate(`${b.health.check} ${b.health.state}${b.health.lastError ? ` (${b.health.lastError})` : ''}`) : '-',
          b.activeFlows,
          b.closingFlows ?? '-',
          b.flowsCreated,
          b.packets,
        ]),
      ),
    );
  });

withSocket(program.command('explain').description('show what Sluice decides for one flow: service, hash and Maglev slot, backend, tracked entry, owners, MPTCP token, drop reason'))
  .argument('[tuple]', 'the flow as PROTO:CLIENT:CPORT-VIP:PORT, e.g. tcp:192.0.2.7:40001-198.51.100.10:80 (IPv6 in brackets)')
  .option('--vip <address>', 'the service VIP')
  .option('--port <n>', 'the service port', port)
  .option('--protocol <tcp|udp>', 'the protocol', 'tcp')
  .option('--client <address>', 'the client address')
  .option('--client-port <n>', 'the client port (without it: each tracked flow of the client, else a representative port)', port)
  .option('--token <hex>', 'explain an MPTCP MP_JOIN SYN carrying this connection token (8 hex digits)')
  .option('--json', 'machine-readable output')
  .action(async (tuple: string | undefined, opts: { socket?: string; config?: string; vip?: string; port?: number; protocol: string; client?: string; clientPort?: number; token?: string; json?: boolean }) => {
    const q = explainArgs(tuple, opts);
    const out = await admin<ExplainReport>(opts, 'GET', `/explain?${q}`);
    if (opts.json) console.log(JSON.stringify(out, null, 2));
    else console.log(formatExplain(out));
  });

/** The explain query from a 5-tuple argument or the options (the tuple wins where both say). */
function explainArgs(tuple: string | undefined, o: { vip?: string; port?: number; protocol: string; client?: string; clientPort?: number; token?: string }): URLSearchParams {
  let { vip, port: vport, protocol, client, clientPort } = o;
  if (tuple !== undefined) {
    const m = /^(tcp|udp):(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d{1,5})-(\[[0-9a-fA-F:.]+\]|[0-9.]+):(\d{1,5})$/.exec(tuple);
    if (!m) throw new UsageError(`tuple ${JSON.stringify(tuple)} is not PROTO:CLIENT:CPORT-VIP:PORT (e.g. tcp:192.0.2.7:40001-198.51.100.10:80, IPv6 in brackets)`);
    const bare = (a: string): string => a.replace(/^\[|\]$/g, '');
    [protocol, client, clientPort, vip, vport] = [m[1], bare(m[2]), port(m[3]), bare(m[4]), port(m[5])];
  }
  if (protocol !== 'tcp' && protocol !== 'udp') throw new UsageError(`--protocol must be tcp or udp, got ${JSON.stringify(protocol)}`);
  if (!vip || vport === undefined || !client) throw new UsageError('explain needs a VIP, a port and a client: --vip VIP --port P --client IP [--client-port N], or a tuple PROTO:CLIENT:CPORT-VIP:PORT');
  if (o.token !== undefined && !/^(0x)?[0-9a-fA-F]{1,8}$/.test(o.token)) throw new UsageError(`--token must be up to 8 hex digits, got ${JSON.stringify(o.token)}`);
  const q = new URLSearchParams({ protocol, vip, port: String(vport), client });
  if (clientPort !== undefined) q.set('clientPort', String(clientPort));
  if (o.token !== undefined) q.set('token', o.token);
  return q;
}

const operate = (name: OperateAction, description: string): Command => {
  const c = withSocket(program.command(name).description(description)).argument('<backend>', 'backend address').option('--service <name>', 'only in this service (default: every service that has it)').option('--json', 'machine-readable output');
  if (name === 'weight') c.argument('<weight>', `new weight 0..${MAX_OPERATOR_WEIGHT}`);
  return c.action(async (backend: string, ...rest: unknown[]) => {
    const weight = name === 'weight' ? (rest[0] as string) : undefined;
    const opts = (name === 'weight' ? rest[1] : rest[0]) as { socket?: string; config?: string; service?: string; json?: boolean };
    if (weight !== undefined && !/^\d+$/.test(weight)) throw new InvalidArgumentError(`weight must be an integer 0..${MAX_OPERATOR_WEIGHT}, got ${JSON.stringify(weight)}`);
    const q = new URLSearchParams({ address: backend });
    if (opts.service) q.set('service', opts.service);
    if (weight !== undefined) q.set('weight', weight);
    const { status, body } = await adminRequest(socketFrom(opts), 'POST', `/backends/${name}?${q}`);
    // 200/404: OperateResult; 400: AdminError.
    const r = body as Partial<OperateResult & AdminError>;
    if (opts.json) console.log(JSON.stringify(body, null, 2));
    else if (status === 200) console.log(r.message);
    if (status !== 200) {
      if (!opts.json) process.stderr.write(`sluice ${name}: ${r.message ?? r.error ?? JSON.stringify(body)}\n`);
      process.exitCode = 1;
    }
  });
};
operate('drain', 'stop sending new flows to a backend; its existing flows continue until they end');
operate('undrain', 'let a drained backend take new flows again');
operate('weight', 'change a backend\'s weight at runtime (until the next restart)');

// Instance maintenance: withdraw this instance's VIPs from the routers (needs "announce").
const instance = program.command('instance').description('this instance as a whole: drain (withdraw its VIPs from the routers) or undrain');
for (const [name, description] of [
  ['drain', 'withdraw this instance\'s VIP routes so routers send new flows elsewhere; flows that still arrive are forwarded'],
  ['undrain', 'announce this instance\'s VIPs again (where they have a serving backend)'],
] as const) {
  withSocket(instance.command(name).description(description))
    .option('--json', 'machine-readable output')
    .action(async (opts: { socket?: string; config?: string; json?: boolean }) => {
      const { status, body } = await adminRequest(socketFrom(opts), 'POST', `/instance/${name}`);
      const r = body as Partial<InstanceResult> & Partial<AdminError>;
      if (opts.json) console.log(JSON.stringify(body, null, 2));
      else if (status === 200) console.log(r.message);
      if (status !== 200) {
        if (!opts.json) process.stderr.write(`sluice instance ${name}: ${r.message ?? r.error ?? JSON.stringify(body)}\n`);
        process.exitCode = 1;
      }
    });
}

withSocket(program.command('reload').description('re-read the running instance\'s config file now (same as SIGHUP)')).action(async (opts: { socket?: string; config?: string }) => {
  if (opts.config) {
    // The daemon re-reads its own file: a different --config would be silently ignored.
    const running = (await admin<StatusReport>(opts, 'GET', '/status')).config;
    if (canonicalPath(opts.config) !== canonicalPath(running)) {
      throw new UsageError(`--config ${resolve(opts.config)} is not the running instance's config file ${running}: reload re-reads ${running} (edit that file, or restart with --config ${opts.config})`);
    }
  }
  const { status, body } = await adminRequest(socketFrom(opts), 'POST', '/reload');
  // A refusal by the admin socket's authorization is an AdminError ({ error }), not a ReloadResult.
  const r = body as Partial<ReloadResult> & Partial<AdminError>;
  if (status === 200) console.log(`reloaded: ${r.message}`);
  else {
    process.stderr.write(`reload refused: ${r.message ?? r.error ?? JSON.stringify(body)}\n`);
    process.exitCode = 1;
  }
});

withSocket(
  program
    .command('restart')
    .description('hitless restart: the running control process hands over and exits, its data plane forwards on with every flow; the next `sluice run` (systemd: Restart=always) adopts it, or takes over its flow table if it is another build'),
).action(async (opts: { socket?: string; config?: string }) => {
  const socket = socketFrom(opts);
  const { status, body } = await adminRequest(socket, 'POST', '/restart');
  const r = body as Partial<RestartResult> & Partial<AdminError>;
  if (status !== 202) {
    process.stderr.write(`restart refused: ${r.error ?? JSON.stringify(body)}\n`);
    process.exitCode = 1;
    return;
  }
  // Bounded: the old control process stops its parts (at most a few seconds) and exits.
  let gone = false;
  for (let i = 0; i < 200 && !gone; i++) {
    await new Promise((res) => setTimeout(res, 50));
    gone = await adminRequest(socket, 'GET', '/status', 500).then(
      () => false,
      () => true,
    );
  }
  if (!gone) {
    process.stderr.write(`restart: control process ${r.pid} still answers on ${socket} after 10 s\n`);
    process.exitCode = 1;
    return;
  }
  if (r.handover) console.log(`control process ${r.pid} exited; data plane ${r.dataplanePid ?? '-'} forwards on. Start the next one (\`sluice run\`; systemd with Restart=always does): it adopts the data plane, or takes over its flow table if it is another build.`);
  else console.log(`control process ${r.pid} exited with its data plane (SLUICE_HANDOVER=off: nothing kept).`);
});

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`sluice: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = e instanceof UsageError ? 2 : 1;
});

