/**
 * One UDP socket per instance (udp4 or udp6 by the listen address) carrying authenticated
 * control messages to and from the configured peers.
 *
 * Sending: each peer has a bounded pool of datagram buffers (queueCapacity, allocated on
 * demand). Two kinds of traffic share it:
 *   - priority messages (HEARTBEAT, QUERY, ANSWER) are sealed into a free buffer and sent at
 *     once; with no free buffer the message is dropped and counted (queueDrops);
 *   - bulk PUBLISH datagrams are pulled from a BulkSource only when a buffer is free, at most
 *     burstPerTurn per peer per event-loop turn, so a 100k-entry publish neither starves
 *     heartbeats and queries nor overruns a receiver that shares the host.
 * A buffer returns to its pool when the socket's send callback fires.
 *
 * Receiving: decodeDatagram (codec.ts) authenticates and replay-checks; rejects are counted per
 * reason; accepted messages go to onMessage with the sender's configured id. Replies go to the
 * configured address of the sender, never to the datagram's source address.
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { MessageAuthenticator, ReplayGuard } from './auth.js';
import {
  HEADER_BYTES,
  MAX_BODY_BYTES,
  MAX_DATAGRAM_BYTES,
  MESSAGE_TYPES,
  REJECT_REASONS,
  decodeDatagram,
  sealDatagram,
  senderHash,
  type ControlMessage,
  type DecodeContext,
  type MessageTypeName,
  type RejectReason,
} from './codec.js';

export const DEFAULT_QUEUE_CAPACITY = 1024;
export const DEFAULT_BURST_PER_TURN = 64;
export const DEFAULT_RECV_BUFFER_BYTES = 4 << 20;

export interface TransportPeer {
  id: string;
  host: string;
  port: number;
}

/** Writes a body at out[off, off + max) and returns its length. */
export type BodyWriter = (out: Buffer, off: number, max: number) => number;
/** Writes the next PUBLISH body for a peer into out[off, off + max); returns 0 when it has none. */
export type BulkSource = (peerId: string, out: Buffer, off: number, max: number) => number;

export interface TransportOptions {
  instanceId: string;
  listenHost: string;
  listenPort: number;
  /** Peers, without this instance. */
  peers: readonly TransportPeer[];
  key: Uint8Array;
  /** Wall clock, ms since the epoch (timestamps and the skew check). Default Date.now. */
  wallClock?: () => number;
  /** Random per process start unless given (tests). */
  incarnation?: bigint;
  replayWindow?: number;
  clockSkewMs?: number;
  queueCapacity?: number;
  burstPerTurn?: number;
  recvBufferBytes?: number;
  onMessage: (peerId: string, message: ControlMessage) => void;
  /** Socket errors after start (they are counted too). */
  onError?: (err: Error) => void;
}

export interface TransportCounters {
  messagesIn: Record<MessageTypeName, number>;
  messagesOut: Record<MessageTypeName, number>;
  rejected: Record<RejectReason, number>;
  bytesIn: number;
  bytesOut: number;
  /** Priority messages dropped because the peer's buffers were all in use. */
  queueDrops: number;
  sendErrors: number;
  /** Exceptions thrown by onMessage (a bug; the datagram is lost, the socket lives on). */
  handlerErrors: number;
}

export interface PeerQueueStatus {
  id: string;
  inFlight: number;
  queueDrops: number;
  bulkPending: boolean;
}

function zeroRecord<K extends string>(keys: readonly K[]): Record<K, number> {
  const r = {} as Record<K, number>;
  for (const k of keys) r[k] = 0;
  return r;
}

class PeerQueue {
  readonly free: Buffer[] = [];
  allocated = 0;
  drops = 0;
  bulkWanted = false;
  sentThisTurn = 0;
  constructor(
    readonly id: string,
    readonly host: string,
    readonly port: number,
    readonly sender: number,
  ) {}
  get inFlight(): number {
    return this.allocated - this.free.length;
  }
}

export class Transport {
  readonly instanceId: string;
  readonly incarnation: bigint;
  readonly counters: TransportCounters = {
    messagesIn: zeroRecord(MESSAGE_TYPES),
    messagesOut: zeroRecord(MESSAGE_TYPES),
    rejected: zeroRecord(REJECT_REASONS),
    bytesIn: 0,
    bytesOut: 0,
    queueDrops: 0,
    sendErrors: 0,
    handlerErrors: 0,
  };
  readonly #opts: TransportOptions;
  readonly #self: number;
  readonly #auth: MessageAuthenticator;
  readonly #replay: ReplayGuard;
  readonly #wall: () => number;
  readonly #peers = new Map<string, PeerQueue>();
  readonly #bySender = new Map<number, PeerQueue>();
  readonly #capacity: number;
  readonly #burst: number;
  readonly #ctx: DecodeContext;
  #socket: dgram.Socket | undefined;
  #sequence = 0;
  #bulk: BulkSource | undefined;
  #pumpScheduled = false;
  #stopped = false;

  constructor(opts: TransportOptions) {
    this.#opts = opts;
    this.instanceId = opts.instanceId;
    this.#self = senderHash(opts.instanceId);
    this.#auth = new MessageAuthenticator(opts.key);
    this.#replay = new ReplayGuard({ windowSize: opts.replayWindow, skewMs: opts.clockSkewMs });
    this.#wall = opts.wallClock ?? Date.now;
    this.incarnation = opts.incarnation ?? randomBytes(8).readBigUInt64BE(0);
    this.#capacity = opts.queueCapacity ?? DEFAULT_QUEUE_CAPACITY;
    this.#burst = opts.burstPerTurn ?? DEFAULT_BURST_PER_TURN;
    if (!Number.isInteger(this.#capacity) || this.#capacity < 1) throw new RangeError(`queueCapacity ${this.#capacity}: must be >= 1`);
    if (!Number.isInteger(this.#burst) || this.#burst < 1) throw new RangeError(`burstPerTurn ${this.#burst}: must be >= 1`);
    for (const p of opts.peers) {
      if (p.id === opts.instanceId) continue;
      const q = new PeerQueue(p.id, p.host, p.port, senderHash(p.id));
      this.#peers.set(p.id, q);
      this.#bySender.set(q.sender, q);
    }
    const bySender = this.#bySender;
    const self = this.#self;
    this.#ctx = {
      auth: this.#auth,
      replay: this.#replay,
      isKnownSender: (s) => s !== self && bySender.has(s),
      nowMs: 0,
    };
  }

  /** Bind the socket. Rejects if the address cannot be bound. */
  async start(): Promise<void> {
    if (this.#socket !== undefined) return;
    this.#stopped = false;
    const type = this.#opts.listenHost.includes(':') ? 'udp6' : 'udp4';
    const socket = dgram.createSocket({ type, ipv6Only: type === 'udp6' });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => {
        socket.close();
        reject(new Error(`control plane: cannot listen on ${this.#opts.listenHost}:${this.#opts.listenPort}: ${err.message}`));
      };
      socket.once('error', onError);
      socket.bind(this.#opts.listenPort, this.#opts.listenHost, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    try {
      socket.setRecvBufferSize(this.#opts.recvBufferBytes ?? DEFAULT_RECV_BUFFER_BYTES); // the kernel caps it at rmem_max
    } catch {
      // Not fatal: the default buffer works, bursts just drop sooner (and are counted by the kernel).
    }
    socket.on('message', (msg) => this.receive(msg));
    socket.on('error', (err) => {
      this.counters.sendErrors++;
      this.#opts.onError?.(err);
    });
    this.#socket = socket;
    // Bulk asked for before the socket existed (a publish before start) starts flowing now.
    for (const q of this.#peers.values()) if (q.bulkWanted) this.#schedulePump();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    const s = this.#socket;
    this.#socket = undefined;
    if (s !== undefined) await new Promise<void>((resolve) => s.close(() => resolve()));
  }

  /** The bound address (useful with port 0). */
  address(): { address: string; port: number } {
    if (this.#socket === undefined) throw new Error('control transport is not started');
    const a = this.#socket.address();
    return { address: a.address, port: a.port };
  }

  peerIds(): string[] {
    return [...this.#peers.keys()];
  }

  /** The id of the configured peer whose sender hash this is, if any. */
  peerOfSender(sender: number): string | undefined {
    return this.#bySender.get(sender)?.id;
  }

  /** The incarnation of a peer as last authenticated. */
  peerIncarnation(peerId: string): bigint | undefined {
    const q = this.#peers.get(peerId);
    return q === undefined ? undefined : this.#replay.incarnationOf(q.sender);
  }

  /**
   * Seal and send one priority message to a peer now. False if the peer is unknown, the
   * transport is stopped, or the peer has no free buffer (dropped and counted).
   */
  send(peerId: string, type: MessageTypeName, writeBody: BodyWriter): boolean {
    const q = this.#peers.get(peerId);
    if (q === undefined || this.#socket === undefined) return false;
    const buf = this.#take(q);
    if (buf === undefined) {
      q.drops++;
      this.counters.queueDrops++;
      return false;
    }
    const bodyLen = writeBody(buf, HEADER_BYTES, MAX_BODY_BYTES);
    this.#transmit(q, buf, type, bodyLen);
    return true;
  }

  /** Where PUBLISH datagrams come from. */
  setBulkSource(source: BulkSource | undefined): void {
    this.#bulk = source;
  }

  /** The bulk source has datagrams for this peer: pull them as buffers allow. */
  kick(peerId: string): void {
    const q = this.#peers.get(peerId);
    if (q === undefined) return;
    q.bulkWanted = true;
    this.#schedulePump();
  }

  /**
   * Handle one received datagram (the socket calls this; tests may too). Returns the reject
   * reason, or undefined if the message was accepted and handed to onMessage.
   */
  receive(data: Uint8Array): RejectReason | undefined {
    this.counters.bytesIn += data.length;
    this.#ctx.nowMs = this.#wall();
    const r = decodeDatagram(data, this.#ctx);
    if (!r.ok) {
      this.counters.rejected[r.reason]++;
      return r.reason;
    }
    const m = r.message;
    this.counters.messagesIn[m.type]++;
    const peer = this.#bySender.get(m.header.sender);
    if (peer === undefined) return undefined; // unreachable: the decoder checked the sender
    try {
      this.#opts.onMessage(peer.id, m);
    } catch {
      this.counters.handlerErrors++;
    }
    return undefined;
  }

  peerQueues(): PeerQueueStatus[] {
    return [...this.#peers.values()].map((q) => ({ id: q.id, inFlight: q.inFlight, queueDrops: q.drops, bulkPending: q.bulkWanted }));
  }

  #take(q: PeerQueue): Buffer | undefined {
    const b = q.free.pop();
    if (b !== undefined) return b;
    if (q.allocated >= this.#capacity) return undefined;
    q.allocated++;
    return Buffer.allocUnsafe(MAX_DATAGRAM_BYTES);
  }

  #transmit(q: PeerQueue, buf: Buffer, type: MessageTypeName, bodyLen: number): void {
    const socket = this.#socket;
    if (socket === undefined) {
      q.free.push(buf);
      return;
    }
    const len = sealDatagram(buf, bodyLen, { type, sender: this.#self, incarnation: this.incarnation, sequence: ++this.#sequence, timestampMs: this.#wall() }, this.#auth);
    this.counters.messagesOut[type]++;
    this.counters.bytesOut += len;
    socket.send(buf, 0, len, q.port, q.host, (err) => {
      q.free.push(buf);
      if (err) this.counters.sendErrors++;
      if (q.bulkWanted) this.#schedulePump();
    });
  }

  #schedulePump(): void {
    if (this.#pumpScheduled || this.#stopped) return;
    this.#pumpScheduled = true;
    setImmediate(() => {
      this.#pumpScheduled = false;
      this.#pump();
    });
  }

  /** Pull up to burstPerTurn PUBLISH datagrams per peer that wants them and has buffers. */
  #pump(): void {
    const src = this.#bulk;
    if (src === undefined || this.#socket === undefined) return;
    let more = false;
    for (const q of this.#peers.values()) {
      if (!q.bulkWanted) continue;
      let sent = 0;
      while (sent < this.#burst) {
        const buf = this.#take(q);
        if (buf === undefined) break; // a send callback will schedule the pump again
        const bodyLen = src(q.id, buf, HEADER_BYTES, MAX_BODY_BYTES);
        if (bodyLen <= 0) {
          q.free.push(buf);
          q.bulkWanted = false;
          break;
        }
        this.#transmit(q, buf, 'PUBLISH', bodyLen);
        sent++;
      }
      if (q.bulkWanted && sent === this.#burst) more = true;
    }
    if (more) this.#schedulePump();
  }
}
