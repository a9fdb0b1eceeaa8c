/**
 * Between the data plane and the cluster (src/control/): starts the ControlPlane, answers the
 * data plane's owner queries through it (asking again for a token that may still be on its way
 * to its owner), publishes the entries the data plane learned, refreshes them on a timer, and
 * tells the cluster each new generation's backend set. Without a cluster config it does nothing.
 */
import type { SluiceConfig } from '../config/types.js';
import { ControlPlane, backendSetHash, loadClusterKey, type EntryKind, type SyncEntry } from '../control/index.js';
import { DEFAULT_HOLD_PACKETS } from '../dataplane/contract/limits.js';
import { OWNER_KIND, type OwnerEntry } from '../dataplane/contract/messages.js';
import type { Metrics } from '../observe/metrics.js';
import type { Logger } from '../observe/log.js';
import type { Generations } from './generations.js';
import type { Startable } from './startable.js';
import { StartupError } from './startup-error.js';
import type { DataplaneSupervisor } from './supervisor.js';

/** Published owner entries live this long unless refreshed; flows republish every third of it. */
const OWNER_TTL_MS = 30_000;
const OWNER_REFRESH_MS = 10_000;
/** A token query that hears NOT FOUND is asked again (the token may be on its way to its owner), within the join's hold. */
const TOKEN_QUERY_RETRIES = 3;
const TOKEN_QUERY_RETRY_DELAY_MS = 4;
const TOKEN_QUERY_RETRY_UNTIL_MS = 40;
/**
 * A fragment query that hears NOT FOUND is asked again too: the datagram's first fragment reached
 * another instance at about the same moment, and its entry may still be on its way to the owner.
 * Until shortly before the data plane's fragment hold ends (fragments.holdMs).
 */
const FRAGMENT_QUERY_RETRY_DELAY_MS = 5;
const FRAGMENT_QUERY_RETRY_MARGIN_MS = 20;
/** A datagram's entry lives as long as the data plane remembers it (fragment-table.ts DEFAULT_FRAGMENT_TIMEOUT_MS). */
const FRAGMENT_OWNER_TTL_MS = 2_000;

/** The cluster codec's name of a data-plane owner kind. */
function entryKind(kind: number): EntryKind {
  return kind === OWNER_KIND.token ? 'token' : kind === OWNER_KIND.fragment ? 'fragment' : 'flow';
}

export interface OwnerBridgeOptions {
  log: Logger;
  metrics: Metrics;
  /** The config the cluster is started with (cluster settings change only with a restart). */
  config: SluiceConfig;
  generations: Generations;
  supervisor: DataplaneSupervisor;
}

export class OwnerBridge implements Startable {
  readonly name = 'cluster';
  readonly #opts: OwnerBridgeOptions;
  #cluster: ControlPlane | null = null;
  #refresh: NodeJS.Timeout | null = null;

  constructor(opts: OwnerBridgeOptions) {
    this.#opts = opts;
    const { supervisor, generations } = opts;
    supervisor.onReady(() => {
      const cl = opts.config.cluster;
      if (this.#cluster && cl?.sync) supervisor.send({ type: 'owner-queries', enabled: true, holdPackets: cl.holdPackets ?? DEFAULT_HOLD_PACKETS });
    });
    supervisor.onNotice('owner-query', (m) => {
      // Unanswered, the data plane expires the query at its deadline and forwards as if not found.
      this.#answer(m.qid, m.kind, m.key).catch((e: Error) => opts.log.error({ event: 'owner_query_failed', error: e.message }, 'owner query failed'));
    });
    supervisor.onNotice('owner-entries', (m) => this.#publish(m.entries));
    generations.onApplied(() => this.#announce(true));
  }

  /** The cluster's view for the admin API, or null without a cluster. */
  get controlPlane(): ControlPlane | null {
    return this.#cluster;
  }

  get syncing(): boolean {
    return this.#cluster !== null && (this.#opts.config.cluster?.sync ?? false);
  }

  async start(): Promise<void> {
    const { config, log, metrics, supervisor } = this.#opts;
    const cluster = config.cluster;
    if (!cluster) return;
    let key: Buffer;
    try {
      key = loadClusterKey(cluster);
    } catch (e) {
      throw new StartupError(`cluster key: ${(e as Error).message}`);
    }
    const cp = new ControlPlane({ cluster, key, onError: (e) => log.error({ event: 'cluster_error', error: e.message }, 'control plane error') });
    await cp.start().catch((e: Error) => {
      throw new StartupError(`cluster: cannot listen on ${cluster.listen}: ${e.message}`);
    });
    cp.onLiveChange((live) => log.warn({ event: 'cluster_view', live }, `cluster live set: ${live.join(', ')}`));
    this.#cluster = cp;
    metrics.setCluster(cp);
    this.#announce(false);
    if (cluster.sync) this.#refresh = setInterval(() => supervisor.send({ type: 'publish-owners' }), OWNER_REFRESH_MS);
  }

  async stop(): Promise<void> {
    if (this.#refresh) clearInterval(this.#refresh);
    await this.#cluster?.stop();
  }

  /** Tell the cluster our generation; after a change, publish what other instances need around it. */
  #announce(publish: boolean): void {
    const cp = this.#cluster;
    if (!cp) return;
    const { generations, supervisor } = this.#opts;
    const selected = generations.spec.backends
      .filter((b) => b.serving)
      .map((b) => ({ service: generations.serviceName(b.serviceId), address: b.address, weight: b.weight }));
    cp.setGeneration(generations.number, backendSetHash(selected));
    if (publish && this.syncing) supervisor.send({ type: 'publish-owners' });
  }

  async #answer(qid: number, kind: number, key: Uint8Array): Promise<void> {
    const cp = this.#cluster;
    let backendId = -1;
    if (cp) {
      const end = this.#opts.metrics.ownerQueryLatency.startTimer();
      const started = performance.now();
      const isToken = kind === OWNER_KIND.token;
      let who = await cp.query(entryKind(kind), key);
      // An MP_JOIN follows its connection's third ACK by ~1 ms (docs/PROTOCOLS.md), and the
      // instance that learned the token from that ACK publishes it at the same moment: the join's
      // query can reach the owner first and hear NOT FOUND. Ask again a few times while the data
      // plane still holds the join (its hold ends at QUERY_DEADLINE_MS, 50 ms).
      for (let retry = 0; who === null && isToken && retry < TOKEN_QUERY_RETRIES; retry++) {
        const left = TOKEN_QUERY_RETRY_UNTIL_MS - (performance.now() - started) - TOKEN_QUERY_RETRY_DELAY_MS;
        if (left < 2) break;
        await new Promise((r) => setTimeout(r, TOKEN_QUERY_RETRY_DELAY_MS));
        who = await cp.query('token', key, left);
      }
      const fragmentUntil = (this.#opts.config.fragments?.holdMs ?? 200) - FRAGMENT_QUERY_RETRY_MARGIN_MS;
      while (who === null && kind === OWNER_KIND.fragment) {
        const left = fragmentUntil - (performance.now() - started) - FRAGMENT_QUERY_RETRY_DELAY_MS;
        if (left < 2) break;
        await new Promise((r) => setTimeout(r, FRAGMENT_QUERY_RETRY_DELAY_MS));
        who = await cp.query('fragment', key, Math.min(left, 20));
      }
      end();
      if (who) backendId = this.#opts.generations.backendId(who.service, who.address);
    }
    this.#opts.supervisor.send({ type: 'owner-answer', qid, backendId });
  }

  #publish(entries: readonly OwnerEntry[]): void {
    const cp = this.#cluster;
    if (!cp) return;
    const { generations } = this.#opts;
    const byId = new Map(generations.spec.backends.map((b) => [b.id, b]));
    const out: SyncEntry[] = [];
    for (const e of entries) {
      const b = byId.get(e.backendId);
      if (!b) continue;
      const kind = entryKind(e.kind);
      out.push({ kind, key: e.key, backend: { service: generations.serviceName(b.serviceId), address: b.address }, ttlMs: kind === 'fragment' ? FRAGMENT_OWNER_TTL_MS : OWNER_TTL_MS });
    }
    if (out.length > 0) cp.publish(out);
  }
}
