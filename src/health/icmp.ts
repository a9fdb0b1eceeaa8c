/**
 * ICMP echo for health checks over raw-socket: one raw socket per address family shared by
 * every ICMP probe in the process. Requests carry identifier = pid & 0xffff, a sequence number
 * that keys the pending probe, and an 8-byte token echoed back in the payload, so a reply is
 * matched to exactly one pending probe (stale or foreign replies are ignored).
 *
 * IPv4: the socket reads whole datagrams (IP header first) and we compute the ICMP checksum.
 * IPv6: the socket reads the ICMPv6 message only and the kernel fills in the ICMPv6 checksum
 * (RFC 3542: always on for IPPROTO_ICMPV6 raw sockets), since it needs the pseudo-header.
 *
 * The sockets stop polling while nothing is pending (so they never keep the process alive) and
 * are closed after a minute without probes.
 */
import { createRequire } from 'node:module';
import { isIPv4, isIPv6 } from 'node:net';
import { randomBytes } from 'node:crypto';
import type * as RawSocketModule from 'raw-socket';
import { ipToBytes, formatAddress } from '../packet/address.js';

export const ICMP_ECHO_REPLY = 0;
export const ICMP_DEST_UNREACH = 3;
export const ICMP_ECHO_REQUEST = 8;
export const ICMP_TIME_EXCEEDED = 11;
export const ICMP6_DEST_UNREACH = 1;
export const ICMP6_TIME_EXCEEDED = 3;
export const ICMP6_ECHO_REQUEST = 128;
export const ICMP6_ECHO_REPLY = 129;

export const ECHO_IDENTIFIER = process.pid & 0xffff;
const TOKEN_LEN = 8;
const MAGIC = Buffer.from('sluice-h', 'latin1');
/** ICMP header (8) + token (8) + magic (8). */
export const ECHO_LENGTH = 8 + TOKEN_LEN + MAGIC.length;
const IDLE_CLOSE_MS = 60_000;
const MAX_PENDING = 0x10000;
const SOL_RAW = 255;
const ICMP_FILTER = 1;
const IPPROTO_ICMPV6 = 58;
const ICMP6_FILTER = 1;

/** RFC 1071 Internet checksum of `len` bytes at `off`. */
export function icmpChecksum(buf: Uint8Array, off = 0, len = buf.length - off): number {
  let sum = 0;
  const end = off + len;
  let i = off;
  for (; i + 1 < end; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (i < end) sum += buf[i] << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An echo request. IPv4 gets its checksum here; IPv6 leaves 0 for the kernel to fill. */
export function buildEchoRequest(family: 4 | 6, identifier: number, sequence: number, token: Uint8Array): Buffer {
  const b = Buffer.alloc(ECHO_LENGTH);
  b[0] = family === 4 ? ICMP_ECHO_REQUEST : ICMP6_ECHO_REQUEST;
  b[1] = 0;
  b.writeUInt16BE(identifier & 0xffff, 4);
  b.writeUInt16BE(sequence & 0xffff, 6);
  b.set(token.subarray(0, TOKEN_LEN), 8);
  MAGIC.copy(b, 8 + TOKEN_LEN);
  if (family === 4) b.writeUInt16BE(icmpChecksum(b), 2);
  return b;
}

export type IcmpMatch =
  | { kind: 'reply'; identifier: number; sequence: number; token: Buffer }
  /** An error quoting one of our echo requests; `destination` is the request's destination. */
  | { kind: 'error'; identifier: number; sequence: number; destination: string; error: string };

const UNREACH4: Record<number, string> = { 0: 'network unreachable', 1: 'host unreachable', 2: 'protocol unreachable', 3: 'port unreachable', 4: 'fragmentation needed', 9: 'network prohibited', 10: 'host prohibited', 13: 'administratively prohibited' };
const UNREACH6: Record<number, string> = { 0: 'no route to destination', 1: 'administratively prohibited', 3: 'address unreachable', 4: 'port unreachable', 5: 'source address failed policy', 6: 'reject route' };

/**
 * Decode a datagram read from the raw socket: an echo reply, or an ICMP error quoting an echo
 * request, else null. `msg` starts with the IPv4 header (family 4) or the ICMPv6 header (6).
 * Bounds-checked: a short or malformed message yields null.
 */
export function parseIcmp(family: 4 | 6, msg: Buffer): IcmpMatch | null {
  let icmp = msg;
  if (family === 4) {
    if (msg.length < 20 || msg[0] >> 4 !== 4 || msg[9] !== 1) return null;
    const ihl = (msg[0] & 0x0f) * 4;
    if (ihl < 20 || msg.length < ihl + 8) return null;
    icmp = msg.subarray(ihl);
  }
  if (icmp.length < 8) return null;
  const type = icmp[0];
  const code = icmp[1];
  const replyType = family === 4 ? ICMP_ECHO_REPLY : ICMP6_ECHO_REPLY;
  if (type === replyType) {
    if (icmp.length < ECHO_LENGTH) return null;
    if (!icmp.subarray(8 + TOKEN_LEN, ECHO_LENGTH).equals(MAGIC)) return null;
    return { kind: 'reply', identifier: icmp.readUInt16BE(4), sequence: icmp.readUInt16BE(6), token: Buffer.from(icmp.subarray(8, 8 + TOKEN_LEN)) };
  }
  let error: string;
  if (family === 4 && type === ICMP_DEST_UNREACH) error = `ICMP destination unreachable: ${UNREACH4[code] ?? `code ${code}`}`;
  else if (family === 4 && type === ICMP_TIME_EXCEEDED) error = 'ICMP time exceeded';
  else if (family === 6 && type === ICMP6_DEST_UNREACH) error = `ICMPv6 destination unreachable: ${UNREACH6[code] ?? `code ${code}`}`;
  else if (family === 6 && type === ICMP6_TIME_EXCEEDED) error = 'ICMPv6 time exceeded';
  else return null;
  // The quoted original: its IP header, then at least 8 bytes of our echo request.
  const orig = icmp.subarray(8);
  let inner: Buffer;
  let destination: string;
  if (family === 4) {
    if (orig.length < 20 || orig[0] >> 4 !== 4 || orig[9] !== 1) return null;
    const ihl = (orig[0] & 0x0f) * 4;
    if (ihl < 20 || orig.length < ihl + 8) return null;
    destination = formatAddress(orig, 16, 4);
    inner = orig.subarray(ihl);
  } else {
    // Our requests carry no extension headers, so the next header must be ICMPv6.
    if (orig.length < 48 || orig[0] >> 4 !== 6 || orig[6] !== IPPROTO_ICMPV6) return null;
    destination = formatAddress(orig, 24, 16);
    inner = orig.subarray(40);
  }
  if (inner[0] !== (family === 4 ? ICMP_ECHO_REQUEST : ICMP6_ECHO_REQUEST)) return null;
  return { kind: 'error', identifier: inner.readUInt16BE(4), sequence: inner.readUInt16BE(6), destination, error };
}

/** Called once per echo: null on a matching reply, else why it failed. */
export type EchoCallback = (error: string | null) => void;

type RawSocketApi = typeof RawSocketModule;
type RawSocket = RawSocketModule.Socket;

interface Pending {
  /** Canonical text of the probed address, compared with the reply's source. */
  address: string;
  token: Buffer;
  callback: EchoCallback;
}

interface Channel {
  family: 4 | 6;
  socket: RawSocket | null;
  pending: Map<number, Pending>;
  nextSequence: number;
  idleTimer: NodeJS.Timeout | null;
}

let rawSocketApi: RawSocketApi | null = null;

/** Load the native module on first use, so importing the health code never needs it. */
function loadRawSocket(): RawSocketApi {
  if (!rawSocketApi) rawSocketApi = createRequire(import.meta.url)('raw-socket') as RawSocketApi;
  return rawSocketApi;
}

function canonical(address: string, family: 4 | 6): string {
  return family === 4 ? address : formatAddress(ipToBytes(address), 0, 16);
}

function messageOf(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

export class IcmpEcho {
  readonly #channels: Record<4 | 6, Channel> = {
    4: { family: 4, socket: null, pending: new Map(), nextSequence: 1, idleTimer: null },
    6: { family: 6, socket: null, pending: new Map(), nextSequence: 1, idleTimer: null },
  };
  readonly #tokenPrefix = randomBytes(4);
  #tokenCounter = 0;
  readonly #load: () => RawSocketApi;

  constructor(load: () => RawSocketApi = loadRawSocket) {
    this.#load = load;
  }

  /** Echoes awaiting a reply, both families. */
  get inFlight(): number {
    return this.#channels[4].pending.size + this.#channels[6].pending.size;
  }

  /** Whether the raw socket of `family` is open (for tests and status). */
  isOpen(family: 4 | 6): boolean {
    return this.#channels[family].socket !== null;
  }

  /**
   * Send one echo request to `address`. `callback` runs exactly once unless the returned cancel
   * function runs first (the caller's timeout); it may run synchronously on immediate failure.
   */
  echo(address: string, callback: EchoCallback): () => void {
    const family = isIPv4(address) ? 4 : isIPv6(address) ? 6 : 0;
    if (family === 0) {
      callback(`not an IP address: ${JSON.stringify(address)}`);
      return () => {};
    }
    const ch = this.#channels[family];
    let socket: RawSocket;
    try {
      socket = this.#open(ch);
    } catch (e) {
      callback(`cannot open ${family === 4 ? 'ICMP' : 'ICMPv6'} raw socket: ${messageOf(e)} (needs root or CAP_NET_RAW)`);
      return () => {};
    }
    const sequence = this.#allocateSequence(ch);
    if (sequence < 0) {
      callback(`too many ICMP echoes in flight (${ch.pending.size})`);
      return () => {};
    }
    const token = Buffer.alloc(TOKEN_LEN);
    this.#tokenPrefix.copy(token, 0);
    token.writeUInt32BE(this.#tokenCounter, 4);
    this.#tokenCounter = (this.#tokenCounter + 1) >>> 0;
    const pending: Pending = { address: canonical(address, family), token, callback };
    ch.pending.set(sequence, pending);
    if (ch.idleTimer) {
      clearTimeout(ch.idleTimer);
      ch.idleTimer = null;
    }
    if (socket.recvPaused) socket.resumeRecv();
    const packet = buildEchoRequest(family, ECHO_IDENTIFIER, sequence, token);
    socket.send(packet, 0, packet.length, address, (error) => {
      if (error && ch.pending.get(sequence) === pending) this.#finish(ch, sequence, `send failed: ${error.message}`);
    });
    return () => {
      if (ch.pending.get(sequence) === pending) {
        ch.pending.delete(sequence);
        this.#maybeIdle(ch);
      }
    };
  }

  /** Fail everything pending and close both sockets. */
  close(): void {
    for (const ch of [this.#channels[4], this.#channels[6]]) {
      const socket = ch.socket;
      ch.socket = null;
      if (ch.idleTimer) clearTimeout(ch.idleTimer);
      ch.idleTimer = null;
      this.#failAll(ch, 'ICMP socket closed');
      if (socket) {
        try {
          socket.close();
        } catch {
          // already closed
        }
      }
    }
  }

  #open(ch: Channel): RawSocket {
    if (ch.socket) return ch.socket;
    const raw = this.#load();
    const socket =
      ch.family === 4
        ? raw.createSocket({ addressFamily: raw.AddressFamily.IPv4, protocol: raw.Protocol.ICMP })
        : raw.createSocket({ addressFamily: raw.AddressFamily.IPv6, protocol: raw.Protocol.ICMPv6 });
    this.#installFilter(socket, ch.family);
    socket.on('message', (buffer, source) => this.#onMessage(ch, buffer, source));
    socket.on('error', (error) => {
      // Drop the socket whatever failed (raw-socket closes it only for some errors); the next
      // probe opens a fresh one.
      if (ch.socket === socket) {
        ch.socket = null;
        this.#failAll(ch, `ICMP socket error: ${error.message}`);
      }
      try {
        socket.close();
      } catch {
        // already closed
      }
    });
    socket.on('close', () => {
      if (ch.socket === socket) {
        ch.socket = null;
        this.#failAll(ch, 'ICMP socket closed');
      }
    });
    ch.socket = socket;
    return socket;
  }

  /** Ask the kernel to deliver only echo replies and errors: fewer wakeups on a busy host. */
  #installFilter(socket: RawSocket, family: 4 | 6): void {
    try {
      if (family === 4) {
        const pass = (1 << ICMP_ECHO_REPLY) | (1 << ICMP_DEST_UNREACH) | (1 << ICMP_TIME_EXCEEDED);
        socket.setOption(SOL_RAW, ICMP_FILTER, ~pass >>> 0);
      } else {
        // struct icmp6_filter: 256 bits in host order, a set bit blocks that type.
        const words = new Uint32Array(8).fill(0xffffffff);
        for (const t of [ICMP6_ECHO_REPLY, ICMP6_DEST_UNREACH, ICMP6_TIME_EXCEEDED]) words[t >> 5] &= ~(1 << (t & 31));
        const value = Buffer.from(words.buffer);
        socket.setOption(IPPROTO_ICMPV6, ICMP6_FILTER, value, value.length);
      }
    } catch {
      // Only an optimisation: without it foreign ICMP is read and ignored.
    }
  }

  #allocateSequence(ch: Channel): number {
    if (ch.pending.size >= MAX_PENDING) return -1;
    for (let i = 0; i < MAX_PENDING; i++) {
      const s = ch.nextSequence;
      ch.nextSequence = (ch.nextSequence + 1) & 0xffff;
      if (!ch.pending.has(s)) return s;
    }
    return -1;
  }

  #onMessage(ch: Channel, buffer: Buffer, source: string): void {
    const m = parseIcmp(ch.family, buffer);
    if (!m || m.identifier !== ECHO_IDENTIFIER) return;
    const p = ch.pending.get(m.sequence);
    if (!p) return;
    if (m.kind === 'reply') {
      let from: string;
      try {
        from = canonical(source, ch.family);
      } catch {
        return;
      }
      if (from === p.address && m.token.equals(p.token)) this.#finish(ch, m.sequence, null);
    } else if (canonical(m.destination, ch.family) === p.address) {
      this.#finish(ch, m.sequence, `${m.error} (from ${source})`);
    }
  }

  #finish(ch: Channel, sequence: number, error: string | null): void {
    const p = ch.pending.get(sequence);
    if (!p) return;
    ch.pending.delete(sequence);
    this.#maybeIdle(ch);
    p.callback(error);
  }

  #failAll(ch: Channel, error: string): void {
    const all = [...ch.pending.values()];
    ch.pending.clear();
    this.#maybeIdle(ch);
    for (const p of all) p.callback(error);
  }

  #maybeIdle(ch: Channel): void {
    if (ch.pending.size > 0 || !ch.socket) return;
    const socket = ch.socket;
    if (!socket.recvPaused) socket.pauseRecv();
    if (!ch.idleTimer) {
      ch.idleTimer = setTimeout(() => {
        ch.idleTimer = null;
        if (ch.pending.size === 0 && ch.socket === socket) {
          ch.socket = null;
          socket.close();
        }
      }, IDLE_CLOSE_MS);
      ch.idleTimer.unref();
    }
  }
}

let shared: IcmpEcho | null = null;

/** The process-wide ICMP echo sender every ICMP probe uses. */
export function sharedIcmpEcho(): IcmpEcho {
  if (!shared) shared = new IcmpEcho();
  return shared;
}
