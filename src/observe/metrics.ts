/**
 * Prometheus metrics. The data plane's counters arrive as a Float64Array snapshot; prom-client
 * reads them at scrape time through collect() hooks, so nothing is copied per packet.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ControlCounters, ControlPlane } from '../control/index.js';
import { DROP_REASONS } from '../packet/drop-reasons.js';
import { BUILD_INFO } from '../version.js';
import { DROPS_BASE, ENTITY, G, WORKER_FIGURE, WORKER_FIGURES, backendCounter, serviceCounter, type EntityCounter } from '../dataplane/contract/counters.js';

export interface LabelMaps {
  /** service id -> service name */
  services: ReadonlyMap<number, string>;
  /** backend id -> { service name, address } */
  backends: ReadonlyMap<number, { service: string; address: string }>;
}

/** One backend of one service as the per-backend gauges show it, refreshed before each scrape. */
export interface BackendGaugeRow {
  service: string;
  backend: string;
  /** Effective weight (operator overrides applied). */
  weight: number;
  /** serving, spare-serving, spare-standby, draining, down, unresolved. */
  status: string;
  /** The check's state: up, down, unknown; null without a check. */
  health: string | null;
  activeFlows: number;
}

/** Every value sluice_backend_status can carry, so a status that ends shows 0, not a gap. */
export const BACKEND_STATUSES = ['serving', 'spare-serving', 'spare-standby', 'draining', 'down', 'unresolved'] as const;

/** sluice_backend_health: 1 up, 0 down, -1 not checked (no check, or no verdict yet). */
export function healthValue(health: string | null): number {
  if (health === 'up') return 1;
  if (health === 'down') return 0;
  return -1;
}

/** Whether a backend in this status takes new flows. */
export function takesNewFlows(status: string): boolean {
  return status === 'serving' || status === 'spare-serving';
}

export class Metrics {
  readonly registry = new Registry();
  #snapshot: Float64Array = new Float64Array(0);
  #workers: Float64Array = new Float64Array(0);
  #labels: LabelMaps = { services: new Map(), backends: new Map() };
  readonly reloads: Counter<'result'>;
  readonly configGeneration: Gauge;
  readonly dataplaneUp: Gauge;
  readonly dataplaneRestarts: Counter;
  readonly neighbourUnresolved: Gauge;
  readonly healthTransitions: Counter<'service' | 'backend' | 'to'>;
  readonly ownerQueryLatency: Histogram;
  #cluster: ControlPlane | null = null;
  #backendRows: readonly BackendGaugeRow[] = [];

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'sluice_control_' });
    const snap = (): Float64Array => this.#snapshot;
    const at = (i: number): number => (i < snap().length ? snap()[i] : 0);
    const labels = (): LabelMaps => this.#labels;

    const perService = (name: string, help: string, which: EntityCounter): void => {
      new Counter({
        name,
        help,
        labelNames: ['service'],
        registers,
        collect() {
          this.reset();
          for (const [id, svc] of labels().services) this.inc({ service: svc }, at(serviceCounter(id, which)));
        },
      });
    };
    const perBackend = (name: string, help: string, which: EntityCounter): void => {
      new Counter({
        name,
        help,
        labelNames: ['service', 'backend'],
        registers,
        collect() {
          this.reset();
          for (const [id, b] of labels().backends) {
            this.inc({ service: b.service, backend: b.address }, at(backendCounter(id, which)));
          }
        },
      });
    };
    // Per worker (dataplane.workers): what each did, and the CPU its thread used.
    const workers = (): Float64Array => this.#workers;
    const perWorker = (name: string, help: string, which: number, kind: 'counter' | 'gauge'): void => {
      const each = (fn: (worker: string, v: number) => void): void => {
        const f = workers();
        for (let w = 0; (w + 1) * WORKER_FIGURES <= f.length; w++) fn(String(w), f[w * WORKER_FIGURES + which]);
      };
      if (kind === 'counter') {
        new Counter({ name, help, labelNames: ['worker'], registers, collect() { this.reset(); each((worker, v) => this.inc({ worker }, v)); } });
      } else {
        new Gauge({ name, help, labelNames: ['worker'], registers, collect() { this.reset(); each((worker, v) => this.set({ worker }, v)); } });
      }
    };
    perWorker('sluice_worker_rx_frames_total', 'Frames handed to each packet worker by its capture socket (the fanout group splits the interface by flow).', WORKER_FIGURE.rxFrames, 'counter');
    perWorker('sluice_worker_tx_frames_total', 'Frames each packet worker transmitted.', WORKER_FIGURE.txFrames, 'counter');
    perWorker('sluice_worker_dropped_packets_total', 'Frames each packet worker did not forward, all reasons.', WORKER_FIGURE.drops, 'counter');
    perWorker('sluice_worker_flows_active', 'Flows tracked now in each packet worker\'s own flow table.', WORKER_FIGURE.flows, 'gauge');
    perWorker('sluice_worker_restarts_total', 'Times each packet worker thread died and was started again on its own flow table (dataplane.workers > 1).', WORKER_FIGURE.restarts, 'counter');
    perWorker('sluice_worker_capture_dropped_total', 'Frames dropped because a packet worker\'s ring was full.', WORKER_FIGURE.captureDropped, 'counter');
    new Counter({
      name: 'sluice_worker_cpu_seconds_total',
      help: 'CPU time of each packet worker\'s thread.',
      labelNames: ['worker', 'mode'],
      registers,
      collect() {
        this.reset();
        const f = workers();
        for (let w = 0; (w + 1) * WORKER_FIGURES <= f.length; w++) {
          this.inc({ worker: String(w), mode: 'user' }, f[w * WORKER_FIGURES + WORKER_FIGURE.cpuUserUs] / 1e6);
          this.inc({ worker: String(w), mode: 'system' }, f[w * WORKER_FIGURES + WORKER_FIGURE.cpuSystemUs] / 1e6);
        }
      },
    });
    const global = (name: string, help: string, index: number, kind: 'counter' | 'gauge'): void => {
      if (kind === 'counter') {
        new Counter({ name, help, registers, collect() { this.reset(); this.inc(at(index)); } });
      } else {
        new Gauge({ name, help, registers, collect() { this.set(at(index)); } });
      }
    };

    perService('sluice_service_packets_total', 'Packets forwarded per service.', ENTITY.packets);
    perService('sluice_service_bytes_total', 'Bytes forwarded per service (frame bytes as received).', ENTITY.bytes);
    perService('sluice_service_flows_created_total', 'New flows assigned per service.', ENTITY.flowsCreated);
    perBackend('sluice_backend_packets_total', 'Packets forwarded per backend.', ENTITY.packets);
    perBackend('sluice_backend_bytes_total', 'Bytes forwarded per backend (frame bytes as received).', ENTITY.bytes);
    perBackend('sluice_backend_flows_created_total', 'New flows assigned per backend.', ENTITY.flowsCreated);
    new Counter({
      name: 'sluice_dropped_packets_total',
      help: 'Frames not forwarded, by reason.',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        for (let r = 1; r < DROP_REASONS.length; r++) this.inc({ reason: DROP_REASONS[r] }, at(DROPS_BASE + r));
      },
    });
    global('sluice_rx_frames_total', 'Frames handed to the forwarder by the capture engine.', G.rxFrames, 'counter');
    global('sluice_rx_bytes_total', 'Bytes handed to the forwarder.', G.rxBytes, 'counter');
    global('sluice_tx_frames_total', 'Frames transmitted.', G.txFrames, 'counter');
    global('sluice_tx_bytes_total', 'Bytes transmitted (after rewrite or encapsulation).', G.txBytes, 'counter');
    global('sluice_tx_errors_total', 'Frames the kernel refused to transmit.', G.txErrors, 'counter');
    global('sluice_flows_created_total', 'Flows created.', G.flowsCreated, 'counter');
    global('sluice_flows_active', 'Flows tracked now.', G.flowsActive, 'gauge');
    global('sluice_flow_table_capacity', 'Flow table capacity (entries).', G.flowCapacity, 'gauge');
    global('sluice_flow_table_evictions_total', 'Live flows evicted to make room, all kinds (see sluice_flow_table_evictions_by_kind_total).', G.flowEvictions, 'counter');
    global('sluice_flow_table_half_open', 'Half-open TCP flows tracked now (only SYNs seen).', G.flowsHalfOpen, 'gauge');
    new Counter({
      name: 'sluice_flow_table_evictions_by_kind_total',
      help: 'Live flows evicted to make room, by the kind of the evicted entry.',
      labelNames: ['kind'],
      registers,
      collect() {
        this.reset();
        this.inc({ kind: 'half-open' }, at(G.flowEvictionsHalfOpen));
        this.inc({ kind: 'established' }, at(G.flowEvictionsEstablished));
        this.inc({ kind: 'closing' }, at(G.flowEvictionsClosing));
        this.inc({ kind: 'other' }, at(G.flowEvictionsOther));
      },
    });
    global('sluice_flows_untracked_total', 'New flows forwarded without an entry: half-open past their share, or no room that could be taken.', G.flowsUntracked, 'counter');
    global('sluice_flow_table_expirations_total', 'Flows expired after their idle timeout.', G.flowExpirations, 'counter');
    global('sluice_flows_remapped_total', 'Flows whose backend left the config and that moved to the current table.', G.flowsRemapped, 'counter');
    global('sluice_capture_received_total', 'Frames the capture handle received (libpcap ps_recv).', G.captureReceived, 'counter');
    global('sluice_capture_dropped_total', 'Frames dropped because the capture buffer was full (libpcap ps_drop).', G.captureDropped, 'counter');
    global('sluice_capture_if_dropped_total', 'Frames dropped by the interface or driver (libpcap ps_ifdrop).', G.captureIfDropped, 'counter');
    global('sluice_capture_batches_total', 'Batches handed to JavaScript by the capture engine.', G.batches, 'counter');
    global('sluice_checksums_completed_total', 'Frames whose partial TCP/UDP checksum (marked by the kernel) the ring engine completed.', G.csumCompleted, 'counter');
    global('sluice_gso_frames_total', 'GSO super-frames the ring engine cut into segments.', G.gsoFrames, 'counter');
    global('sluice_gso_segments_total', 'Segments cut from GSO super-frames.', G.gsoSegments, 'counter');
    global('sluice_capture_frames_in_place_total', 'Frames the ring engine read in place in the kernel\'s ring, without a copy (TPACKET_V2; a TPACKET_V3 super-frame in its block).', G.rxInPlace, 'counter');
    global('sluice_capture_frames_copied_total', 'Frames the ring engine copied out of the ring first (a restored VLAN tag, a frame too big for its ring frame, TPACKET_V3 frames that fit a slot).', G.rxCopied, 'counter');
    global('sluice_vlan_tags_restored_total', 'Frames whose VLAN tag the kernel stripped before capture and the ring engine put back for the forwarder.', G.vlanRestored, 'counter');
    global('sluice_fragment_datagrams_total', 'Fragmented datagrams whose first fragment was steered and recorded in the fragment table.', G.fragDatagrams, 'counter');
    global('sluice_fragments_matched_total', 'Later fragments that found their datagram and followed its first fragment.', G.fragMatched, 'counter');
    global('sluice_fragments_held_total', 'Fragments that arrived before their first fragment and were held.', G.fragHeld, 'counter');
    global('sluice_fragments_released_total', 'Held fragments released behind their first fragment.', G.fragReleased, 'counter');
    global('sluice_fragments_expired_total', 'Held fragments whose first fragment never came within fragments.holdMs (also dropped as fragment_unmatched).', G.fragExpired, 'counter');
    global('sluice_fragment_table_overflows_total', 'First fragments refused because the fragment table had no free entry (also dropped as fragment_table_full).', G.fragOverflow, 'counter');
    global('sluice_fragment_table_entries', 'Datagrams in the fragment table (upper bound; expired entries are freed lazily).', G.fragTableEntries, 'gauge');
    global('sluice_vlan_tags_stripped_total', 'Forwarded frames that arrived tagged and left without their own tags (vlan.egress untagged or a VLAN id; ipip always).', G.vlanStripped, 'counter');
    global('sluice_vlan_tags_written_total', 'Forwarded frames sent with the vlan.egress tag.', G.vlanTagged, 'counter');
    global('sluice_encap_split_packets_total', 'ipip: IPv4 packets without DF too big for the egress MTU once encapsulated, sent as outer fragments (the backend reassembles).', G.encapSplitPackets, 'counter');
    global('sluice_encap_fragments_total', 'ipip: outer fragments sent for packets split to fit the egress MTU.', G.encapFragments, 'counter');
    global('sluice_fragment_owner_published_total', 'Fragmented datagrams whose first fragment was published to the datagram key\'s owners (cluster with sync).', G.fragOwnerPublished, 'counter');
    global('sluice_fragment_owner_queries_total', 'Fragmented datagrams whose later fragments came here without their first fragment: their owners were asked.', G.fragOwnerQueries, 'counter');
    global('sluice_fragment_owner_hits_total', 'Fragment owner queries answered with a backend: the held fragments followed the datagram.', G.fragOwnerHits, 'counter');
    global('sluice_fragment_owner_misses_total', 'Fragment owner queries answered "not known" or not in time: the held fragments wait out their hold.', G.fragOwnerMisses, 'counter');
    global('sluice_checksum_unverifiable_total', 'Frames passed on by an engine that cannot see the kernel checksum status (batch, cap).', G.csumUnverifiable, 'counter');
    global('sluice_dataplane_generation', 'Table generation the data plane is forwarding with.', G.generation, 'gauge');
    global('sluice_dataplane_resident_memory_bytes', 'Resident memory of the data-plane process.', G.dataplaneRssBytes, 'gauge');
    new Counter({
      name: 'sluice_dataplane_cpu_seconds_total',
      help: 'CPU time of the data-plane process.',
      labelNames: ['mode'],
      registers,
      collect() {
        this.reset();
        this.inc({ mode: 'user' }, at(G.dataplaneCpuUserUs) / 1e6);
        this.inc({ mode: 'system' }, at(G.dataplaneCpuSystemUs) / 1e6);
      },
    });
    global('sluice_mptcp_connections_learned_v0_total', 'MPTCP v0 connections whose token was learned.', G.mptcpLearnedV0, 'counter');
    global('sluice_mptcp_connections_learned_v1_total', 'MPTCP v1 connections whose token was learned.', G.mptcpLearnedV1, 'counter');
    global('sluice_mptcp_tokens_active', 'MPTCP tokens tracked now.', G.mptcpTokensActive, 'gauge');
    global('sluice_mptcp_joins_steered_total', 'MP_JOIN SYNs steered to the backend of their connection.', G.mptcpJoinsSteered, 'counter');
    global('sluice_mptcp_joins_unknown_token_total', 'MP_JOIN SYNs whose token was unknown.', G.mptcpJoinsUnknown, 'counter');
    global('sluice_mptcp_token_collisions_total', 'Tokens learned for a different backend than the owner on record (first owner kept).', G.mptcpCollisions, 'counter');
    global('sluice_mptcp_token_evictions_total', 'MPTCP token entries evicted because the table was full.', G.mptcpEvictions, 'counter');
    global('sluice_affinity_entries', 'Client-affinity entries (service, client prefix -> backend) held now.', G.affinityEntries, 'gauge');
    global('sluice_mptcp_malformed_options_total', 'Packets with a malformed MPTCP option (forwarded as plain TCP).', G.mptcpMalformed, 'counter');
    new Counter({
      name: 'sluice_icmp_messages_total',
      help: 'ICMP and ICMPv6 to a VIP by type and action: errors routed to their flow\'s backend, echo requests answered/forwarded/dropped, and Sluice\'s own "too big" replies for ipip (sent or held back by the rate limit).',
      labelNames: ['type', 'action'],
      registers,
      collect() {
        this.reset();
        this.inc({ type: 'dest_unreachable', action: 'forwarded' }, at(G.icmpUnreachForwarded));
        this.inc({ type: 'too_big', action: 'forwarded' }, at(G.icmpTooBigForwarded));
        this.inc({ type: 'time_exceeded', action: 'forwarded' }, at(G.icmpTimeExceededForwarded));
        this.inc({ type: 'echo', action: 'replied' }, at(G.icmpEchoReplied));
        this.inc({ type: 'echo', action: 'forwarded' }, at(G.icmpEchoForwarded));
        this.inc({ type: 'echo', action: 'dropped' }, at(G.icmpEchoDropped));
        this.inc({ type: 'too_big', action: 'sent' }, at(G.icmpTooBigSent));
        this.inc({ type: 'too_big', action: 'rate_limited' }, at(G.icmpTooBigRateLimited));
      },
    });

    this.reloads = new Counter({ name: 'sluice_config_reloads_total', help: 'Config reloads by result.', labelNames: ['result'], registers });
    this.reloads.inc({ result: 'ok' }, 0);
    this.reloads.inc({ result: 'failed' }, 0);
    this.configGeneration = new Gauge({ name: 'sluice_config_generation', help: 'Generation of the config in force (starts at 1, +1 per applied reload).', registers });
    this.dataplaneUp = new Gauge({ name: 'sluice_dataplane_up', help: '1 while the data-plane process is running and answering.', registers });
    this.dataplaneRestarts = new Counter({ name: 'sluice_dataplane_restarts_total', help: 'Times the data-plane process was restarted after it died.', registers });
    global('sluice_owner_queries_total', 'Owner queries the data plane asked (a mid-connection TCP packet or MP_JOIN with no local state, or UDP with none while a table change is recent).', G.ownerQueries, 'counter');
    global('sluice_owner_query_hits_total', 'Owner queries answered with a backend.', G.ownerHits, 'counter');
    global('sluice_owner_query_misses_total', 'Owner queries with no answer (the current table decided).', G.ownerMisses, 'counter');
    global('sluice_owner_query_timeouts_total', 'Owner queries the data plane stopped waiting for.', G.ownerQueryTimeouts, 'counter');
    global('sluice_owner_queries_udp_total', 'Owner queries asked for a UDP packet with no local flow while a table change was recent in the cluster (0 in steady state).', G.ownerQueriesUdp, 'counter');
    global('sluice_owner_query_unanswered_total', 'Flow queries no owner answered in time (control budget or data-plane deadline): their packets took the table\'s pick.', G.ownerUnanswered, 'counter');
    global('sluice_owner_query_retried_total', 'Flow queries unanswered while a table change was recent that were asked once more, their packets still held (once per flow; a hold of at most 100 ms).', G.ownerRetried, 'counter');
    global('sluice_owner_late_answers_total', 'Owner answers naming a backend that reached the data plane after it had stopped waiting (the owner knew, too late).', G.ownerLateAnswers, 'counter');
    global('sluice_owner_queries_over_budget_total', 'Packets that would have asked their owner but found the per-second query budget spent: they took the table\'s pick.', G.ownerQueriesOverBudget, 'counter');
    global('sluice_owner_held_packets_total', 'Packets held while their flow\'s owner was asked.', G.heldPackets, 'counter');
    global('sluice_owner_entries_published_total', 'Flow and token entries handed to the control plane for their owners.', G.flowsPublished, 'counter');
    this.ownerQueryLatency = new Histogram({
      name: 'sluice_owner_query_seconds',
      help: 'Owner query round trip seen by the control process (answer or timeout).',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05],
      registers,
    });
    const cluster = (): ControlPlane | null => this.#cluster;
    new Gauge({
      name: 'sluice_cluster_peer_up',
      help: '1 while a peer sends valid heartbeats.',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const p of cluster()?.status().peers ?? []) this.set({ peer: p.id }, p.up ? 1 : 0);
      },
    });
    new Gauge({
      name: 'sluice_cluster_generation_mismatch',
      help: '1 while an up peer reports a different backend set than this instance.',
      labelNames: ['peer'],
      registers,
      collect() {
        this.reset();
        for (const p of cluster()?.status().peers ?? []) this.set({ peer: p.id }, p.up && p.generationMismatch ? 1 : 0);
      },
    });
    new Counter({
      name: 'sluice_cluster_messages_total',
      help: 'Control messages by direction and type.',
      labelNames: ['direction', 'type'],
      registers,
      collect() {
        this.reset();
        const c = cluster()?.counters;
        if (!c) return;
        for (const [type, n] of Object.entries(c.messagesIn)) this.inc({ direction: 'in', type }, n);
        for (const [type, n] of Object.entries(c.messagesOut)) this.inc({ direction: 'out', type }, n);
      },
    });
    new Counter({
      name: 'sluice_cluster_messages_rejected_total',
      help: 'Control messages rejected (forged, replayed, truncated, oversized, ...), by reason.',
      labelNames: ['reason'],
      registers,
      collect() {
        this.reset();
        const c = cluster()?.counters;
        if (!c) return;
        for (const [reason, n] of Object.entries(c.rejected)) this.inc({ reason }, n);
      },
    });
    /** A control-plane counter by result, read from the cluster's counters at scrape time. */
    const byResult = (name: string, help: string, results: (c: ControlCounters) => [string, number][]): void => {
      new Counter({
        name,
        help,
        labelNames: ['result'],
        registers,
        collect() {
          this.reset();
          const c = cluster()?.counters;
          if (!c) return;
          for (const [result, n] of results(c)) this.inc({ result }, n);
        },
      });
    };
    byResult('sluice_cluster_queries_total', 'Owner queries handled by the control plane, by result.', (c) => [
      ['local_hit', c.localHits],
      ['hit', c.hits],
      ['miss', c.misses - c.settledMisses],
      ['settled_miss', c.settledMisses],
      ['timeout', c.timeouts],
      ['overflow', c.queryOverflow],
      ['failed', c.queryFailed],
    ]);
    new Counter({
      name: 'sluice_cluster_query_late_found_total',
      help: 'Owner queries that timed out although an owner held an entry: its FOUND answer arrived after the timeout.',
      registers,
      collect() {
        this.reset();
        this.inc(cluster()?.counters.lateFound ?? 0);
      },
    });
    byResult(
      'sluice_cluster_queries_awaited_total',
      'Owner queries for an MPTCP token not held here yet, held for its PUBLISH, by result: a peer\'s QUERY answered when the PUBLISH arrived (found), when the wait ended (expired), or at once because too many were held (overflow); this instance\'s own query answered by the PUBLISH reaching it (local_found).',
      (c) => [
        ['found', c.awaitedFound],
        ['expired', c.awaitedExpired],
        ['overflow', c.awaitOverflow],
        ['local_found', c.awaitedSelfFound],
      ],
    );
    new Counter({
      name: 'sluice_cluster_query_resends_total',
      help: 'QUERY datagrams sent again to owners still silent at cluster.queryTimeoutMs.',
      registers,
      collect() {
        this.reset();
        this.inc(cluster()?.counters.queryResends ?? 0);
      },
    });
    new Gauge({
      name: 'sluice_cluster_entries_owned',
      help: 'Flow and token entries this instance holds as owner or replica.',
      registers,
      collect() {
        this.set(cluster()?.counters.entriesOwned ?? 0);
      },
    });
    new Counter({
      name: 'sluice_cluster_queue_drops_total',
      help: 'Control messages dropped because a peer queue was full.',
      registers,
      collect() {
        this.reset();
        this.inc(cluster()?.counters.queueDrops ?? 0);
      },
    });
    this.healthTransitions = new Counter({
      name: 'sluice_health_transitions_total',
      help: 'Backend health state changes, by service, backend and the state entered.',
      labelNames: ['service', 'backend', 'to'],
      registers,
    });
    const rows = (): readonly BackendGaugeRow[] => this.#backendRows;
    const perBackendGauge = (name: string, help: string, value: (r: BackendGaugeRow) => number): void => {
      new Gauge({
        name,
        help,
        labelNames: ['service', 'backend'],
        registers,
        collect() {
          this.reset();
          for (const r of rows()) this.set({ service: r.service, backend: r.backend }, value(r));
        },
      });
    };
    perBackendGauge('sluice_backend_up', '1 while the backend takes new flows (serving or spare-serving), 0 otherwise.', (r) => (takesNewFlows(r.status) ? 1 : 0));
    perBackendGauge('sluice_backend_weight', 'Effective weight of the backend (operator overrides applied).', (r) => r.weight);
    perBackendGauge('sluice_backend_active_flows', 'Flows the data plane tracks for the backend now.', (r) => r.activeFlows);
    perBackendGauge('sluice_backend_health', 'Health check verdict: 1 up, 0 down, -1 not checked or no verdict yet.', (r) => healthValue(r.health));
    new Gauge({
      name: 'sluice_backend_status',
      help: 'What the current generation does with the backend: 1 for its status, 0 for the others.',
      labelNames: ['service', 'backend', 'status'],
      registers,
      collect() {
        this.reset();
        for (const r of rows()) for (const st of BACKEND_STATUSES) this.set({ service: r.service, backend: r.backend, status: st }, r.status === st ? 1 : 0);
      },
    });
    new Gauge({
      name: 'sluice_build_info',
      help: 'Always 1; the labels tell the version, the commit it was built from and the Node.js version.',
      labelNames: ['version', 'commit', 'node'],
      registers,
      collect() {
        this.reset();
        this.set({ version: BUILD_INFO.version, commit: BUILD_INFO.commit, node: process.versions.node }, 1);
      },
    });
    this.neighbourUnresolved = new Gauge({ name: 'sluice_backends_unresolved', help: 'Backends whose next-hop MAC is unknown (they take no new flows).', registers });
  }

  /** The data plane's counters, and its workers' own figures (absent from a data plane of an older build). */
  setSnapshot(s: Float64Array, workers?: Float64Array): void {
    this.#snapshot = s;
    if (workers) this.#workers = workers;
  }

  /** Per-worker figures of the latest snapshot (WORKER_FIGURES per worker). */
  get workers(): Float64Array {
    return this.#workers;
  }

  get snapshot(): Float64Array {
    return this.#snapshot;
  }

  setCluster(cp: ControlPlane | null): void {
    this.#cluster = cp;
  }

  /** The per-backend gauges' rows (the metrics route sets them before each scrape). */
  setBackendRows(r: readonly BackendGaugeRow[]): void {
    this.#backendRows = r;
  }

  setLabels(l: LabelMaps): void {
    this.#labels = l;
  }
}
