/**
 * The lab from a shell:
 *   node dist/scripts/lab-cli.js up [--backends N] [--mode stick|split] [--ipip] [--balancers N]
 *                                   [--client-paths 2] [--no-ipv6] [--no-servers] [--kernel-forwarding]
 *                                   [--run-id ID]
 *     builds the lab, writes a Sluice config, prints the lab description as JSON and keeps
 *     running until Ctrl-C / SIGTERM, then tears everything down.
 *   node dist/scripts/lab-cli.js down <runId>    removes the namespaces sl-<runId>-* (and their processes)
 *   node dist/scripts/lab-cli.js down --all      removes every sl-* namespace (after crashes)
 */
import { Command, Option } from 'commander';
import { Lab, teardownRun, type LabMode } from './lab/topology.js';
import { intIn } from './lib/cli-args.js';

interface UpOptions {
  backends: number;
  mode: LabMode;
  ipip?: boolean;
  balancers: number;
  clientPaths: number;
  ipv6: boolean;
  servers: boolean;
  kernelForwarding?: boolean;
  runId?: string;
}

const program = new Command().name('lab-cli').description('Sluice namespace lab');

program
  .command('up')
  .description('build a lab, print its description and keep it until Ctrl-C')
  .option('--backends <n>', 'backends', intIn(1, 200), 3)
  .addOption(new Option('--mode <mode>', 'stick | split').choices(['stick', 'split']).default('stick'))
  .option('--ipip', 'run the userspace IP-in-IP decapsulator in every backend')
  .option('--balancers <n>', 'balancer instances (ECMP over them)', intIn(1, 6), 1)
  .option('--client-paths <n>', '1, or 2 for a second client path (MPTCP)', intIn(1, 2), 1)
  .option('--no-ipv6', 'IPv4 only')
  .option('--no-servers', 'do not start the backend servers')
  .option('--kernel-forwarding', 'let the balancer namespace kernel-forward the VIPs to b1 (baseline without Sluice)')
  .option('--run-id <id>', '1-4 chars [a-z0-9]')
  .action(async (o: UpOptions) => {
    const lab = await Lab.create({
      backends: o.backends,
      mode: o.mode,
      ipip: o.ipip ?? false,
      balancers: o.balancers,
      clientPaths: o.clientPaths === 2 ? 2 : 1,
      ipv6: o.ipv6,
      servers: o.servers,
      runId: o.runId,
    });
    let stopping = false;
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      process.stderr.write(`lab-cli: ${sig}: tearing down ${lab.runId}\n`);
      lab.destroy().then(
        () => process.exit(0),
        (err: unknown) => {
          process.stderr.write(`lab-cli: teardown: ${String(err)}\n`);
          process.exit(1);
        },
      );
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGHUP', () => stop('SIGHUP'));
    try {
      if (o.kernelForwarding) await lab.kernelForwarding(true, 1);
      const configs = lab.balancers().map((b) => lab.configFor(undefined, { balancer: b.index }));
      process.stdout.write(JSON.stringify({ ...lab.describe(), configs }, null, 2) + '\n');
      process.stderr.write(
        `lab ${lab.runId} is up. Try:\n` +
          `  ip netns exec ${lab.clientNs} node dist/scripts/load.js --mode http --target 198.51.100.10:80 --count 100\n` +
          `  ip netns exec ${lab.ns('lb')} node dist/src/cli.js run --config ${configs[0] ?? ''}\n` +
          `Ctrl-C tears it down.\n`,
      );
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    // Keep the process alive until a signal arrives.
    setInterval(() => undefined, 1 << 30);
  });

program
  .command('down')
  .description('remove the namespaces (and processes, run dir) of a run, or of every run with --all')
  .argument('[runId]', 'the run id (the ID of sl-ID-*)')
  .option('--all', 'every sl-* namespace')
  .action(async (runId: string | undefined, o: { all?: boolean }) => {
    if (!o.all && !runId) throw new Error('down: give a run id or --all');
    if (runId && !/^[a-z0-9]{1,4}$/.test(runId)) throw new Error(`down: "${runId}" is not a run id (1-4 chars [a-z0-9])`);
    const removed = await teardownRun(o.all ? '*' : (runId ?? ''));
    process.stdout.write(removed.length ? `removed ${removed.join(' ')}\n` : 'nothing to remove\n');
  });

program.parseAsync().catch((err: unknown) => {
  process.stderr.write(`lab-cli: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
