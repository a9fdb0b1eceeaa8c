/**
 * Between the data plane and the cluster (src/control/): starts the ControlPlane, answers the
 * data plane's owner queries through it (asking again for a token that may still be on its way
 * to its owner), publishes the entries the data plane learned, refreshes them on a timer, and
 * tells the cluster each new generation's backend set. Without a cluster config it does nothing.
 */
import type { SluiceConfig } from '../config/types.js';
import { ControlPlane, backendSetHash, loadClusterKey, type BackendIdentity, type EntryKind, type QueryOptions, type SyncEntry } from '../control/index.js';
import { DEFAULT_HOLD_PACKETS } from '../dataplane/contract/limits.js';
import { failpointOn } from '../dataplane/failpoints.js';
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
/**
 * How long the control process waits for a flow's owner. The data plane holds the frames
 * QUERY_DEADLINE_MS (50 ms) from its ask; an IPC hop each way comes off that. A query crosses
 * four processes (data plane, control, the peer's control, back), each of which must get a CPU:
 * on a shared 2-core machine running three instances, BIRD and the load clients, a process
 * waits on the run queue for several ms, and a peer busy with a publish burst or a handoff after
 * a change answers tens of ms late. Giving up at cluster.queryTimeoutMs (20 ms by default) threw
 * away answers that were on their way; now that is when the QUERY goes again to the owners still
 * silent (owner and replica are asked in parallel from the start), and the wait lasts the budget.
 */
const OWNER_ANSWER_BUDGET_MS = 44;
/** joined(): how long the whole cluster must have been in view, how often that is checked, and the longest wait. */
const JOIN_SETTLE_MS = 500;
const JOIN_POLL_MS = 50;
const JOIN_MAX_WAIT_MS = 5000;
/** OwnerSync's limit on replicas: beyond this many instances, entries live on 8 of them. */
const MAX_REPLICAS = 8;
/** The longest wait the data plane may ask for (its second ask after a silence; owner-hold.ts RETRY_DEADLINE_MS). */
const MAX_OWNER_WAIT_MS = 150;
/** How often the data plane's "change recent" window is checked for news (it also hears at once of a backend-set change). */
const OWNER_RECENT_CHECK_MS = 200;
/** A window whose end moved by less than this is not sent again (both processes count down on their own clocks). */
const OWNER_RECENT_SLACK_MS = 1000;
/** The data plane's "no owner answered in time" (owner-hold.ts NO_ANSWER). */
const NO_ANSWER = -2;
/**
 * A token query waits the join's whole hold (the data plane's waitMs): its owners hold the QUERY
 * until the token's PUBLISH arrives (sync.ts AWAIT_PUBLISH_MS). A NOT FOUND that comes sooner (an
 * owner that could not hold it: MAX_AWAITING were waiting) is asked again after a pause, while
 * the hold lasts.
 */
const TOKEN_QUERY_RETRY_DELAY_MS = 5;
/** The data plane's token hold less its IPC margin (owner-hold.ts TOKEN_QUERY_DEADLINE_MS). */
const TOKEN_ANSWER_BUDGET_MS = 144;
/** Failpoint token-publish-late: how late learned tokens are published (a loaded host's control process). */
const LATE_TOKEN_PUBLISH_MS = 60;
/**
 * A fragment query that hears NOT FOUND is asked again too: the datagram's first fragment reached
 * another instance at about the same moment, and its entry may still be on its way to the owner.
 * Until shortly before the data plane's fragment hold ends (fragments.holdMs).
 */
const FRAGMENT_QUERY_RETRY_DELAY_MS = 5;
const FRAGMENT_QUERY_RETRY_MARGIN_MS = 20;
/** A datagram's entry lives as long as the data plane remembers it (fragment-table.ts DEFAULT_FRAGMENT_TIMEOUT_MS). */
const FRAGMENT_OWNER_TTL_MS = 2_000;

/**
 * A NOT FOUND that may mean "not there yet" (a token or a fragment's entry on its way to its
 * owner): ask again after pauseMs, each ask waiting at most capMs, until untilMs after `started`
 * leaves less than 2 ms. Null if none found it.
 */
async function askAgain(cp: ControlPlane, kind: EntryKind, key: Uint8Array, started: number, untilMs: number, pauseMs: number, capMs: number, o?: QueryOptions): Promise<BackendIdentity | null> {
  for (;;) {
    const left = untilMs - (performance.now() - started) - pauseMs;
    if (left < 2) return null;
    await new Promise((r) => setTimeout(r, pauseMs));
    const who = await cp.query(kind, key, Math.min(left, capMs), o);
    if (who) return who;
  }
}

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
  #recentCheck: NodeJS.Timeout | null = null;
  /** End of the window last told to the data plane (performance.now ms; 0: "not recent"; -1: nothing told yet). */
  #recentSent = -1;
  /** When a data-plane process restarted after one died became ready (performance.now ms), or undefined. */
  #dataplaneReadyAt: number | undefined;
  #dataplaneStarts = 0;
  #markJoined: () => void = () => undefined;
  readonly #joined = new Promise<void>((resolve) => (this.#markJoined = resolve));

  constructor(opts: OwnerBridgeOptions) {
    this.#opts = opts;
    const { supervisor, generations } = opts;
    supervisor.onReady(() => {
      const cl = opts.config.cluster;
      // A data-plane process started after one died has lost its flows, UDP ones pinned off the
      // table's pick included: it asks for the entries' lifetime (see #pushRecent). The first
      // one, at the instance's start, has lost nothing.
      if (this.#dataplaneStarts++ > 0) this.#dataplaneReadyAt = performance.now();
      if (this.#cluster && cl?.sync) {
        supervisor.send({ type: 'owner-queries', enabled: true, holdPackets: cl.holdPackets ?? DEFAULT_HOLD_PACKETS });
        this.#recentSent = -1;
        this.#pushRecent();
      }
    });
    supervisor.onNotice('owner-query', (m) => {
      // Unanswered, the data plane expires the query at its deadline and forwards as if not found.
      this.#answer(m.qid, m.kind, m.key, m.waitMs).catch((e: Error) => opts.log.error({ event: 'owner_query_failed', error: e.message }, 'owner query failed'));
    });
    supervisor.onNotice('owner-entries', (m) => this.#publish(m.entries));
    generations.onApplied(() => this.#announce(true));
  }

  /**
   * Resolves once this instance may take traffic as far as the cluster is concerned: at once
   * without a syncing cluster; else when every configured peer is live and has been for
   * JOIN_SETTLE_MS (a newcomer receives the entries its peers hold within ms of joining their
   * view), or when failureMs + JOIN_SETTLE_MS passed since start (some peers are down), at most
   * JOIN_MAX_WAIT_MS. The VIP announcement waits for it: a restarted instance that took traffic
   * before its peers' entries arrived sent moved flows to the table's pick.
   */
  joined(): Promise<void> {
    return this.#joined;
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
    if (!cluster) {
      this.#markJoined();
      return;
    }
    let key: Buffer;
    try {
      key = loadClusterKey(cluster);
    } catch (e) {
      throw new StartupError(`cluster key: ${(e as Error).message}`);
    }
    // Every instance holds every entry (clusters up to 8): a flow pinned off the table's pick is
    // known wherever ECMP moves it, and its query is a local hit instead of a peer round trip,
    // which on a busy machine is what times out (DESIGN.md, "Several instances").
    const instances = new Set([cluster.instanceId, ...cluster.peers.map((p) => p.id)]).size;
    const cp = new ControlPlane({
      cluster,
      key,
      limits: { replicas: Math.max(1, Math.min(MAX_REPLICAS, instances)) },
      onError: (e) => log.error({ event: 'cluster_error', error: e.message }, 'control plane error'),
    });
    await cp.start().catch((e: Error) => {
      throw new StartupError(`cluster: cannot listen on ${cluster.listen}: ${e.message}`);
    });
    cp.onLiveChange((live) => log.warn({ event: 'cluster_view', live }, `cluster live set: ${live.join(', ')}`));
    this.#cluster = cp;
    metrics.setCluster(cp);
    this.#announce(false);
    if (cluster.sync) {
      this.#refresh = setInterval(() => supervisor.send({ type: 'publish-owners' }), OWNER_REFRESH_MS);
      this.#recentCheck = setInterval(() => this.#pushRecent(), OWNER_RECENT_CHECK_MS);
      cp.onTableChange(() => this.#pushRecent());
      this.#pushRecent();
      this.#waitJoined(cp, instances, cluster.failureMs);
    } else {
      this.#markJoined();
    }
  }

  /** See joined(): polls the live set (bounded by JOIN_MAX_WAIT_MS). */
  #waitJoined(cp: ControlPlane, instances: number, failureMs: number): void {
    const started = performance.now();
    let allSince: number | undefined;
    const poll = setInterval(() => {
      const now = performance.now();
      const all = cp.liveInstances().length >= instances;
      if (!all) allSince = undefined;
      else allSince ??= now;
      const settled = allSince !== undefined && now - allSince >= JOIN_SETTLE_MS;
      if (settled || now - started >= failureMs + JOIN_SETTLE_MS || now - started >= JOIN_MAX_WAIT_MS) {
        clearInterval(poll);
        this.#markJoined();
      }
    }, JOIN_POLL_MS);
    poll.unref();
  }

  async stop(): Promise<void> {
    if (this.#refresh) clearInterval(this.#refresh);
    if (this.#recentCheck) clearInterval(this.#recentCheck);
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

  /** How long flows pinned off the table's pick may live: the owner entries' TTL, or the UDP idle timeout if longer. */
  get #entryLifetimeMs(): number {
    return Math.max(OWNER_TTL_MS, this.#opts.config.flowTable.udpIdleTimeoutS * 1000);
  }

  /**
   * Tell the data plane how long a table change stays recent, when that is news: a new window, or
   * one that moved by more than OWNER_RECENT_SLACK_MS (a fresh flow entry extends it), or its end. Both
   * processes count down on their own clocks, so nothing is sent while the window just runs.
   *
   * The window is the cluster's (a backend set changed here or at a peer, or a flow entry was
   * stored here: ControlPlane.changeRecentMs) or a restarted data plane's, whichever ends later.
   * An instance that restarts whole learns of flows pinned elsewhere from the entries its peers
   * hand it when it joins (a flow entry stored here), well before its routes come back (its
   * speaker's session takes seconds); checked every OWNER_RECENT_CHECK_MS. A data plane restarted
   * under a running control process lost its own pinned UDP flows: it asks for the lifetime.
   */
  #pushRecent(): void {
    const cp = this.#cluster;
    if (!cp || !this.syncing) return;
    const now = performance.now();
    const lifetime = this.#entryLifetimeMs;
    const sinceStart = this.#dataplaneReadyAt === undefined ? 0 : Math.max(0, Math.ceil(this.#dataplaneReadyAt + lifetime - now));
    const forMs = Math.max(cp.changeRecentMs(lifetime), sinceStart);
    const until = forMs > 0 ? now + forMs : 0;
    if (until === 0 ? this.#recentSent === 0 : this.#recentSent > 0 && Math.abs(until - this.#recentSent) < OWNER_RECENT_SLACK_MS) return;
    this.#recentSent = until;
    this.#opts.supervisor.send({ type: 'owner-recent', forMs });
  }

  /** Ask the owners for the data plane (waitMs: its budget for this query; the data plane's default otherwise) and answer it. */
  async #answer(qid: number, kind: number, key: Uint8Array, waitMs?: number): Promise<void> {
    const cp = this.#cluster;
    let backendId = -1;
    if (cp) {
      const end = this.#opts.metrics.ownerQueryLatency.startTimer();
      const started = performance.now();
      const isToken = kind === OWNER_KIND.token;
      // A flow query waits the whole budget, asking the silent owners again at queryTimeoutMs; a
      // timeout (not a NOT FOUND) is reported as such, so the data plane counts it.
      let unanswered = false;
      const resendMs = this.#opts.config.cluster?.queryTimeoutMs;
      const budget = Math.min(MAX_OWNER_WAIT_MS, Math.max(1, waitMs ?? (isToken ? TOKEN_ANSWER_BUDGET_MS : OWNER_ANSWER_BUDGET_MS)));
      let who =
        kind === OWNER_KIND.flow
          ? await cp.query('flow', key, budget, {
              resendMs,
              onTimeout: () => {
                unanswered = true;
              },
            })
          : isToken
            ? await cp.query('token', key, budget, { resendMs })
            : await cp.query(entryKind(kind), key);
      // An MP_JOIN follows its connection's third ACK by ~1 ms (docs/PROTOCOLS.md), and the
      // instance that learned the token from that ACK publishes it at the same moment: the owners
      // hold the query until it arrives. An early NOT FOUND (an owner too busy to hold it) is
      // asked again while the data plane still holds the join.
      if (who === null && isToken) who = await askAgain(cp, 'token', key, started, budget, TOKEN_QUERY_RETRY_DELAY_MS, budget, { resendMs });
      if (who === null && kind === OWNER_KIND.fragment) {
        const fragmentUntil = (this.#opts.config.fragments?.holdMs ?? 200) - FRAGMENT_QUERY_RETRY_MARGIN_MS;
        who = await askAgain(cp, 'fragment', key, started, fragmentUntil, FRAGMENT_QUERY_RETRY_DELAY_MS, 20);
      }
      end();
      if (who) backendId = this.#opts.generations.backendId(who.service, who.address);
      else if (unanswered) backendId = NO_ANSWER;
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
    if (out.length === 0) return;
    if (failpointOn('token-publish-late')) {
      const tokens = out.filter((e) => e.kind === 'token');
      if (tokens.length > 0) setTimeout(() => cp.publish(tokens), LATE_TOKEN_PUBLISH_MS);
      const rest = out.filter((e) => e.kind !== 'token');
      if (rest.length > 0) cp.publish(rest);
      return;
    }
    cp.publish(out);
  }
}
