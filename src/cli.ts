#!/usr/bin/env node
/**
 * sluice run | check | status | backends | flows | drain | undrain | weight | reload
 *
 * `run` and `check` work in this process; the others are clients of a running instance's admin
 * API (answers typed in observe/admin-api.ts).
 */
import { Command, InvalidArgumentError } from 'commander';
import { loadConfigFile, ConfigError, formatIssues, formatIssue } from './config/load.js';
import { checkConfigFile } from './config/check.js';
import { DEFAULT_ADMIN_SOCKET as DEFAULT_SOCKET } from './config/defaults.js';
import { Daemon, StartupError } from './runtime/daemon.js';
import { createLogger } from './observe/log.js';
import { adminRequest } from './observe/admin-client.js';
import { FLOW_LIST_MAX, MAX_OPERATOR_WEIGHT, type AdminError, type BackendsReport, type InstanceResult, type FlowsReport, type OperateAction, type OperateResult, type ReloadResult, type StatusReport } from './observe/admin-api.js';
import { VERSION } from './version.js';
import { installErrorPolicy } from './runtime/error-policy.js';

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
    const msg = typeof body === 'object' && body && 'error' in body ? String((body as AdminError).error) : JSON.stringify(body);
    throw new Error(`admin API answered ${status}: ${msg}`);
  }
  return body as T;
}

function printStatus(s: StatusReport): void {
  console.log(`sluice ${s.version}  generation ${s.generation}  config ${s.config}`);
  console.log(`data plane: ${s.dataplane.up ? 'up' : 'DOWN'} (engine ${s.dataplane.engine}, pid ${s.dataplane.pid}, restarts ${s.dataplane.restarts})`);
  console.log(`flows: ${s.flows.active} active of ${s.flows.capacity}, ${s.flows.created} created, ${s.flows.evictions} evicted`);
  console.log(`frames: ${s.traffic.rxFrames} in, ${s.traffic.txFrames} out, ${s.traffic.txErrors} tx errors, ${s.traffic.captureDropped} capture drops`);
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
      rows.push([svc.name, `${hostPort(svc.vip, svc.port)}/${svc.protocol}`, svc.forwarding, b.address, b.weight, b.status ?? '-', b.mac ?? `unresolved (${b.problem})`, b.flowsCreated, b.packets]);
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
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
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
  .option('--json', 'machine-readable output')
  .action(async (opts: { socket?: string; config?: string; json?: boolean }) => {
    const s = await admin<StatusReport>(opts, 'GET', '/status');
    if (opts.json) console.log(JSON.stringify(s, null, 2));
    else printStatus(s);
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
    if (opts.json) {
      console.log(JSON.stringify({ backends: rows }, null, 2));
      return;
    }
    console.log(
      table(
        ['SERVICE', 'BACKEND', 'ROLE', 'WEIGHT', 'STATUS', 'HEALTH', 'ACTIVE_FLOWS', 'FLOWS', 'PACKETS'],
        rows.map((b) => [
          b.service,
          b.address,
          b.role,
          b.weight,
          `${b.status}${b.overridden ? ' (operator)' : ''}`,
          b.health ? `${b.health.check} ${b.health.state}${b.health.lastError ? ` (${b.health.lastError})` : ''}` : '-',
          b.activeFlows,
          b.flowsCreated,
          b.packets,
        ]),
      ),
    );
  });

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

withSocket(program.command('reload').description('re-read the config file now (same as SIGHUP)')).action(async (opts: { socket?: string; config?: string }) => {
  const { status, body } = await adminRequest(socketFrom(opts), 'POST', '/reload');
  // A refusal by the admin socket's authorization is an AdminError ({ error }), not a ReloadResult.
  const r = body as Partial<ReloadResult> & Partial<AdminError>;
  if (status === 200) console.log(`reloaded: ${r.message}`);
  else {
    process.stderr.write(`reload refused: ${r.message ?? r.error ?? JSON.stringify(body)}\n`);
    process.exitCode = 1;
  }
});

program.parseAsync(process.argv).catch((e: unknown) => {
  process.stderr.write(`sluice: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exitCode = 1;
});

