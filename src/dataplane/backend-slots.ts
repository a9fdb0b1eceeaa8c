/**
 * The backends of the generation in force, one named record per backend id: its service, its
 * address, the MAC of its next hop, and whether it takes new flows (serving) or keeps its old
 * ones (not down). Typed arrays sized MAX_BACKENDS underneath, filled once per generation;
 * every accessor is allocation-free and safe for any id a flow, a token or a peer names.
 */
import type { BackendSpec } from './contract/spec.js';
import { MAX_BACKENDS } from './contract/limits.js';

const MAC_BYTES = 6;
const ADDR_STRIDE = 16;

export class BackendSlots {
  /** Service id per backend id; -1: not in this generation. */
  readonly #service = new Int32Array(MAX_BACKENDS).fill(-1);
  readonly #hasNextHop = new Uint8Array(MAX_BACKENDS);
  readonly #nextHopMac = new Uint8Array(MAX_BACKENDS * MAC_BYTES);
  readonly #addr = new Uint8Array(MAX_BACKENDS * ADDR_STRIDE);
  /** Per backend id, a view of its address (4 or 16 bytes), made at load time for the encapsulator. */
  readonly #addrView: (Uint8Array | null)[] = new Array<Uint8Array | null>(MAX_BACKENDS).fill(null);
  /** 1 while the backend is in its service's current Maglev table (affinity entries to others are redone). */
  readonly #serving = new Uint8Array(MAX_BACKENDS);
  /** 1 while the backend is down (health, next hop): its flows move to the current table. */
  readonly #down = new Uint8Array(MAX_BACKENDS);
  #maxId = 0;

  /** Replace every record with the generation's backends. */
  load(backends: readonly BackendSpec[]): void {
    this.#service.fill(-1);
    this.#hasNextHop.fill(0);
    this.#serving.fill(0);
    this.#down.fill(0);
    for (const b of backends) {
      this.#service[b.id] = b.serviceId;
      this.#serving[b.id] = b.serving ? 1 : 0;
      this.#down[b.id] = b.down ? 1 : 0;
      this.#addr.set(b.addr, b.id * ADDR_STRIDE);
      this.#addrView[b.id] = this.#addr.subarray(b.id * ADDR_STRIDE, b.id * ADDR_STRIDE + b.addr.length);
      if (b.nextHopMac) {
        this.#nextHopMac.set(b.nextHopMac, b.id * MAC_BYTES);
        this.#hasNextHop[b.id] = 1;
      }
      if (b.id > this.#maxId) this.#maxId = b.id;
    }
  }

  /** Highest backend id ever loaded (counter snapshots cover ids up to it; never shrinks). */
  get maxId(): number {
    return this.#maxId;
  }

  /** True if `be` is a backend of service `sid` in this generation (any number: ids come from flows, tokens and peers). */
  belongsTo(be: number, sid: number): boolean {
    return be >= 0 && be < MAX_BACKENDS && this.#service[be] === sid;
  }

  /** The service backend `be` belongs to in this generation, or -1 (any number: ids come from peers too). */
  serviceOf(be: number): number {
    return Number.isInteger(be) && be >= 0 && be < MAX_BACKENDS ? this.#service[be] : -1;
  }

  /** A flow recorded on `be` stays there: the backend is still the service's and not down (a draining one keeps its flows). */
  keepsFlows(be: number, sid: number): boolean {
    return this.belongsTo(be, sid) && this.#down[be] === 0;
  }

  /** The backend is in its service's current Maglev table (takes new flows and affinity clients). */
  isServing(be: number): boolean {
    return this.#serving[be] === 1;
  }

  /** Its next hop's MAC is resolved (else its frames are no_neighbor drops). */
  hasNextHop(be: number): boolean {
    return this.#hasNextHop[be] === 1;
  }

  /** True if frame[off .. off + 6) is the backend's next-hop MAC (a frame that came from there). */
  isNextHopMac(be: number, frame: Uint8Array, off: number): boolean {
    const mac = this.#nextHopMac;
    const m = be * MAC_BYTES;
    for (let i = 0; i < MAC_BYTES; i++) if (frame[off + i] !== mac[m + i]) return false;
    return true;
  }

  /** Write the backend's next-hop MAC at out[off .. off + 6). */
  writeNextHopMac(be: number, out: Uint8Array, off: number): void {
    const mac = this.#nextHopMac;
    const m = be * MAC_BYTES;
    for (let i = 0; i < MAC_BYTES; i++) out[off + i] = mac[m + i];
  }

  /** The backend's address, 4 or 16 bytes (a view: no copy), or null if never loaded. */
  address(be: number): Uint8Array | null {
    return this.#addrView[be];
  }
}
