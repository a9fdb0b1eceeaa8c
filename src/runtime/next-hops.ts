/**
 * The next hop (egress MAC) of every backend address, resolved through the kernel's routes and
 * neighbours (dataplane/host.ts). A backend whose next hop does not resolve takes no new flows;
 * retryMissing() looks again, and the reloader makes a new generation when one resolves.
 */
import type { SluiceConfig } from '../config/types.js';
import { resolveNextHop, type NextHop } from '../dataplane/host.js';
import { formatMac } from '../packet/mac.js';
import type { Metrics } from '../observe/metrics.js';
import type { Logger } from '../observe/log.js';
import type { Startable } from './startable.js';

/** Route and neighbour look-ups at once (each may wait for ARP/ND). */
const RESOLVE_CONCURRENCY = 16;
/** How long a retry waits for one neighbour (the first resolve waits resolveNextHop's default). */
const RETRY_WAIT_MS = 500;

export interface NextHopsOptions {
  log: Logger;
  metrics: Metrics;
  /** The config resolved at start() (reloads call resolve() with theirs). */
  config: SluiceConfig;
}

/** dsr-l2 rewrites only the MAC, so its backends must be on the egress segment itself (a retry asks it of any dsr-l2 service naming the address). */
function needsDirect(config: SluiceConfig, address: string): boolean {
  return config.services.some((s) => s.forwarding === 'dsr-l2' && s.backends.some((b) => b.address === address));
}

export class NextHops implements Startable {
  readonly name = 'next hops';
  readonly #opts: NextHopsOptions;
  #hops = new Map<string, NextHop>();

  constructor(opts: NextHopsOptions) {
    this.#opts = opts;
  }

  async start(): Promise<void> {
    await this.resolve(this.#opts.config, true);
  }

  stop(): void {
    // Nothing runs between calls.
  }

  /** Resolved next hops by backend address, for the generation builder. */
  get map(): ReadonlyMap<string, NextHop> {
    return this.#hops;
  }

  get(address: string): NextHop | undefined {
    return this.#hops.get(address);
  }

  /** Resolve every backend address of `config` (replacing the previous set); warns about new problems. */
  async resolve(config: SluiceConfig, initial: boolean): Promise<void> {
    // An address in several services is resolved once, for the first service that names it.
    const wanted = new Map<string, boolean>();
    for (const s of config.services) for (const b of s.backends) if (!wanted.has(b.address)) wanted.set(b.address, s.forwarding === 'dsr-l2');
    const queue = [...wanted];
    const results = new Map<string, NextHop>();
    let i = 0;
    const lanes = Array.from({ length: Math.min(RESOLVE_CONCURRENCY, queue.length) }, async () => {
      while (i < queue.length) {
        const [address, direct] = queue[i++];
        results.set(address, await resolveNextHop(address, config.egressInterface, direct));
      }
    });
    await Promise.all(lanes);
    for (const [address, hop] of results) {
      if (!hop.problem) continue;
      const before = this.#hops.get(address);
      if (initial || !before || before.problem !== hop.problem) {
        this.#opts.log.warn({ event: 'backend_unresolved', backend: address, problem: hop.problem }, 'backend takes no new flows until its next hop resolves');
      }
    }
    this.#hops = results;
    this.#countUnresolved();
  }

  /** Look again at the unresolved ones; true if any resolved (a new generation is due). */
  async retryMissing(config: SluiceConfig): Promise<boolean> {
    let changed = false;
    for (const h of [...this.#hops.values()].filter((x) => x.problem)) {
      const now = await resolveNextHop(h.address, config.egressInterface, needsDirect(config, h.address), RETRY_WAIT_MS);
      if (now.problem) continue;
      this.#hops.set(h.address, now);
      changed = true;
      this.#opts.log.info({ event: 'backend_resolved', backend: h.address, mac: now.mac ? formatMac(now.mac) : null }, 'backend next hop resolved');
    }
    if (changed) this.#countUnresolved();
    return changed;
  }

  /** Whether any next hop is unresolved (so a retry has work to do). */
  get anyMissing(): boolean {
    for (const h of this.#hops.values()) if (h.problem) return true;
    return false;
  }

  #countUnresolved(): void {
    let n = 0;
    for (const h of this.#hops.values()) if (h.problem) n++;
    this.#opts.metrics.neighbourUnresolved.set(n);
  }
}
